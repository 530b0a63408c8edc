"""MNIST-SVHN-Text, the trimodal dataset of MoPoE-VAE (Sutter, Daunhawer & Vogt, ICLR 2021).

Three modalities share only the digit class:

* ``mnist``: a ``1x28x28`` grey MNIST digit in ``[0, 1]``;
* ``svhn``: a ``3x32x32`` colour SVHN house number of the *same* class, in ``[0, 1]``;
* ``text``: the class's English word (``"zero"`` ... ``"nine"``) written into a string of
  :data:`TEXT_LENGTH` = 8 characters, spaces elsewhere, at a uniform random start position in
  ``[0, 7 - len(word)]`` (so at least one trailing space, e.g. ``"  three "``); stored as
  ``(8,)`` int64 indices into :data:`ALPHABET` (:func:`one_hot` gives MoPoE's one-hot input).

**Pairing** (``thomassutter/MoPoE: mnistsvhntext/SVHNMNISTDataset.py``, ``rand_match_on_idx``,
run at load time with the global torch RNG; the same rule as MMVAE's
``iffsid/mmvae: bin/make-mnist-svhn-idx.py``, which saves index files with 30 rounds): for
each class, take the first ``n = min(#MNIST, #SVHN, 10000)`` images of that class in both
datasets, and ``data_multiplications`` times (20 in ``job_mnistsvhntext``) pair a random
permutation of the ``n`` MNIST images with a random permutation of the ``n`` SVHN images.
Every used MNIST image thus appears in exactly ``data_multiplications`` pairs, each time with
a random SVHN image of its class (1,121,360 training pairs). :func:`pair_by_class` implements
the rule with a :class:`torch.Generator`. MoPoE draws the text's start position anew at
every ``__getitem__``; here it is drawn once per pair (redraw with :func:`text_from_label`).

**Files expected under the data root** (the layouts of ``torchvision.datasets.MNIST`` and
``torchvision.datasets.SVHN``; the MoPoE job copies ``MNIST/`` and ``SVHN/`` from its data
folder the same way)::

    <root>/MNIST/raw/train-images-idx3-ubyte     # IDX, 60000x28x28 uint8 (gunzipped)
    <root>/MNIST/raw/train-labels-idx1-ubyte
    <root>/MNIST/raw/t10k-images-idx3-ubyte      # 10000 test images
    <root>/MNIST/raw/t10k-labels-idx1-ubyte
    <root>/SVHN/train_32x32.mat                  # X: 32x32x3x73257 uint8, y: 73257x1
    <root>/SVHN/test_32x32.mat                   # 26032 test images; label 10 means digit 0

torchvision's legacy ``<root>/MNIST/processed/{training,test}.pt`` (what MoPoE's code reads)
is accepted instead of ``MNIST/raw``. ``download=True`` lets torchvision fetch the files
(MNIST from ``ossci-datasets.s3.amazonaws.com/mnist/`` or ``yann.lecun.com/exdb/mnist/``,
SVHN from ``ufldl.stanford.edu/housenumbers/``).
Images are used as MoPoE uses them: ``ToTensor()`` of the uint8 pixels (its 28 -> 28 bicubic
MNIST resize is the identity).

:func:`load_mnist_svhn_text` reads those files, :func:`embedded_mnist_svhn_text` draws an
offline stand-in from images inside scikit-learn and matplotlib, and :func:`mnist_svhn_text`
picks the real data when present under :func:`repro.paths.data_root` and the stand-in
otherwise.

References:
    Sutter, Daunhawer & Vogt, "Generalized Multimodal ELBO", ICLR 2021 (MoPoE-VAE; code
    ``thomassutter/MoPoE``). Shi, Siddharth, Paige & Torr, "Variational Mixture-of-Experts
    Autoencoders for Multi-Modal Deep Generative Models", NeurIPS 2019 (MNIST-SVHN pairing).
    LeCun et al. 1998 (MNIST); Netzer et al. 2011 (SVHN).
"""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from repro.data.polymnist import (
    BACKGROUNDS,
    TEST_EVERY,
    _check_split,
    _digit_pool,
    _display,
    _random_crops,
    _standin_backgrounds,
)
from repro.data.storage import RowView
from repro.paths import data_root

__all__ = [
    "ALPHABET",
    "DIGIT_WORDS",
    "TEXT_LENGTH",
    "MODALITIES",
    "MnistSvhnText",
    "text_from_label",
    "one_hot",
    "decode_text",
    "pair_by_class",
    "real_data_present",
    "IDX_MAGIC",
    "read_idx",
    "read_mnist",
    "load_mnist_svhn_text",
    "embedded_mnist_svhn_text",
    "mnist_svhn_text",
]

#: MoPoE's character set: ``"".join(json.load(open("alphabet.json")))`` of
#: ``thomassutter/MoPoE: alphabet.json`` (commit 477a441e, May 2021), 71 characters. ``"-"``
#: occurs twice (indices 36 and 62); like MoPoE's ``alphabet.find`` we encode it as 36.
#: The space is index 69.
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"\\/|_@#$%^&*~`+-=<>()[]{} \n"
#: ``digit_text_english`` of ``thomassutter/MoPoE: utils/text.py``.
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEXT_LENGTH = 8  # --len_sequence of mnistsvhntext/flags.py
MODALITIES = ("mnist", "svhn", "text")
DATA_MULTIPLICATIONS = 20  # --data_multiplications of job_mnistsvhntext
MAX_PER_CLASS = 10000  # max_d of rand_match_on_idx
STANDIN_SIZE = {"train": 5000, "test": 1000}  # default stand-in pool size (images per modality)

_SPACE = ALPHABET.find(" ")
_MNIST_RAW = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MNIST_LEGACY = ("training.pt", "test.pt")
_SVHN_FILE = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
_SHAPES = {"mnist": (1, 28, 28), "svhn": (3, 32, 32)}


# ---------------------------------------------------------------------------------------------
# The container


@dataclass(frozen=True, eq=False)
class MnistSvhnText:
    """Pairs of an MNIST image, an SVHN image and a text of one digit class.

    Images are stored once (uint8, as in the files) and referenced by index, because the
    paired training set has ``data_multiplications`` times more tuples than MNIST images
    (about 1.12 M: 17 GB as float32). :attr:`x` and :meth:`inputs` hand out
    :class:`repro.data.storage.RowView` views that convert only the rows a batch indexes;
    :meth:`batch` materialises some tuples, and :meth:`subset` is cheap.

    Attributes:
        images: ``{"mnist": (Nm, 1, 28, 28), "svhn": (Ns, 3, 32, 32)}`` uint8 images.
        index: ``{"mnist": (N,), "svhn": (N,)}`` int64 row of ``images[m]`` for each tuple.
        text: ``(N, 8)`` int64 indices into :data:`ALPHABET`.
        label: ``(N,)`` int64 digit class, shared by the three modalities.
        source: human-readable origin (``"real: ..."`` or ``"embedded stand-in: ..."``).
        image_instance: ``{"mnist": (Nm,), "svhn": (Ns,)}`` int64 index of the digit behind
            each stored image (the scikit-learn ``load_digits`` index for the stand-in), or
            ``None`` for real data.
    """

    images: dict[str, Tensor]
    index: dict[str, Tensor]
    text: Tensor
    label: Tensor
    source: str
    image_instance: dict[str, Tensor] | None = field(default=None)

    def __post_init__(self) -> None:
        n = self.label.shape[0]
        if self.label.dim() != 1:
            raise ValueError(f"label must be 1-D, got shape {tuple(self.label.shape)}")
        problems = []
        for m, shape in _SHAPES.items():
            if m not in self.images or m not in self.index:
                problems.append(f"missing images/index for {m!r}")
                continue
            if tuple(self.images[m].shape[1:]) != shape:
                problems.append(f"images[{m!r}] {tuple(self.images[m].shape)} != (*, {shape})")
            if tuple(self.index[m].shape) != (n,):
                problems.append(f"index[{m!r}] {tuple(self.index[m].shape)} != ({n},)")
        if tuple(self.text.shape) != (n, TEXT_LENGTH):
            problems.append(f"text {tuple(self.text.shape)} != ({n}, {TEXT_LENGTH})")
        if problems:
            raise ValueError("inconsistent MnistSvhnText: " + "; ".join(problems))

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def batch(self, index: Tensor | slice | list[int]) -> dict[str, Tensor]:
        """Materialise the tuples at ``index``.

        Args:
            index: a slice, an int64 index tensor/list or a boolean mask of length ``N``.

        Returns:
            ``{"mnist": (B, 1, 28, 28), "svhn": (B, 3, 32, 32)}`` float32 in ``[0, 1]`` and
            ``{"text": (B, 8)}`` int64.
        """
        out = {m: _to_float(self.images[m][self.index[m][index]]) for m in _SHAPES}
        out["text"] = self.text[index]
        return out

    @functools.cached_property
    def x(self) -> dict[str, RowView | Tensor]:
        """All tuples: ``{"mnist", "svhn"}`` as float32 views, ``"text"`` ``(N, 8)`` int64.

        The images are :class:`repro.data.storage.RowView` views of the uint8 storage:
        ``x["svhn"][index]`` gives ``(B, 3, 32, 32)`` float32 in ``[0, 1]`` for just those
        tuples, ``len`` and ``.shape`` are those of the full float32 tensor, ``.to(device)``
        moves the compact storage. ``x["svhn"][:]`` materialises everything (17 GB for the
        full MoPoE training set).
        """
        views: dict[str, RowView | Tensor] = {
            m: RowView(self.images[m], self.index[m]) for m in _SHAPES
        }
        views["text"] = self.text
        return views

    def inputs(self, device: torch.device | str | None = None) -> dict[str, RowView]:
        """What the models read, as views converted per batch, on ``device``.

        Args:
            device: where the compact storage goes (``None``: where it is).

        Returns:
            ``{"mnist": (N, 1, 28, 28), "svhn": (N, 3, 32, 32)}`` float32 views in ``[0, 1]``
            and ``{"text": (N, 8, len(ALPHABET))}`` one-hot float32 view (:func:`one_hot`),
            each a :class:`repro.data.storage.RowView`: indexing gathers and converts only the
            selected tuples.
        """
        views = {m: RowView(self.images[m], self.index[m]) for m in _SHAPES}
        # 71 characters fit in uint8: 8 bytes per tuple instead of 64
        views["text"] = RowView(self.text.to(torch.uint8), kind="one_hot", classes=len(ALPHABET))
        return {m: v.to(device) for m, v in views.items()}

    def subset(self, index: Tensor | slice | list[int]) -> MnistSvhnText:
        """Return the tuples at ``index`` (shares the stored images).

        Args:
            index: a slice, an int64 index tensor/list or a boolean mask of length ``N``.

        Returns:
            A new :class:`MnistSvhnText` with the same ``source``.
        """
        return MnistSvhnText(
            self.images,
            {m: v[index] for m, v in self.index.items()},
            self.text[index],
            self.label[index],
            self.source,
            self.image_instance,
        )


def _to_float(images: Tensor) -> Tensor:
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255)
    return images.to(torch.float32)


# ---------------------------------------------------------------------------------------------
# Text


def _check_generator(generator: torch.Generator | None) -> torch.Generator:
    return torch.Generator().manual_seed(0) if generator is None else generator


def text_from_label(label: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Write each label's word into 8 characters at a random start (MoPoE's text modality).

    As ``create_text_from_label_mnist`` of ``thomassutter/MoPoE: utils/text.py``: a string
    of 8 spaces receives the word at a start drawn uniformly from ``[0, 7 - len(word)]``.

    Args:
        label: ``(N,)`` integer digit classes in ``[0, 9]``.
        generator: source of the start positions; ``None`` uses one seeded with 0.

    Returns:
        ``(N, 8)`` int64 indices into :data:`ALPHABET`.

    Raises:
        ValueError: for labels that are not 1-D integers in ``[0, 9]``.
    """
    if label.dim() != 1 or label.is_floating_point():
        raise ValueError(f"label must be a 1-D integer tensor, got {label.dtype} {label.shape}")
    label = label.to(torch.int64)
    if label.numel() and (int(label.min()) < 0 or int(label.max()) > 9):
        raise ValueError(f"labels must lie in [0, 9], got [{int(label.min())}, {label.max()}]")
    generator = _check_generator(generator)
    words = torch.full((10, TEXT_LENGTH), _SPACE, dtype=torch.int64)
    for digit, word in enumerate(DIGIT_WORDS):
        words[digit, : len(word)] = torch.tensor([ALPHABET.find(c) for c in word])
    length = torch.tensor([len(w) for w in DIGIT_WORDS])[label]
    slots = TEXT_LENGTH - length  # the start lies in [0, slots - 1]
    start = (torch.rand(len(label), generator=generator, dtype=torch.float64) * slots).long()
    offset = torch.arange(TEXT_LENGTH)[None, :] - start[:, None]  # (N, 8) position in the word
    inside = (offset >= 0) & (offset < length[:, None])
    chars = words[label[:, None], offset.clamp(0, TEXT_LENGTH - 1)]
    return torch.where(inside, chars, torch.full_like(chars, _SPACE))


def one_hot(text: Tensor) -> Tensor:
    """One-hot encode character indices (MoPoE's ``one_hot_encode``).

    Args:
        text: ``(..., 8)`` integer indices into :data:`ALPHABET`, e.g. ``(B, 8)``.

    Returns:
        ``(..., 8, len(ALPHABET))`` float32.

    Raises:
        ValueError: for non-integer input or indices outside ``[0, len(ALPHABET))``.
    """
    if text.is_floating_point():
        raise ValueError(f"text must hold integer indices, got {text.dtype}")
    if text.numel() and (int(text.min()) < 0 or int(text.max()) >= len(ALPHABET)):
        raise ValueError(
            f"indices must lie in [0, {len(ALPHABET)}), got [{text.min()}, {text.max()}]"
        )
    out = torch.zeros(*text.shape, len(ALPHABET), dtype=torch.float32, device=text.device)
    # scatter into float32 directly: F.one_hot would first build an int64 tensor twice the size
    return out.scatter_(-1, text.to(torch.int64).unsqueeze(-1), 1.0)


def decode_text(indices: Tensor) -> list[str]:
    """Turn character indices (or one-hot/logits, by arg-max) back into strings.

    Args:
        indices: ``(B, L)`` or ``(L,)`` integer indices, or ``(B, L, len(ALPHABET))`` /
            ``(L, len(ALPHABET))`` floating scores (MoPoE's ``tensor_to_text``).

    Returns:
        ``B`` strings of ``L`` characters each, spaces kept (``.strip()`` gives the word).

    Raises:
        ValueError: for shapes other than the above or indices outside the alphabet.
    """
    if indices.is_floating_point():
        if indices.shape[-1] != len(ALPHABET):
            raise ValueError(
                f"floating input needs a last axis of len(ALPHABET) = {len(ALPHABET)}, got "
                f"shape {tuple(indices.shape)}"
            )
        indices = indices.argmax(-1)
    if indices.dim() == 1:
        indices = indices[None]
    if indices.dim() != 2:
        raise ValueError(f"expected (B, L) indices, got shape {tuple(indices.shape)}")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= len(ALPHABET)):
        raise ValueError(f"indices must lie in [0, {len(ALPHABET)})")
    return ["".join(ALPHABET[i] for i in row) for row in indices.tolist()]


# ---------------------------------------------------------------------------------------------
# Pairing


def pair_by_class(
    label_a: Tensor,
    label_b: Tensor,
    data_multiplications: int = DATA_MULTIPLICATIONS,
    generator: torch.Generator | None = None,
    max_per_class: int = MAX_PER_CLASS,
) -> tuple[Tensor, Tensor]:
    """Pair two labelled datasets by class, as MoPoE's ``rand_match_on_idx``.

    For each class ``c`` of ``label_a`` (ascending), with ``n = min(#a_c, #b_c,
    max_per_class)`` and the first ``n`` indices of that class in each dataset (by index; the
    reference sorts labels with an unstable sort), append ``data_multiplications`` times a
    random permutation of the ``a`` indices and one of the ``b`` indices. Each of the ``n``
    images of ``a`` therefore appears exactly ``data_multiplications`` times.

    Args:
        label_a: ``(Na,)`` integer labels (MNIST).
        label_b: ``(Nb,)`` integer labels (SVHN).
        data_multiplications: rounds of pairing (MoPoE's default 20).
        generator: source of the permutations; ``None`` uses one seeded with 0.
        max_per_class: at most this many images per class and dataset (MoPoE's ``max_d``).

    Returns:
        ``(index_a, index_b)``, int64 ``(P,)`` each, with ``label_a[index_a] ==
        label_b[index_b]`` and ``P = data_multiplications * sum_c n_c``.

    Raises:
        ValueError: for ``data_multiplications < 1``, ``max_per_class < 1`` or labels that
            are not 1-D.
    """
    if data_multiplications < 1:
        raise ValueError(f"data_multiplications must be >= 1, got {data_multiplications}")
    if max_per_class < 1:
        raise ValueError(f"max_per_class must be >= 1, got {max_per_class}")
    if label_a.dim() != 1 or label_b.dim() != 1:
        raise ValueError(f"labels must be 1-D, got {tuple(label_a.shape)}, {tuple(label_b.shape)}")
    generator = _check_generator(generator)
    sorted_a, order_a = torch.sort(label_a, stable=True)
    sorted_b, order_b = torch.sort(label_b, stable=True)
    out_a, out_b = [], []
    for c in torch.unique(sorted_a).tolist():
        idx_a, idx_b = order_a[sorted_a == c], order_b[sorted_b == c]
        n = min(len(idx_a), len(idx_b), max_per_class)
        idx_a, idx_b = idx_a[:n], idx_b[:n]
        for _ in range(data_multiplications):
            out_a.append(idx_a[torch.randperm(n, generator=generator)])
            out_b.append(idx_b[torch.randperm(n, generator=generator)])
    empty = torch.empty(0, dtype=torch.int64)
    return (torch.cat(out_a) if out_a else empty), (torch.cat(out_b) if out_b else empty)


def _assemble(
    images: dict[str, Tensor],
    labels: dict[str, Tensor],
    data_multiplications: int,
    generator: torch.Generator,
    max_per_class: int,
    source: str,
    image_instance: dict[str, Tensor] | None = None,
) -> MnistSvhnText:
    index_mnist, index_svhn = pair_by_class(
        labels["mnist"], labels["svhn"], data_multiplications, generator, max_per_class
    )
    label = labels["mnist"][index_mnist].to(torch.int64)
    return MnistSvhnText(
        images,
        {"mnist": index_mnist, "svhn": index_svhn},
        text_from_label(label, generator),
        label,
        source,
        image_instance,
    )


# ---------------------------------------------------------------------------------------------
# Real data


def _expected(root: Path, split: str) -> dict[str, list[Path]]:
    """The files each dataset needs (MNIST: torchvision checks all four raw files)."""
    raw = root / "MNIST" / "raw"
    mnist = [raw / name for s in ("train", "test") for name in _MNIST_RAW[s]]
    return {"mnist": mnist, "svhn": [root / "SVHN" / _SVHN_FILE[split]]}


def _mnist_present(root: Path) -> bool:
    legacy = root / "MNIST" / "processed"
    if all((legacy / name).is_file() for name in _MNIST_LEGACY):
        return True
    return all(p.is_file() for p in _expected(root, "train")["mnist"])


def real_data_present(root: str | Path, split: str) -> bool:
    """Whether ``root`` holds MNIST and the SVHN file of ``split`` in torchvision's layout.

    Args:
        root: the data root (holding ``MNIST/`` and ``SVHN/``).
        split: ``"train"`` or ``"test"``.

    Returns:
        ``True`` when :func:`load_mnist_svhn_text` can read ``split`` without downloading.

    Raises:
        ValueError: for an unknown split.
    """
    _check_split(split)
    root = Path(root)
    return _mnist_present(root) and (root / "SVHN" / _SVHN_FILE[split]).is_file()


def _missing_message(root: Path, split: str) -> str:
    missing = []
    if not _mnist_present(root):
        gz = [p for p in _expected(root, split)["mnist"] if p.with_name(p.name + ".gz").is_file()]
        hint = " (the .gz archives are there: gunzip them in place)" if gz else ""
        missing.append(
            "MNIST: " + ", ".join(_display(p) for p in _expected(root, split)["mnist"]) + hint
        )
    svhn = _expected(root, split)["svhn"][0]
    if not svhn.is_file():
        missing.append(f"SVHN: {_display(svhn)}")
    return (
        f"MNIST-SVHN-Text {split} split not found under {_display(root)}; missing "
        + "; ".join(missing)
        + ". Fix: pass download=True on a machine with internet access (torchvision fetches "
        "MNIST into <root>/MNIST/raw and SVHN into <root>/SVHN), or copy those files there "
        "(torchvision's legacy MNIST/processed/{training,test}.pt is accepted too)."
    )


def _size(path: Path) -> str:
    try:
        return f"{path.stat().st_size:,} bytes"
    except OSError:
        return "size unknown"


def _read_svhn_mat(path: Path, context: str = "SVHN") -> tuple[Tensor, Tensor]:
    """``(N, 3, 32, 32)`` uint8 images and ``(N,)`` labels of an SVHN ``.mat`` file.

    The same conversion as ``torchvision.datasets.SVHN`` (and MoPoE): ``X`` is ``(32, 32, 3,
    N)``, transposed to ``(N, 3, 32, 32)``; ``y`` is ``(N, 1)`` with label 10 for digit 0.
    A file SciPy cannot parse (truncated, corrupt, MATLAB v7.3/HDF5) raises ``ValueError``
    naming it.
    """
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as err:  # noqa: BLE001  any parser failure means an unusable file
        raise ValueError(
            f"{context}: {_display(path)} cannot be read as an SVHN .mat file "
            f"({type(err).__name__}: {err}; the file has {_size(path)}, the published "
            f"{path.name} about {_SVHN_SIZE.get(path.name, 'tens of MB')}): it is probably "
            "truncated or corrupt (an interrupted download or copy). Fix: delete it and "
            "download it again (download=True, or http://ufldl.stanford.edu/housenumbers/)."
        ) from err
    where = f"{context}: {_display(path)}"
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"{where} lacks the SVHN keys 'X' and 'y' (has {sorted(mat)})")
    images, labels = np.asarray(mat["X"]), np.asarray(mat["y"]).astype(np.int64).reshape(-1)
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.dtype != np.uint8:
        raise ValueError(
            f"{where}: X is {images.dtype} {images.shape}, expected uint8 (32, 32, 3, N)"
        )
    if images.shape[3] != labels.shape[0]:
        raise ValueError(f"{where}: {images.shape[3]} images but {len(labels)} labels")
    labels[labels == 10] = 0
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{where}: labels outside 1..10 ({labels.min()}..{labels.max()})")
    data = torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1)))
    return data, torch.from_numpy(labels)


# IDX type codes (LeCun's format): byte 3 of the magic number
_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
#: Magic numbers of MNIST's IDX files: unsigned bytes, 3-D images and 1-D labels.
IDX_MAGIC = {"images": 2051, "labels": 2049}
_IDX_KIND = {v: k for k, v in IDX_MAGIC.items()}
_SWAPPED = (
    " (60,000 is the size of the train split, 10,000 that of the t10k test split: one "
    "file was copied over the other)"
)
_SVHN_SIZE = {"train_32x32.mat": "182 MB", "test_32x32.mat": "64 MB"}
_REFETCH = (
    "Fix: delete it and download it again (download=True), or re-extract it from the "
    "original .gz archive (gunzip -k)"
)


def read_idx(path: str | Path, magic: int | None = None, context: str = "IDX") -> Tensor:
    """Read an IDX file (the format of MNIST's ``*-ubyte`` files), checking it first.

    The header is read by hand: a big-endian magic number (two zero bytes, a type code,
    the number of dimensions), then one big-endian int32 per dimension. The file must hold
    exactly the bytes the header implies, so a truncated or padded file is refused before
    any data is interpreted.

    Args:
        path: the (uncompressed) IDX file.
        magic: the required magic number (:data:`IDX_MAGIC`: 2051 for MNIST images, 2049
            for labels), or ``None`` for any valid IDX header.
        context: what is being loaded, the first words of error messages.

    Returns:
        The array as a tensor of the header's shape (``uint8`` for MNIST; other IDX types
        in their native dtype).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: for a short header, a wrong or unknown magic number, a gzip archive
            without the ``.gz`` suffix, or a size that does not match the header; the message
            names the file, what was expected and the fix.
    """
    path = Path(path)
    where = f"{context}: {_display(path)}"
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
            ndim = head[3] if len(head) == 4 else 0
            dims_bytes = handle.read(4 * ndim)
            payload = handle.read()
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{where} does not exist") from err
    except OSError as err:
        raise ValueError(f"{where} cannot be read ({err}). {_REFETCH}.") from err
    want = "" if magic is None else f"; expected magic {magic} ({_IDX_KIND.get(magic, 'IDX')})"
    if head[:2] == b"\x1f\x8b":
        raise ValueError(
            f"{where} is a gzip archive, not an IDX file{want}. Fix: gunzip it in place "
            f"(mv {path.name} {path.name}.gz && gunzip {path.name}.gz)."
        )
    truncated = (
        f"{where} is truncated inside its header ({_size(path)}; an IDX header has 4 + 4 x "
        f"ndim bytes){want}. {_REFETCH}."
    )
    if len(head) < 4:
        raise ValueError(truncated)
    found = int.from_bytes(head, "big")
    if head[:2] != b"\x00\x00" or head[2] not in _IDX_TYPES or ndim == 0:
        raise ValueError(
            f"{where}: magic number {found} (0x{found:08x}) is not an IDX header{want}. "
            f"Is this the right file? {_REFETCH}."
        )
    if len(dims_bytes) < 4 * ndim:
        raise ValueError(truncated)
    if magic is not None and found != magic:
        kind = _IDX_KIND.get(found)
        hint = f" (the magic of an MNIST {kind} file: were the files swapped?)" if kind else ""
        raise ValueError(
            f"{where}: magic number {found}{hint}, expected {magic} (MNIST "
            f"{_IDX_KIND.get(magic, 'IDX')}). Put the right file under this name. {_REFETCH}."
        )
    dims = struct.unpack(f">{ndim}i", dims_bytes)
    dtype = _IDX_TYPES[head[2]]
    expected = math.prod(dims) * dtype.itemsize
    if len(payload) != expected:
        state = "truncated" if len(payload) < expected else "longer than its header says"
        raise ValueError(
            f"{where} is {state}: its header (magic {found}, {' x '.join(map(str, dims))}) "
            f"implies {4 + 4 * ndim + expected:,} bytes, the file has "
            f"{4 + 4 * ndim + len(payload):,}. {_REFETCH}."
        )
    array = np.frombuffer(payload, dtype=dtype).reshape(dims)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def _legacy_mnist(path: Path, context: str) -> tuple[Tensor, Tensor]:
    """Read torchvision's legacy ``processed/{training,test}.pt``: ``(images, labels)``."""
    where = f"{context}: {_display(path)}"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  any unpickling failure means an unusable file
        raise ValueError(
            f"{where} cannot be read by torch.load ({type(err).__name__}: {err}; "
            f"{_size(path)}): truncated or not a torchvision MNIST file. Fix: delete "
            f"MNIST/processed/ and use the raw IDX files (or download=True)."
        ) from err
    if (
        not isinstance(saved, tuple | list)
        or len(saved) != 2
        or not all(isinstance(t, Tensor) for t in saved)
    ):
        raise ValueError(f"{where} does not hold an (images, labels) pair of tensors")
    images, labels = saved
    if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28) or labels.dim() != 1:
        raise ValueError(
            f"{where}: images {tuple(images.shape)} and labels {tuple(labels.shape)}, expected "
            "(N, 28, 28) and (N,)"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{where} holds {len(images)} images but {len(labels)} labels; the pair is "
            "inconsistent. Fix: delete MNIST/processed/ and use the raw IDX files (or "
            "download=True)."
        )
    return images.to(torch.uint8), labels.to(torch.int64)


def read_mnist(root: str | Path, split: str, context: str | None = None) -> tuple[Tensor, Tensor]:
    """Read MNIST's ``split`` from ``root`` in torchvision's layout, checking every file.

    Reads ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` with
    :func:`read_idx` (or torchvision's legacy ``MNIST/processed/{training,test}.pt`` when
    both are there, as torchvision does), and checks that images and labels belong together.
    Use it instead of ``torchvision.datasets.MNIST(..., download=False)`` to get errors that
    name the file (e.g. in :func:`repro.data.polymnist.build_polymnist`).

    Args:
        root: the folder holding ``MNIST/``.
        split: ``"train"`` or ``"test"``.
        context: what is being loaded, the first words of error messages (default
            ``"MNIST <split>"``).

    Returns:
        ``(images, labels)``: ``(N, 28, 28)`` uint8 and ``(N,)`` int64 in ``[0, 9]``.

    Raises:
        FileNotFoundError: when the files are missing (the message names them and the fix).
        ValueError: for an unknown split, a truncated or malformed file, or images and labels
            of different counts (the message names both files and their counts).
    """
    _check_split(split)
    root = Path(root)
    context = f"MNIST {split}" if context is None else context
    legacy = root / "MNIST" / "processed"
    if all((legacy / name).is_file() for name in _MNIST_LEGACY):
        path = legacy / _MNIST_LEGACY[split != "train"]
        images, labels = _legacy_mnist(path, context)
        return images, _check_labels(labels, path, context)
    raw = root / "MNIST" / "raw"
    image_path, label_path = (raw / name for name in _MNIST_RAW[split])
    missing = [p for p in (image_path, label_path) if not p.is_file()]
    if missing:
        gz = [p for p in missing if p.with_name(p.name + ".gz").is_file()]
        hint = " (the .gz archives are there: gunzip them in place)" if gz else ""
        raise FileNotFoundError(
            f"{context}: missing {', '.join(_display(p) for p in missing)}{hint}. Fix: pass "
            "download=True on a machine with internet access, or copy the four uncompressed "
            "MNIST IDX files into that folder."
        )
    images = read_idx(image_path, IDX_MAGIC["images"], context)
    labels = read_idx(label_path, IDX_MAGIC["labels"], context)
    if tuple(images.shape[1:]) != (28, 28):
        raise ValueError(
            f"{context}: {_display(image_path)} holds images of "
            f"{' x '.join(map(str, images.shape[1:]))} pixels, expected 28 x 28 (is it MNIST?)"
        )
    if len(images) != len(labels):
        swapped = {len(images), len(labels)} == {60000, 10000}
        raise ValueError(
            f"{context}: {_display(image_path)} holds {len(images)} images but "
            f"{_display(label_path)} holds {len(labels)} labels: the two files do not belong "
            "together"
            + (_SWAPPED if swapped else "")
            + ". Fix: re-download or re-extract both files of the split (download=True after "
            "deleting them, or gunzip the original .gz archives again)."
        )
    return images, _check_labels(labels.to(torch.int64), label_path, context)


def _check_labels(labels: Tensor, path: Path, context: str) -> Tensor:
    labels = labels.to(torch.int64)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > 9):
        raise ValueError(
            f"{context}: {_display(path)} holds labels in [{int(labels.min())}, "
            f"{int(labels.max())}], expected digits 0..9 (is it an MNIST labels file?)"
        )
    return labels


def _stamp(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for p in paths:
        if p.is_file():
            stat = p.stat()
            out.append((str(p.resolve()), stat.st_mtime_ns, stat.st_size))
    return tuple(out)


@functools.lru_cache(maxsize=2)
def _read_real(root: str, split: str, stamp: tuple) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """MNIST and SVHN of ``split`` as uint8 tensors; cached per process by ``stamp``."""
    del stamp  # only part of the cache key: changed files are read again
    context = f"MNIST-SVHN-Text {split}"
    mnist, mnist_label = read_mnist(root, split, context)
    svhn, svhn_label = _read_svhn_mat(Path(root) / "SVHN" / _SVHN_FILE[split], context)
    return mnist.unsqueeze(1).contiguous(), mnist_label, svhn, svhn_label


def _download(root: Path, split: str) -> None:
    from repro.compat import import_torchvision

    import_torchvision()
    from torchvision.datasets import MNIST, SVHN

    try:
        if not _mnist_present(root):
            MNIST(str(root), train=split == "train", download=True)
        if not (root / "SVHN" / _SVHN_FILE[split]).is_file():
            SVHN(str(root / "SVHN"), split=split, download=True)  # checks the MD5 sum
    except (RuntimeError, OSError) as err:
        raise RuntimeError(
            f"downloading MNIST/SVHN into {_display(root)} failed ({err}). "
            + _missing_message(root, split)
        ) from err


def load_mnist_svhn_text(
    root: str | Path,
    split: str = "train",
    generator: torch.Generator | None = None,
    *,
    data_multiplications: int = DATA_MULTIPLICATIONS,
    download: bool = False,
    max_per_class: int = MAX_PER_CLASS,
) -> MnistSvhnText:
    """Read MNIST and SVHN from ``root`` and pair them into MNIST-SVHN-Text.

    MNIST is read by :func:`read_mnist` (the IDX files, or torchvision's legacy ``.pt``,
    as ``torchvision.datasets.MNIST`` reads them, with every header, size and count checked);
    the SVHN ``.mat`` file with SciPy exactly as ``torchvision.datasets.SVHN`` converts it,
    but without its MD5 check, so any copy in the published format is accepted
    (``download=True`` goes through torchvision and is checked). Decoded files are cached in
    memory per process. Pairs follow :func:`pair_by_class`; texts :func:`text_from_label`,
    both drawn from ``generator``.

    Args:
        root: data root holding ``MNIST/`` and ``SVHN/`` (see the module docstring).
        split: ``"train"`` or ``"test"``.
        generator: randomness of the pairing and the texts; ``None`` uses one seeded with 0.
        data_multiplications: pairs per MNIST image (MoPoE: 20).
        download: let torchvision download missing files (needs internet); never otherwise.
        max_per_class: at most this many images per class and dataset (MoPoE: 10000).

    Returns:
        The pairs, ordered by class and round as in MoPoE (shuffle when batching).

    Raises:
        ValueError: for an unknown split, ``data_multiplications < 1``, or a truncated,
            malformed or mismatched file (the message names the file, what was expected
            and the fix).
        FileNotFoundError: when files are missing and ``download`` is False; the message
            names the expected paths and the fix.
        RuntimeError: when a requested download fails.
    """
    _check_split(split)
    if data_multiplications < 1:
        raise ValueError(f"data_multiplications must be >= 1, got {data_multiplications}")
    root = Path(root)
    if not real_data_present(root, split):
        if not download:
            raise FileNotFoundError(_missing_message(root, split))
        _download(root, split)
    generator = _check_generator(generator)
    raw = root / "MNIST" / "raw"
    files = [
        *(raw / name for s in ("train", "test") for name in _MNIST_RAW[s]),
        *(root / "MNIST" / "processed" / name for name in _MNIST_LEGACY),
        root / "SVHN" / _SVHN_FILE[split],
    ]
    mnist, mnist_label, svhn, svhn_label = _read_real(str(root), split, _stamp(files))
    source = (
        f"real: MNIST-SVHN-Text {split} from {_display(root)} (MNIST {len(mnist)}, SVHN "
        f"{len(svhn)} images; data_multiplications={data_multiplications})"
    )
    return _assemble(
        {"mnist": mnist, "svhn": svhn},
        {"mnist": mnist_label, "svhn": svhn_label},
        data_multiplications,
        generator,
        max_per_class,
        source,
    )


# ---------------------------------------------------------------------------------------------
# The embedded stand-in

_CONTRAST = 1.5  # grey stretch so that upsampled 8x8 strokes saturate like MNIST's


def _render_digits(
    digits: Tensor, size: int, box: float, scale_range: float, generator: torch.Generator
) -> Tensor:
    """Render ``(n, 1, 8, 8)`` digits in ``[0, 1]`` into ``(n, 1, size, size)`` grey images.

    The affine of polymnist's ``_digit_masks`` without its binary cut: one bicubic
    ``grid_sample`` scales the 8-px digit to ``box`` px (x ``1 +- scale_range``), rotates it by
    up to +-10 degrees and shifts it by up to +-2 px (at 28 px; proportional otherwise).
    """
    n = digits.shape[0]
    f32 = torch.float32
    angle = (torch.rand(n, generator=generator, dtype=f32) * 2 - 1) * math.radians(10)
    scale = 1 + (torch.rand(n, generator=generator, dtype=f32) * 2 - 1) * scale_range
    shift = (torch.rand(n, 2, generator=generator, dtype=f32) * 2 - 1) * (2.0 * size / 28)
    pixel = box / 8 * scale  # output px per source px
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    linear = rot * (size / 8 / pixel)[:, None, None]
    offset = -(rot @ shift[:, :, None])[..., 0] / (4 * pixel)[:, None]
    theta = torch.cat([linear, offset[:, :, None]], -1)  # (n, 2, 3)
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    grey = F.grid_sample(digits.to(f32), grid, mode="bicubic", align_corners=False)
    return (grey * _CONTRAST - (_CONTRAST - 1) / 2).clamp_(0, 1)


def _to_uint8(images: Tensor) -> Tensor:
    return images.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def _standin_pool(
    n: int, source_pool: tuple[Tensor, Tensor, Tensor], generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` labels (balanced: ``n // 10`` or one more per class), digits and instances."""
    images, labels, indices = source_pool
    label = (torch.arange(n) % 10)[torch.randperm(n, generator=generator)]
    pick = torch.empty(n, dtype=torch.int64)
    for c in range(10):
        members = (labels == c).nonzero()[:, 0]
        where = (label == c).nonzero()[:, 0]
        pick[where] = members[torch.randint(0, len(members), (len(where),), generator=generator)]
    return label, images[pick], indices[pick]


def _svhn_like(digits: Tensor, generator: torch.Generator) -> Tensor:
    """Coloured digits on softened 32x32 photo crops: ``(n, 3, 32, 32)`` float in [0, 1]."""
    n = digits.shape[0]
    mask = _render_digits(digits, 32, box=22.0, scale_range=0.15, generator=generator)
    backgrounds = _standin_backgrounds()
    which = torch.randint(0, len(backgrounds), (n,), generator=generator)
    crops = torch.empty(n, 3, 32, 32, dtype=torch.float32)
    for k, background in enumerate(backgrounds):
        rows = (which == k).nonzero()[:, 0]
        if len(rows):
            crops[rows] = _random_crops(background, len(rows), 32, generator)
    mean = crops.mean((2, 3), keepdim=True)
    ground = 0.5 * crops + 0.5 * mean  # less texture, as SVHN's mostly plain house fronts
    luma = (mean[:, :, 0, 0] * torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32)).sum(1)
    colour = torch.rand(n, 3, generator=generator, dtype=torch.float32)
    dark = luma[:, None] >= 0.5  # light ground: dark digit, and vice versa
    ink = torch.where(dark, 0.4 * colour, 0.6 + 0.4 * colour)[:, :, None, None]
    return ground * (1 - mask) + ink * mask


def embedded_mnist_svhn_text(
    split: str,
    generator: torch.Generator | None = None,
    *,
    n_images: int | None = None,
    data_multiplications: int = DATA_MULTIPLICATIONS,
) -> MnistSvhnText:
    """Draw an MNIST-SVHN-Text look-alike offline, from images inside the dependencies.

    Two pools of ``n_images`` images with balanced classes stand in for MNIST and SVHN, and
    are paired exactly like the real data (:func:`pair_by_class`), so there are
    ``n_images * data_multiplications`` tuples:

    * ``mnist``: a scikit-learn ``load_digits`` digit (8x8), upsampled to a 20-px box in
      28x28 with a random affine (rotation +-10 deg, scale 0.9-1.1, shift +-2 px), bicubic,
      contrast-stretched, grey in ``[0, 1]``;
    * ``svhn``: another ``load_digits`` instance of the class (the MNIST and SVHN pools draw
      from disjoint halves of the digits: ``(index // 5) % 2``), in a 22-px box in 32x32,
      coloured with a random ink (dark on light grounds, light on dark) over a softened
      random 32x32 crop of one of polymnist's background photos (:data:`BACKGROUNDS`);
    * ``text``: the class's word (:func:`text_from_label`).

    Images are quantised to uint8 like the real files. Train and test use disjoint digits:
    ``load_digits`` index ``i`` is a test digit iff ``i % 5 == 0`` (as in
    :func:`repro.data.polymnist.embedded_polymnist`).

    Args:
        split: ``"train"`` or ``"test"``.
        generator: the only source of randomness; ``None`` uses one seeded with 0.
        n_images: images per pool (``None``: 5000 train, 1000 test).
        data_multiplications: pairs per MNIST-like image (MoPoE: 20).

    Returns:
        The tuples, with ``image_instance`` set to the ``load_digits`` indices.

    Raises:
        ValueError: for an unknown split, ``n_images < 10`` or ``data_multiplications < 1``.
    """
    _check_split(split)
    n_images = STANDIN_SIZE[split] if n_images is None else n_images
    if n_images < 10:
        raise ValueError(f"n_images must be >= 10 (one per class), got {n_images}")
    if data_multiplications < 1:
        raise ValueError(f"data_multiplications must be >= 1, got {data_multiplications}")
    generator = _check_generator(generator)
    images, labels, indices = _digit_pool()
    in_split = (indices % TEST_EVERY == 0) == (split == "test")
    svhn_half = (indices // TEST_EVERY) % 2 == 1
    pools = {}
    for m, half in (("mnist", ~svhn_half), ("svhn", svhn_half)):
        keep = in_split & half
        pools[m] = _standin_pool(n_images, (images[keep], labels[keep], indices[keep]), generator)
    mnist = _render_digits(pools["mnist"][1], 28, box=20.0, scale_range=0.1, generator=generator)
    svhn = _svhn_like(pools["svhn"][1], generator)
    source = (
        f"embedded stand-in: MNIST-SVHN-Text look-alike, scikit-learn load_digits ({split} "
        f"split: index % {TEST_EVERY} {'==' if split == 'test' else '!='} 0; {n_images} grey "
        f"28x28 'mnist' and {n_images} coloured 32x32 'svhn' digits, the latter on crops of "
        f"{'; '.join(BACKGROUNDS)}), data_multiplications={data_multiplications}"
    )
    return _assemble(
        {"mnist": _to_uint8(mnist), "svhn": _to_uint8(svhn)},
        {"mnist": pools["mnist"][0], "svhn": pools["svhn"][0]},
        data_multiplications,
        generator,
        MAX_PER_CLASS,
        source,
        {"mnist": pools["mnist"][2], "svhn": pools["svhn"][2]},
    )


# ---------------------------------------------------------------------------------------------
# Real data if present, else the stand-in


def mnist_svhn_text(
    split: str,
    generator: torch.Generator | None = None,
    *,
    root: str | Path | None = None,
    data_multiplications: int = DATA_MULTIPLICATIONS,
    n: int | None = None,
    download: bool = False,
    n_images: int | None = None,
) -> MnistSvhnText:
    """MNIST-SVHN-Text from disk when present, else the embedded stand-in.

    Real data is looked up at ``root``, by default :func:`repro.paths.data_root`, in
    torchvision's layout (module docstring). When the default location lacks it and
    ``download`` is False, :func:`embedded_mnist_svhn_text` is drawn instead. ``source``
    says which one was used.

    Args:
        split: ``"train"`` or ``"test"``.
        generator: randomness of the pairing, texts, stand-in and subset; ``None`` seeds one
            with 0.
        root: data root; given explicitly, it must hold the data (or ``download`` it).
        data_multiplications: pairs per MNIST image (MoPoE: 20).
        n: keep a random subset of ``n`` tuples (all when ``None``).
        download: let torchvision download missing files into the root (needs internet).
        n_images: stand-in only: images per pool (``None``: 5000 train, 1000 test).

    Returns:
        The tuples.

    Raises:
        ValueError: for an unknown split, ``n < 1`` or ``n`` above the number of tuples.
        FileNotFoundError: when an explicit ``root`` lacks the files and ``download`` is
            False.
    """
    _check_split(split)
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 or None, got {n}")
    generator = _check_generator(generator)
    base = data_root() if root is None else Path(root)
    if root is not None or download or real_data_present(base, split):
        data = load_mnist_svhn_text(
            base,
            split,
            generator,
            data_multiplications=data_multiplications,
            download=download,
        )
    else:
        data = embedded_mnist_svhn_text(
            split, generator, n_images=n_images, data_multiplications=data_multiplications
        )
    if n is None:
        return data
    if n > len(data):
        raise ValueError(f"n = {n} exceeds the {len(data)} tuples of {data.source}")
    return data.subset(torch.randperm(len(data), generator=generator)[:n])
