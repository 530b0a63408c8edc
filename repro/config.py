"""Training settings and the preset mechanism; nothing figure-specific lives here.

Each paper keeps its frozen experiment configs and their ``quick`` / ``full`` presets in
``repro/papers/<key>/settings.py`` and exposes them through :func:`select`. ``quick`` runs on 2
CPU cores in about a minute from embedded data; it is what the notebooks' saved ``parameters``
cells and CI run. ``full`` is the paper-scale setting, meant for a GPU. The profile a config came
from is stored in its ``profile`` field, set here: it is the one source of truth for where its
figure is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainConfig", "PROFILES", "select"]

PROFILES = ("quick", "full")


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

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(
                f"TrainConfig needs epochs >= 0, batch_size >= 1, lr > 0; got "
                f"epochs={self.epochs}, batch_size={self.batch_size}, lr={self.lr}"
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
        profile: ``"quick"`` or ``"full"``; stored in the config's ``profile`` field.
        **overrides: fields to replace, e.g. ``seed=1``, ``device="cuda"``.

    Returns:
        A frozen config dataclass.

    Raises:
        ValueError: for an unknown name, profile or field; the message lists the valid ones.
    """
    if name not in presets:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(presets)}")
    if profile not in PROFILES or profile not in presets[name]:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(presets[name])}")
    cfg = presets[name][profile]
    names = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"{type(cfg).__name__} has no fields {unknown}; fields: {sorted(names)}")
    if "profile" in names:
        overrides = {"profile": profile, **overrides}
    return dataclasses.replace(cfg, **overrides)
