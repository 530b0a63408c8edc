"""Settings of the ``jnf`` figures: frozen configs and their ``quick`` / ``full`` presets.

``quick`` runs on 2 CPU cores in about a minute from embedded data (the notebooks' saved
``parameters``, run by CI); ``full`` is the paper's scale, meant for a GPU. Get a config with
:func:`get` and override fields there or with ``dataclasses.replace``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from repro.config import TrainConfig, select

__all__ = [
    "ToyDataConfig",
    "ToyPosteriorsConfig",
    "PolyMNISTConfig",
    "CoherenceFIDConfig",
    "PRESETS",
    "get",
]


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
    executor: str = "auto"  # repro.jobs: "auto" (CPU: a local pool), "sequential" or "local"
    workers: int = 0  # processes of the local pool (0: one per core)
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


@dataclass(frozen=True)
class PolyMNISTConfig:
    """PolyMNIST data: the real dataset under the data root when present, else the stand-in."""

    n_train: int = 54_000  # paper: 60k training images split 90/10 (seeded) into train/val
    n_val: int = 6_000  # validation tuples (best-epoch selection)
    n_test: int = 10_000  # test tuples (coherence and FID)
    translated: bool = False  # Fig. 4: plain PolyMNIST


@dataclass(frozen=True)
class CoherenceFIDConfig:
    """Fig. 4, ``jnf_coherence_fid``: coherence by number of inputs and coherence vs FID."""

    name: str = "jnf_coherence_fid"  # figure name
    profile: str = "full"  # preset this config came from
    seed: int = 0  # first seed (paper: seeds 0-3, one point per model and seed)
    n_seeds: int = 4  # seeds seed, seed + 1, ..., seed + n_seeds - 1
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:<i>"
    threads: int = 0  # torch CPU threads per unit; 0 keeps torch's default
    executor: str = "auto"  # repro.jobs: "auto" (CPU: a local pool), "sequential" or "local"
    workers: int = 0  # processes of the local pool (0: one per core)
    smoke: bool = False  # a few batches of every stage (repro.config.smoke), output in runs/
    data: PolyMNISTConfig = field(default_factory=PolyMNISTConfig)
    models: tuple[str, ...] = (
        "JNF",
        "JNF-DCCA",
        "JMVAE",
        "MoPoE",
        "MVTCAE",
        "MMVAE",
        "MVAE",
    )  # the MultiVae benchmark's models (MVAE runs failed there; ours is shown)
    latent_dim: int = 128  # paper: JNF latent 128 (one latent for every model: inferred)
    channels: tuple[int, ...] = (32, 64)  # conv encoder widths; decoder mirrors (inferred: the
    # paper uses MMVAE+ ResNets, nf 64, s0 7)
    joint_hidden: int = 512  # joint encoder (JNF, JMVAE): Linear+ReLU per modality, then 512
    likelihood: str = "laplace"  # paper: Laplace decoders
    scale: float = 0.75  # paper: Laplace scale 0.75
    flow_transforms: int = 2  # MADE blocks per MAF (JNF default)
    flow_hidden: tuple[int, ...] = (128, 128, 128)  # MADE hidden layers (JNF default)
    dcca_dim: int = 10  # JNF-DCCA embedding (paper: 10)
    dcca_top_k: int = 5  # correlations kept per pair (inferred: half the embedding; all -> NaN)
    dcca_encoder_hidden: tuple[int, ...] = (512, 512)  # unimodal MLP on g_j(x_j) (inferred)
    jmvae_alpha: float = 0.1  # paper run config: alpha 0.1
    jmvae_warmup: int = 200  # paper run config: warm-up 200 epochs (of 500)
    mopoe_beta: float = 2.5  # MoPoE's published beta
    mvtcae_alpha: float = 0.1  # MVTCAE defaults
    mvtcae_beta: float = 2.5
    crmvae_beta: float = 2.5  # MultiVae CRMVAEConfig default (its translated PolyMNIST run: 0.1)
    mmvae_K: int = 10  # importance samples (MultiVae benchmark: K = 10)
    mmvae_estimator: str = "iwae"  # "iwae" (stratified IWAE), or "elbo" (with mmvae_stratified)
    mmvae_stratified: str = "all"  # "all" experts per sample, or "chunks": one per sample (an
    # unbiased estimate of the average over experts, 5x cheaper; with estimator "elbo")
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=500, batch_size=128, checkpoint=True)
    )  # paper: Adam lr 1e-3, batch 128, 500 epochs
    jnf_joint_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=100, batch_size=128, checkpoint=True)
    )  # JNF: warm-up 100 epochs of the joint VAE ...
    jnf_unimodal_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=400, batch_size=128, checkpoint=True)
    )  # ... then the unimodal flows for the rest of the 500
    dcca_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=100, batch_size=800, lr=1e-4, optimizer="rmsprop", checkpoint=True
        )
    )  # JNF-DCCA: 100 DCCA epochs; paper-era DCCA lr 1e-4, batch 500-800
    dcca_joint_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=100, batch_size=128, checkpoint=True)
    )  # JNF-DCCA: then 100 joint epochs ...
    dcca_unimodal_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=100, batch_size=128, checkpoint=True)
    )  # ... and 100 posterior epochs
    classifier_epochs: int = 30  # per-modality digit classifiers (trained when clf/ is absent)
    classifier_n_train: int = 60_000  # their training tuples (the real training set's size)
    hmc: tuple[tuple[str, float], ...] = ()  # HMC overrides for subset posteriors (empty: the
    # recommended settings of repro.samplers)
    n_joint: int = 10_000  # prior samples for joint coherence (paper: 10,000)
    n_fid: int = 10_000  # generated images per FID (paper: one per test point)

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds of the run."""
        return tuple(range(self.seed, self.seed + self.n_seeds))


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
    "coherence_fid": {
        "full": CoherenceFIDConfig(),
        "quick": CoherenceFIDConfig(
            profile="quick",
            n_seeds=1,
            device="cpu",
            threads=1,
            data=PolyMNISTConfig(n_train=10_000, n_val=1_000, n_test=1_000),
            latent_dim=32,
            channels=(16, 32),
            joint_hidden=128,
            likelihood="normal",
            scale=0.2,
            flow_hidden=(64, 64),
            dcca_encoder_hidden=(64,),
            jmvae_warmup=2,
            mmvae_K=1,
            mmvae_estimator="elbo",
            mmvae_stratified="chunks",
            train=TrainConfig(epochs=5, batch_size=64),
            jnf_joint_train=TrainConfig(epochs=5, batch_size=64),
            jnf_unimodal_train=TrainConfig(epochs=3, batch_size=64),
            dcca_train=TrainConfig(epochs=3, batch_size=500, lr=1e-3, optimizer="rmsprop"),
            dcca_joint_train=TrainConfig(epochs=5, batch_size=64),
            dcca_unimodal_train=TrainConfig(epochs=3, batch_size=64),
            classifier_epochs=15,
            classifier_n_train=10_000,
            hmc=(("n_steps", 10), ("adapt_steps", 10), ("n_leapfrog", 5)),
            n_joint=1_000,
            n_fid=1_000,
        ),
        # The largest settings that train in about 2.5 h on a 2-core CPU (one seed, about 4 CPU
        # hours): the quick choices that make the models learn (Gaussian likelihood, batch 64,
        # MMVAE one expert per sample), the full profile's conv widths, 50,000 training tuples
        # (the real training split's size) and 20 epochs.
        "intermediate": CoherenceFIDConfig(
            profile="intermediate",
            n_seeds=1,
            device="cpu",
            threads=1,
            data=PolyMNISTConfig(n_train=50_000, n_val=5_000, n_test=5_000),
            latent_dim=64,
            channels=(32, 64),
            joint_hidden=256,
            likelihood="normal",
            scale=0.2,
            flow_hidden=(128, 128),
            dcca_encoder_hidden=(128,),
            jmvae_warmup=8,
            mmvae_K=1,
            mmvae_estimator="elbo",
            mmvae_stratified="chunks",
            train=TrainConfig(epochs=20, batch_size=64, checkpoint=True),
            jnf_joint_train=TrainConfig(epochs=20, batch_size=64, checkpoint=True),
            jnf_unimodal_train=TrainConfig(epochs=10, batch_size=64, checkpoint=True),
            dcca_train=TrainConfig(
                epochs=10, batch_size=800, lr=1e-3, optimizer="rmsprop", checkpoint=True
            ),
            dcca_joint_train=TrainConfig(epochs=20, batch_size=64, checkpoint=True),
            dcca_unimodal_train=TrainConfig(epochs=10, batch_size=64, checkpoint=True),
            classifier_epochs=10,
            classifier_n_train=50_000,
            hmc=(("n_steps", 20), ("adapt_steps", 20), ("n_leapfrog", 5)),
            n_joint=5_000,
            n_fid=5_000,
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
