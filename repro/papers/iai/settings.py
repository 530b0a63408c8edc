"""Settings of the ``iai`` figures: frozen configs and their ``quick`` / ``full`` presets.

``quick`` runs on 2 CPU cores in a few minutes on the embedded MNIST-SVHN-Text stand-in (the
notebook's saved ``parameters``, run by CI); ``full`` uses MoPoE's MNIST-SVHN-Text settings
and Marino's refiner defaults (every value of the paper itself is unverified,
papers/iterative_amortized.md). Get a config with :func:`get`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from repro.config import TrainConfig, select

__all__ = ["MSTDataConfig", "IterationsConfig", "PRESETS", "get"]


@dataclass(frozen=True)
class MSTDataConfig:
    """MNIST-SVHN-Text (real under the data root when present, else the embedded stand-in)."""

    n_train: int = 0  # training tuples; 0 = all (MoPoE: every pair, about 1.1 M)
    n_test: int = 0  # test tuples; 0 = all
    data_multiplications: int = 20  # MoPoE: SVHN partners per MNIST image
    n_images: int = 0  # stand-in only: images per pool; 0 = the stand-in's default


@dataclass(frozen=True)
class IterationsConfig:
    """``iai_elbo_iterations``: ELBO vs refinement iteration, generations, probe table."""

    name: str = "iai_elbo_iterations"  # figure name
    profile: str = "full"  # preset this config came from
    seed: int = 0  # data seed; model seeds are seed, seed + 1, ...
    device: str = "auto"  # "auto", "cpu" or "cuda"
    threads: int = 0  # torch CPU threads per unit; 0 keeps torch's default
    executor: str = "auto"  # repro.jobs: "auto" (CPU: a local pool), "sequential" or "local"
    workers: int = 0  # processes of the local pool (0: one per core)
    smoke: bool = False  # a few batches of every stage (repro.config.smoke), output in runs/
    data: MSTDataConfig = field(default_factory=MSTDataConfig)
    n_seeds: int = 3  # model seeds: the band of the ELBO curve (inferred)
    latent_dim: int = 20  # MoPoE MST class_dim
    networks: str = "conv"  # "conv": conv SVHN encoder/decoder, MLP MNIST and text; "mlp": all MLP
    hidden: int = 400  # MLP width (MoPoE's MNIST networks: 400 units)
    beta: float = 2.5  # MoPoE MST beta (source objective and refinement ELBO)
    image_scale: float = 0.75  # Laplace scale of the image likelihoods (MoPoE)
    rescale_likelihoods: bool = True  # MoPoE rec_weights: numel(svhn) / numel(m) per modality
    # (mnist 3.92, svhn 1, text 5.41); the ELBO of the figure is this weighted ELBO
    T_train: tuple[int, ...] = (0, 1, 5)  # refinement steps per model; 0 = alignment without
    # refinement; the largest gives the refined posterior of the figure (Marino: 5)
    T_eval: int = 10  # the ELBO curve's last iteration: >= 2 x max(T_train) (extrapolation)
    K_train: int = 10  # Monte-Carlo samples per refinement gradient (Marino: n_samples=10)
    K_eval: int = 10  # samples per ELBO estimate of the curve (iterative_amortized.md §5)
    refiner_hidden: tuple[int, ...] = (512, 512)  # Marino: 2 x 512, ELU
    data_features: bool = True  # refiner sees the source experts' means (inferred; the JAX
    # re-implementation finds data inputs help)
    source: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=200, batch_size=256, lr=1e-3, restore_best=False, checkpoint=True
        )
    )  # MoPoE MST: Adam 1e-3, batch 256, 200 epochs
    refine: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=50, batch_size=64, lr=2e-4, restore_best=False, checkpoint=True
        )
    )  # Marino MNIST: Adam 2e-4, batch 64; epochs inferred
    probe_train: int = 500  # MoPoE num_training_samples_lr: training means of the probe
    n_generations: int = 8  # test tuples shown in the generation panel
    clf_epochs: int = 10  # digit classifiers of the coherence (ours; MoPoE ships pretrained ones)


PRESETS: dict[str, dict[str, Any]] = {
    "elbo_iterations": {
        "full": IterationsConfig(),
        "quick": IterationsConfig(
            profile="quick",
            device="cpu",
            threads=1,
            data=MSTDataConfig(n_train=4000, n_test=1000, n_images=2000),
            n_seeds=2,
            latent_dim=8,
            networks="mlp",
            hidden=128,
            beta=1.0,
            T_train=(0, 1, 3),
            T_eval=6,
            K_train=1,
            refiner_hidden=(128, 128),
            source=TrainConfig(epochs=20, batch_size=128, lr=2e-3, restore_best=False),
            refine=TrainConfig(epochs=5, batch_size=128, lr=1e-3, restore_best=False),
        ),
    },
}


def get(name: str, profile: str = "quick", **overrides: Any) -> Any:
    """Return the ``iai`` preset config ``name`` for ``profile`` (see :func:`repro.config.select`).

    Args:
        name: experiment name, a key of :data:`PRESETS` (``"elbo_iterations"``).
        profile: ``"quick"`` or ``"full"``.
        **overrides: fields to replace, e.g. ``seed=1``, ``device="cuda"``.

    Returns:
        A frozen config dataclass.

    Raises:
        ValueError: for an unknown name, profile or field.
    """
    return select(PRESETS, name, profile, **overrides)
