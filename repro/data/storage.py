"""Tensor-like views that keep a dataset compact and convert only the rows asked for.

A paired dataset such as MNIST-SVHN-Text references each stored image many times (MoPoE pairs
every MNIST image 20 times: 1.12 M tuples over 60,000 MNIST and 73,257 SVHN images). Holding
the tuples as float32 tensors would take about 17 GB; :class:`RowView` holds the uint8 images
once plus one int64 row index per tuple (about 0.3 GB together) and converts a batch when it is
indexed, so ``repro.train.batches`` (``v[index]`` for every value of a dict), ``len`` and
``.shape`` work unchanged. ``.to(device)`` moves the compact storage, not float32 tuples.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import Tensor

__all__ = ["RowView", "fingerprint"]

_KINDS = ("unit", "one_hot")


class RowView:
    """A read-only ``(N, ...)`` float32 view of ``storage[rows]``, converted per index.

    Two conversions:

    * ``"unit"``: uint8 storage (images) becomes float32 in ``[0, 1]`` (``x / 255``, as
      ``ToTensor``); float storage is returned as float32;
    * ``"one_hot"``: integer storage (character indices) becomes float32 one-hot vectors over
      ``classes`` entries on a new last axis.

    Indexing (``view[index]``) accepts what a tensor's first axis accepts: an int, a slice, an
    int64 index tensor or list, a boolean mask, optionally followed by indices of the
    remaining axes (``view[:8, 0]``). Only the selected rows are gathered and converted.

    Args:
        storage: ``(M, ...)`` the stored rows (uint8 images, or integer character indices).
        rows: ``(N,)`` int64 row of ``storage`` for each element, or ``None`` for
            ``arange(M)``.
        kind: ``"unit"`` or ``"one_hot"``.
        classes: number of classes for ``"one_hot"``.

    Raises:
        ValueError: for an unknown kind, rows that are not 1-D integers, rows outside the
            storage, a one-hot view without ``classes`` or of floating storage.
    """

    def __init__(
        self,
        storage: Tensor,
        rows: Tensor | None = None,
        kind: str = "unit",
        classes: int | None = None,
    ) -> None:
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        if kind == "one_hot" and (classes is None or classes < 1 or storage.is_floating_point()):
            raise ValueError(
                f"a one_hot view needs integer storage and classes >= 1, got {storage.dtype} "
                f"storage and classes={classes}"
            )
        if rows is not None:
            if rows.dim() != 1 or rows.is_floating_point() or rows.dtype == torch.bool:
                raise ValueError(
                    f"rows must be a 1-D integer tensor, got {rows.dtype} {tuple(rows.shape)}"
                )
            if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= len(storage)):
                raise ValueError(
                    f"rows must lie in [0, {len(storage)}), got [{int(rows.min())}, "
                    f"{int(rows.max())}]"
                )
            rows = rows.to(device=storage.device, dtype=torch.int64)
        self.storage, self.rows, self.kind, self.classes = storage, rows, kind, classes

    # -- tensor-like attributes --------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.storage) if self.rows is None else len(self.rows)

    @property
    def shape(self) -> torch.Size:
        """``(N, *storage.shape[1:])``, plus ``(classes,)`` for a one-hot view."""
        tail = tuple(self.storage.shape[1:])
        if self.kind == "one_hot":
            tail = (*tail, int(self.classes))
        return torch.Size((len(self), *tail))

    @property
    def dtype(self) -> torch.dtype:
        """Always ``torch.float32``, the dtype of every converted batch."""
        return torch.float32

    @property
    def device(self) -> torch.device:
        """The device of the storage (batches are converted there)."""
        return self.storage.device

    @property
    def ndim(self) -> int:
        """Number of axes of :attr:`shape`."""
        return len(self.shape)

    def dim(self) -> int:
        """Number of axes of :attr:`shape`, as ``Tensor.dim``."""
        return self.ndim

    def size(self, dim: int | None = None) -> torch.Size | int:
        """:attr:`shape`, or its entry ``dim``, as ``Tensor.size``."""
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        """Number of float32 entries the view stands for (not what it stores)."""
        return self.shape.numel()

    def __repr__(self) -> str:
        return (
            f"RowView(shape={tuple(self.shape)}, kind={self.kind!r}, storage="
            f"{self.storage.dtype} {tuple(self.storage.shape)}, device={self.device})"
        )

    # -- conversion ----------------------------------------------------------------------------
    def _convert(self, stored: Tensor) -> Tensor:
        if self.kind == "one_hot":
            out = torch.zeros(
                *stored.shape, int(self.classes), dtype=torch.float32, device=stored.device
            )
            return out.scatter_(-1, stored.to(torch.int64).unsqueeze(-1), 1.0)
        if stored.dtype == torch.uint8:
            return stored.to(torch.float32).div_(255)
        return stored.to(torch.float32)

    def __getitem__(self, index: Any) -> Tensor:
        """The converted rows at ``index`` (``(B, ...)`` float32 on :attr:`device`)."""
        rest: tuple = ()
        if isinstance(index, tuple):
            index, rest = (index[0], index[1:]) if index else (slice(None), ())
        if isinstance(index, Tensor):
            index = index.to(self.device)
        picked = self.storage[index] if self.rows is None else self.storage[self.rows[index]]
        out = self._convert(picked)
        if not rest:
            return out
        scalar = isinstance(index, int) or (isinstance(index, Tensor) and index.dim() == 0)
        return out[rest] if scalar else out[(slice(None), *rest)]

    def materialise(self) -> Tensor:
        """All rows converted at once: the float32 tensor this view avoids holding."""
        return self[:]

    def detach(self) -> Tensor:
        """All rows as a float32 tensor (for code that treats the view as a tensor).

        This materialises the whole view; prefer indexing, or :func:`fingerprint` for cache
        keys.
        """
        return self.materialise()

    def to(
        self,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        non_blocking: bool = False,
    ) -> RowView:
        """The same view with its compact storage (and row index) on ``device``.

        Args:
            device: target device (``None``: unchanged).
            dtype: ``None`` or ``torch.float32`` (the view's dtype; others are refused).
            non_blocking: passed to ``Tensor.to``.

        Returns:
            A :class:`RowView` (``self`` when nothing changes).

        Raises:
            ValueError: for a dtype other than float32.
        """
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        if dtype is not None and dtype != torch.float32:
            raise ValueError(
                f"a RowView converts to float32 only, got dtype={dtype}; index it and convert "
                "the batch instead"
            )
        if device is None or torch.device(device) == self.device:
            return self
        moved = RowView.__new__(RowView)
        moved.storage = self.storage.to(device, non_blocking=non_blocking)
        moved.rows = None if self.rows is None else self.rows.to(device, non_blocking=non_blocking)
        moved.kind, moved.classes = self.kind, self.classes
        return moved

    def cpu(self) -> RowView:
        """The view with its storage on the CPU."""
        return self.to("cpu")

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the view's content: kind, shape, storage bytes and row index.

        Two views with the same fingerprint convert to the same tensor; computing it reads the
        compact storage only (a cache key without materialising the view).
        """
        h = hashlib.sha256()
        h.update(f"{self.kind}:{self.classes}:{tuple(self.shape)}:{self.storage.dtype}".encode())
        for part in (self.storage, self.rows):
            if part is not None and part.numel():
                h.update(part.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
        return h.hexdigest()


def fingerprint(*values: Tensor | RowView) -> str:
    """SHA-256 (hex) over tensors and views, reading only what is stored.

    Args:
        *values: tensors (hashed by dtype, shape and bytes) or :class:`RowView` (hashed by
            :meth:`RowView.fingerprint`).

    Returns:
        A hex digest, equal for equal inputs.
    """
    h = hashlib.sha256()
    for value in values:
        if isinstance(value, RowView):
            h.update(value.fingerprint().encode())
            continue
        t = value.detach().cpu().contiguous()
        h.update(f"{t.dtype}:{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()
