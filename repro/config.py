"""Training settings and the preset mechanism; nothing figure-specific lives here.

Each paper keeps its frozen experiment configs and their ``quick`` / ``full`` presets in
``repro/papers/<key>/settings.py`` and exposes them through :func:`select`. The profiles:

* ``quick``: 2 CPU cores, minutes, embedded data; the notebooks' saved ``parameters`` cells and
  CI run it, and it is designed so that the figure has content;
* ``intermediate``: for a figure whose ``full`` profile is out of reach on a CPU, the largest
  settings that train in at most about 2.5 hours on a 2-core CPU (a figure without one refuses
  the name); its run is committed under ``figures/intermediate/``;
* ``full``: the paper's settings, meant for a GPU, on the real data when it is present.

The profile a config came from is stored in its ``profile`` field, set here: it is the one
source of truth for where its figure is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainConfig", "PROFILES", "SMOKE_SIZE", "select", "smoke"]

PROFILES = ("quick", "intermediate", "full")
SMOKE_SIZE = 64  # samples per data split in a smoke run
SIZE_FIELDS = ("n_train", "n_val", "n_test")  # data-size fields a smoke run shrinks


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one :func:`repro.train.fit` call (one training stage)."""

    epochs: int = 10  # passes over the training set
    batch_size: int = 256  # JNF toy: 256
    lr: float = 1e-3  # JNF toy: 1e-3
    optimizer: str = "adam"  # "adam" or "rmsprop" (DCCA stage of JNF-Shared)
    weight_decay: float = 0.0  # L2 penalty (DCCA stage: 1e-5)
    restore_best: bool = True  # keep the best-validation epoch (MultiVae: best stage-1 ckpt)
    checkpoint: bool = False  # per-epoch checkpoint + resume (full: <= 1 epoch lost)
    progress: bool = True  # tqdm progress bar
    max_steps: int = 0  # optimiser steps per epoch at most; 0 = the whole training set (smoke: 2)

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.max_steps < 0:
            raise ValueError(
                f"TrainConfig needs epochs >= 0, batch_size >= 1, lr > 0, max_steps >= 0; got "
                f"epochs={self.epochs}, batch_size={self.batch_size}, lr={self.lr}, "
                f"max_steps={self.max_steps}"
            )
        if self.optimizer not in ("adam", "rmsprop"):
            raise ValueError(f"optimizer must be 'adam' or 'rmsprop', got {self.optimizer!r}")


def select(
    presets: Mapping[str, Mapping[str, Any]], name: str, profile: str = "quick", **overrides: Any
) -> Any:
    """Return the preset config ``name`` for ``profile``, with top-level fields overridden.

    Args:
        presets: ``{experiment: {"quick": cfg, "full": cfg}}`` of one paper.
        name: experiment name, a key of ``presets``.
        profile: ``"quick"``, ``"intermediate"`` or ``"full"``; stored in the config's
            ``profile`` field.
        **overrides: fields to replace, e.g. ``seed=1``, ``device="cuda"``.

    Returns:
        A frozen config dataclass.

    Raises:
        ValueError: for an unknown name, profile or field; the message lists the valid ones.
    """
    if name not in presets:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(presets)}")
    if profile not in PROFILES or profile not in presets[name]:
        have = [p for p in PROFILES if p in presets[name]]
        raise ValueError(
            f"unknown profile {profile!r} for {name!r}; choose one of {have}"
            + (" (this figure has no intermediate preset)" if profile == "intermediate" else "")
        )
    cfg = presets[name][profile]
    names = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"{type(cfg).__name__} has no fields {unknown}; fields: {sorted(names)}")
    if "profile" in names:
        overrides = {"profile": profile, **overrides}
    cfg = dataclasses.replace(cfg, **overrides)
    return smoke(cfg) if getattr(cfg, "smoke", False) else cfg


def smoke(cfg: Any) -> Any:
    """A smoke-test version of a config: same architecture and data shape, a few batches.

    Every :class:`TrainConfig` inside ``cfg`` (at any depth) trains one epoch of at most two
    steps without checkpoints; data-size fields (``n_train``, ``n_val``, ``n_test``) are cut to
    :data:`SMOKE_SIZE`; everything else (networks, image sizes, latent sizes) is left as it is,
    so a smoke run of the ``full`` profile builds and runs every stage of the paper-scale path.

    Args:
        cfg: a config dataclass.

    Returns:
        The reduced config (with ``smoke=True`` when the config has that field).
    """
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, TrainConfig):
            changes[f.name] = dataclasses.replace(value, epochs=1, max_steps=2, checkpoint=False)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes[f.name] = smoke(value)
        elif f.name in SIZE_FIELDS and isinstance(value, int):
            changes[f.name] = min(value, SMOKE_SIZE)
        elif f.name == "smoke":
            changes[f.name] = True
    return dataclasses.replace(cfg, **changes)
