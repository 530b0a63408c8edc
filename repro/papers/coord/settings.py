"""Settings of the ``coord`` figures: frozen configs and their presets.

``coord_cross_coherence`` runs the image benchmark of :mod:`repro.papers.jnf.coherence_fid` on
translated PolyMNIST with the coordination-based models (JMVAE-KL, MVTCAE, TELBO, CRMVAE in its
two reconstruction weightings) and the mixture-based ones (MVAE, MMVAE, MoPoE), one shared
encoder/decoder architecture; its config is a :class:`repro.papers.jnf.settings.
CoherenceFIDConfig` named for this figure. ``coord_bound_hierarchy`` takes the exact bounds of
:mod:`repro.papers.coord.bounds` on a linear-Gaussian model and the trained models of
``coord_cross_coherence`` (the same config: their units are shared through the cache).

``quick`` runs on 2 CPU cores in about 3 minutes from the embedded stand-in; ``intermediate``
is the largest CPU setting (about 2.5 h on 2 cores); ``full`` follows MultiVae's CRMVAE run on
translated PolyMNIST (coordination.md §4), meant for a GPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from repro.config import TrainConfig, select
from repro.papers.jnf import settings as jnf_settings
from repro.papers.jnf.settings import CoherenceFIDConfig

__all__ = ["MODELS", "ExactBoundsConfig", "BoundHierarchyConfig", "PRESETS", "get"]

#: Mixture-based, then coordination-based models (coordination.md §1-2).
MIXTURE_BASED = ("MVAE", "MMVAE", "MoPoE")
COORDINATION_BASED = ("JMVAE", "MVTCAE", "TELBO", "CRMVAE", "CRMVAE-half")
MODELS = MIXTURE_BASED + COORDINATION_BASED


def _cross(profile: str, **changes: Any) -> CoherenceFIDConfig:
    """The cross-coherence config of ``profile``: the jnf benchmark preset, translated."""
    base = jnf_settings.PRESETS["coherence_fid"][profile]
    data = dataclasses.replace(base.data, **{"translated": True, **changes.pop("data", {})})
    return dataclasses.replace(
        base, name="coord_cross_coherence", profile=profile, models=MODELS, data=data,
        crmvae_beta=0.1, **changes,
    )  # fmt: skip


@dataclass(frozen=True)
class ExactBoundsConfig:
    """The left panel: exact bounds on a linear-Gaussian model (coordination.md §3)."""

    n_modalities: int = 2  # M = 2: the JMVAE-KL decomposition of §3 item 2 is exact
    dim: int = 4  # latent and observation dimension per modality
    n_samples: int = 2_000  # observations X drawn from the model
    n_alpha: int = 21  # alpha on a grid of [0, 1]
    perturb_shift: float = 0.5  # perturbed q: means shifted by this many posterior stds
    perturb_scale: float = 1.5  # ... and stds multiplied by this factor


@dataclass(frozen=True)
class BoundHierarchyConfig:
    """``coord_bound_hierarchy``: exact bounds, and objective vs log p(X) on trained models."""

    name: str = "coord_bound_hierarchy"  # figure name
    profile: str = "full"  # preset this config came from
    seed: int = 0  # the exact panel's data seed; the trained models' seeds come from `trained`
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:<i>"
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    executor: str = "auto"  # repro.jobs executor of the trained models' units
    workers: int = 0  # processes of the local pool (0: one per core)
    smoke: bool = False  # a few batches of every stage (repro.config.smoke), output in runs/
    exact: ExactBoundsConfig = field(default_factory=ExactBoundsConfig)
    trained: CoherenceFIDConfig = field(default_factory=lambda: _cross("full"))  # its models
    K: int = 1_000  # importance samples per tuple for log p(X) (the issue: at least 1,000)
    n_is: int = 1_000  # test tuples for the importance-sampled log p(X)
    K_check: int = 5_000  # a larger K on n_check tuples: the estimate's error, measured
    n_check: int = 50


PRESETS: dict[str, dict[str, Any]] = {
    "cross_coherence": {
        # MultiVae's CRMVAE run on translated PolyMNIST (coordination.md §4): latent 512,
        # Laplace 0.75, beta 0.1, Adam 5e-4, batch 256, 500 epochs.
        "full": _cross(
            "full",
            latent_dim=512,
            train=TrainConfig(epochs=500, batch_size=256, lr=5e-4, checkpoint=True),
        ),
        "intermediate": _cross("intermediate"),
        # Quick: the plain (untranslated) stand-in. At 3 CPU-minutes every model stayed at
        # chance on the translated one (0.10-0.12 from 1-4 inputs at 6,000 tuples x 4 epochs,
        # its classifiers 0.82-0.89); the intermediate and full profiles use translated data.
        "quick": _cross(
            "quick",
            data={"n_train": 5_000, "n_val": 500, "n_test": 1_000, "translated": False},
            train=TrainConfig(epochs=4, batch_size=64),
            jnf_joint_train=TrainConfig(epochs=4, batch_size=64),
            jnf_unimodal_train=TrainConfig(epochs=2, batch_size=64),
            jmvae_warmup=2,
        ),
    },
}
PRESETS["bound_hierarchy"] = {
    "full": BoundHierarchyConfig(),
    "intermediate": BoundHierarchyConfig(
        profile="intermediate",
        device="cpu",
        threads=1,
        trained=PRESETS["cross_coherence"]["intermediate"],
        n_is=500,
    ),
    "quick": BoundHierarchyConfig(
        profile="quick",
        device="cpu",
        threads=1,
        trained=PRESETS["cross_coherence"]["quick"],
        exact=ExactBoundsConfig(n_samples=500, n_alpha=11),
        n_is=50,
        n_check=10,
    ),
}


def get(name: str, profile: str = "quick", **overrides: Any) -> Any:
    """Return the ``coord`` preset config ``name`` for ``profile``.

    Args:
        name: ``"cross_coherence"`` or ``"bound_hierarchy"``.
        profile: ``"quick"``, ``"intermediate"`` or ``"full"``.
        **overrides: fields to replace, e.g. ``seed=1``, ``device="cuda"``; for
            ``bound_hierarchy``, ``device``, ``threads``, ``executor`` and ``smoke`` are passed
            on to the trained models' config too.

    Returns:
        A frozen config dataclass.

    Raises:
        ValueError: for an unknown name, profile or field.
    """
    cfg = select(PRESETS, name, profile, **overrides)  # a smoke run reaches `trained` too
    if name == "bound_hierarchy":
        shared = {k: getattr(cfg, k) for k in ("device", "threads", "executor", "workers")}
        cfg = dataclasses.replace(cfg, trained=dataclasses.replace(cfg.trained, **shared))
    return cfg
