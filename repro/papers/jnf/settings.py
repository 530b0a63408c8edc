"""Settings of the ``jnf`` figures: frozen configs and their ``quick`` / ``full`` presets.

``quick`` runs on 2 CPU cores in about a minute from embedded data (the notebooks' saved
``parameters``, run by CI); ``full`` is the paper's scale, meant for a GPU. Get a config with
:func:`get` and override fields there or with ``dataclasses.replace``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from repro.config import TrainConfig, select

__all__ = ["ToyDataConfig", "ToyPosteriorsConfig", "PRESETS", "get"]


@dataclass(frozen=True)
class ToyDataConfig:
    """Toy squares/circles data (arXiv 2502.03952, Fig. 2)."""

    n_train: int = 140_000  # paper: 200,000 pairs split 70/15/15
    n_val: int = 30_000  # validation pairs (best-epoch selection)
    n_test: int = 30_000  # test pairs (metrics and figure)
    size: int = 32  # 32x32 images on linspace(-1, 1, 32)
    r_min: float = 0.3  # radii ~ U(0.3, 0.9), drawn per image
    r_max: float = 0.9
    thickness: float = 0.25  # outline band r +- 0.125


@dataclass(frozen=True)
class ToyPosteriorsConfig:
    """Fig. 2, ``jnf_toy_posteriors``: Gaussian vs flow vs DCCA unimodal posteriors."""

    name: str = "jnf_toy_posteriors"  # figure name
    profile: str = "full"  # preset this config came from
    seed: int = 0  # paper: seed 0
    device: str = "auto"  # "auto", "cpu" or "cuda"
    threads: int = 0  # torch CPU threads; 0 keeps torch's default, 1 for tiny models on shared CPUs
    smoke: bool = False  # a few batches of every stage (repro.config.smoke), output in runs/
    data: ToyDataConfig = field(default_factory=ToyDataConfig)
    latent_dim: int = 2  # paper: 2
    hidden: int = 512  # paper: 512-unit layers in every MLP
    likelihood: str = "normal"  # reference toy config: unit-variance "normal" decoders
    beta: float = 0.5  # KL weight of the joint ELBO (reference JNF toy config: beta_prior=0.5)
    flow_transforms: int = 2  # MADE blocks per MAF (paper: 2)
    flow_hidden: tuple[int, ...] = (128, 128, 128)  # MADE hidden layers (MultiVae default)
    dcca_dim: int = 1  # DCCA embedding size (paper toy: 1)
    dcca_hidden: tuple[int, ...] = (512, 512)  # DCCA projector MLP (inferred: "MLPs on 32x32")
    dcca_top_k: int = 1  # top-1 correlation (paper toy)
    dcca_encoder_hidden: tuple[int, ...] = (
        512,
        512,
        512,
    )  # unimodal MLP on g_j(x_j) (paper: 3x512)
    joint_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=150, checkpoint=True)
    )  # stage 1: paper switches at epoch 150
    unimodal_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=150, checkpoint=True)
    )  # stage 2: epochs 151-300
    dcca_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=20, batch_size=800, optimizer="rmsprop", weight_decay=1e-5, checkpoint=True
        )
    )  # paper: 20 epochs, batch 800, RMSprop lr 1e-3, weight decay 1e-5
    reference_radius: float = (
        0.85  # the plotted "large full square": the test full square closest to this radius
    )
    n_scatter: int = 500  # joint embeddings drawn (paper: one test batch of 500)
    n_shown: int = 20  # circles generated from the reference square (paper: 20)
    grid_points: int = 181  # density grid per axis over [-4.5, 4.5]^2 (paper's axes)
    iou_threshold: float = 0.8  # realistic: IoU >= 0.8, <= 20% misplaced grey (neighbours: 0.857)


PRESETS: dict[str, dict[str, Any]] = {
    "toy_posteriors": {
        "full": ToyPosteriorsConfig(),
        "quick": ToyPosteriorsConfig(
            profile="quick",
            device="cpu",
            threads=1,
            data=ToyDataConfig(n_train=6_000, n_val=1_000, n_test=2_000),
            joint_train=TrainConfig(epochs=30),
            unimodal_train=TrainConfig(epochs=10),
            dcca_train=TrainConfig(
                epochs=5, batch_size=800, optimizer="rmsprop", weight_decay=1e-5
            ),
            grid_points=121,
        ),
    },
}


def get(name: str, profile: str = "quick", **overrides: Any) -> Any:
    """Return the ``jnf`` preset config ``name`` for ``profile`` (see :func:`repro.config.select`).

    Args:
        name: experiment name, a key of :data:`PRESETS` (``"toy_posteriors"``).
        profile: ``"quick"`` or ``"full"``.
        **overrides: fields to replace, e.g. ``seed=1``, ``device="cuda"``.

    Returns:
        A frozen config dataclass.

    Raises:
        ValueError: for an unknown name, profile or field.
    """
    return select(PRESETS, name, profile, **overrides)
