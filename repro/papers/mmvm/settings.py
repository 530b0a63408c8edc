"""Settings of the ``mmvm`` figures: frozen configs and their ``quick`` / ``full`` presets.

``quick`` runs on 2 CPU cores in a few minutes from the rat simulator (the notebooks' saved
``parameters``, run by CI); ``full`` is the paper's scale (networks of width ``D`` per rat,
999 epochs). Get a config with :func:`get`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from repro.config import TrainConfig, select

__all__ = ["NeuralDataConfig", "LatentsConfig", "TradeoffConfig", "PRESETS", "get"]


@dataclass(frozen=True)
class NeuralDataConfig:
    """The rat recordings (real under the data root when present, else the simulator)."""

    n_trials_per_odor: int = 50  # simulator: trials per odor per rat (mmvm.md §4)
    test_fraction: float = 0.2  # held-out trial tuples per odor (ours; the paper is in-sample)


@dataclass(frozen=True)
class LatentsConfig:
    """Fig. 4, ``mmvm_latents``: 2-D latents of 5 rats, coloured by odor, per method."""

    name: str = "mmvm_latents"  # figure name
    profile: str = "full"  # preset this config came from
    seed: int = 0  # paper: seed 0
    device: str = "auto"  # "auto", "cpu" or "cuda"
    threads: int = 0  # torch CPU threads per unit; 0 keeps torch's default
    executor: str = "auto"  # repro.jobs: "auto" (CPU: a local pool), "sequential" or "local"
    workers: int = 0  # processes of the local pool (0: one per core)
    smoke: bool = False  # a few batches of every stage (repro.config.smoke), output in runs/
    data: NeuralDataConfig = field(default_factory=NeuralDataConfig)
    methods: tuple[str, ...] = ("independent", "AVG", "MoPoE", "MMVM")  # the paper's Fig. 4
    latent_dim: int = 2  # paper: 2-D latents, scattered directly (no PCA)
    hidden: int = 0  # encoder/decoder width; 0 = D_m, the input size (paper code)
    likelihood: str = "mse"  # the code's summed squared error; "poisson": counts (mmvm.md §4),
    # with the encoders' log-variance clamped to [-20, 20]
    beta: float = 1e-3  # inferred: the rat beta grid is in no repository; beta ~ 1 collapses
    # the 2-D latent at this data scale (mmvm.md §3)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=999, batch_size=128, restore_best=False, checkpoint=True
        )
    )  # paper: Adam lr 1e-3, batch 128, 999 epochs, metrics of the last epoch
    mlp_hidden: tuple[int, ...] = (1024, 512, 256, 64)  # coherence classifiers (mmvm.md §5)
    mlp_epochs: int = 51  # mmvm.md §5


@dataclass(frozen=True)
class TradeoffConfig:
    """Fig. 3, ``mmvm_beta_tradeoff``: latent accuracy and coherence vs reconstruction over beta."""

    name: str = "mmvm_beta_tradeoff"  # figure name
    profile: str = "full"  # preset this config came from
    seed: int = 0  # data seed; model seeds are seed, seed + 1, ...
    device: str = "auto"  # "auto", "cpu" or "cuda"
    threads: int = 0  # torch CPU threads per unit; 0 keeps torch's default
    executor: str = "auto"  # repro.jobs: "auto" (CPU: a local pool), "sequential" or "local"
    workers: int = 0  # processes of the local pool (0: one per core)
    smoke: bool = False  # a few batches of every stage (repro.config.smoke), output in runs/
    data: NeuralDataConfig = field(default_factory=NeuralDataConfig)
    methods: tuple[str, ...] = ("independent", "AVG", "MoPoE", "MMVM")  # as Fig. 4
    betas: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2)  # inferred: the rat grid is in no
    # repository; 1e-5..1e-2 fits the data scale (mmvm.md §3)
    n_seeds: int = 3  # model seeds per (method, beta); the paper's count is unverified
    latent_dim: int = 2  # as Fig. 4
    hidden: int = 0  # encoder/decoder width; 0 = D_m (paper code)
    likelihood: str = "mse"  # the code's summed squared error; "poisson": counts (mmvm.md §4),
    # with the encoders' log-variance clamped to [-20, 20]
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=999, batch_size=128, restore_best=False, checkpoint=True
        )
    )  # paper: Adam lr 1e-3, batch 128, 999 epochs, metrics of the last epoch
    mlp_hidden: tuple[int, ...] = (1024, 512, 256, 64)  # coherence classifiers (mmvm.md §5)
    mlp_epochs: int = 51  # mmvm.md §5


PRESETS: dict[str, dict[str, Any]] = {
    "latents": {
        "full": LatentsConfig(),
        "quick": LatentsConfig(
            profile="quick",
            device="cpu",
            threads=1,
            hidden=128,
            train=TrainConfig(epochs=100, batch_size=128, lr=3e-3, restore_best=False),
            mlp_hidden=(256, 64),
            mlp_epochs=10,
        ),
    },
    "tradeoff": {
        "full": TradeoffConfig(),
        "quick": TradeoffConfig(
            profile="quick",
            device="cpu",
            threads=1,
            betas=(1e-4, 1e-3, 1e-2),
            n_seeds=2,
            hidden=64,
            train=TrainConfig(epochs=20, batch_size=128, lr=1e-2, restore_best=False),
            mlp_hidden=(256, 64),
            mlp_epochs=10,
        ),
    },
}


def get(name: str, profile: str = "quick", **overrides: Any) -> Any:
    """Return the ``mmvm`` preset config ``name`` for ``profile`` (see :func:`repro.config.select`).

    Args:
        name: experiment name, a key of :data:`PRESETS` (``"latents"``, ``"tradeoff"``).
        profile: ``"quick"`` or ``"full"``.
        **overrides: fields to replace, e.g. ``seed=1``, ``device="cuda"``.

    Returns:
        A frozen config dataclass.

    Raises:
        ValueError: for an unknown name, profile or field.
    """
    return select(PRESETS, name, profile, **overrides)
