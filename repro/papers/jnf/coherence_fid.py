"""Fig. 4, ``jnf_coherence_fid``: coherence by number of inputs, and coherence against FID.

Reproduces the setting of Fig. 4 of Senellart & Allassonniere (arXiv 2502.03952) on PolyMNIST
(the real dataset under the data root when present, else the embedded stand-in of
:mod:`repro.data.polymnist`): JNF, JNF-DCCA, JMVAE, MoPoE, MVTCAE, MMVAE and MVAE, each trained
per seed on the same data with the same encoder/decoder architecture, then evaluated by

* conditional coherence: for every subset ``S`` of 1-4 modalities and every target outside it,
  one conditional sample per test tuple, classified by the target's digit classifier, balanced
  accuracy, averaged by ``|S|`` (:func:`repro.metrics.coherence.conditional_coherence`);
* joint coherence: the share of prior samples whose five modalities get the same digit;
* FID of ``m0`` generated from each single other modality (or the labelled FD proxy when the
  Inception weights are absent, :func:`repro.metrics.fid.fd_metric`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from repro import verdicts
from repro.config import SMOKE_SIZE, TrainConfig
from repro.data.polymnist import MODALITIES, MultimodalImages, polymnist
from repro.flows import FlowPosterior
from repro.io import atomic_torch_save
from repro.jobs import Unit, load_cached, run_units
from repro.metrics.classifiers import DigitClassifier, accuracy, load_pretrained, train_classifiers
from repro.metrics.coherence import conditional_coherence, joint_coherence, within_noise
from repro.metrics.fid import fd_metric
from repro.models import CRMVAE, JMVAE, JNF, MMVAE, MVAE, MVTCAE, TELBO, MoPoE, MultimodalVAE
from repro.models.decoders import ConvDecoder
from repro.models.encoders import ConvEncoder, JointMLPEncoder, MLPEncoder, ProjectedEncoder
from repro.papers.jnf.settings import CoherenceFIDConfig
from repro.paths import data_root
from repro.record import check_writable
from repro.runtime import (
    checkpoint_path,
    default_dtype,
    resolve_device,
    seed_everything,
    set_threads,
)
from repro.train import History, fit_stages

__all__ = [
    "MODEL_NAMES",
    "CoherenceFIDResult",
    "build_model",
    "stage_configs",
    "units",
    "train_unit",
    "load_trained",
    "cached_classifiers",
    "sampler_kwargs",
    "run",
    "run_benchmark",
    "check_predictions",
    "at_chance",
    "short_source",
    "summary",
]

MODEL_NAMES = (
    "JNF",
    "JNF-DCCA",
    "JMVAE",
    "MoPoE",
    "MVTCAE",
    "MMVAE",
    "MVAE",
    "CRMVAE",
    "CRMVAE-half",
    "TELBO",
)  # CRMVAE: the docstring's reconstruction weight; CRMVAE-half: MultiVae's code (half of it)
SHAPE = (3, 28, 28)
FD_TARGET = "m0"  # Fig. 4's FID: m0 generated from the other modalities
DATA_SEED = 0  # one dataset (and split) for every model seed
SMOKE_HMC = {"n_steps": 2, "adapt_steps": 2, "n_leapfrog": 2}  # a smoke run only runs the path


@dataclass
class CoherenceFIDResult:
    """Everything the figure and the summary need.

    Attributes:
        cfg: the config that produced it.
        metrics: per model, means over seeds: ``coherence_<k>_inputs`` (k = 1..4),
            ``joint_coherence`` and the FD value under ``fd_key``.
        details: per model and seed, the same numbers plus training samples/s; classifier
            accuracies; the data source; the FD label.
        per_seed: per model, per seed, ``{"by_size": {k: coherence}, "joint": ..., "fd": ...}``.
        fd_label: axis label of the FD (``"FID (Inception pool3)"`` or the proxy's label).
        fd_key: the sidecar key of the FD.
        source: which data was used.
        histories: per ``"<model>/<seed>/<stage>"``, the training history.
        seconds: wall time of this call.
    """

    cfg: CoherenceFIDConfig
    metrics: dict[str, dict[str, float]]
    details: dict[str, object]
    per_seed: dict[str, dict[int, dict]]
    fd_label: str
    fd_key: str
    source: str
    histories: dict[str, History] = field(default_factory=dict)
    seconds: float = 0.0


def _networks(cfg: CoherenceFIDConfig) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
    d = cfg.latent_dim
    encoders = {m: ConvEncoder(SHAPE[0], SHAPE[1], d, channels=cfg.channels) for m in MODALITIES}
    decoders = {
        m: ConvDecoder(
            d,
            SHAPE[0],
            SHAPE[1],
            channels=tuple(reversed(cfg.channels)),
            kind=cfg.likelihood,
            scale=cfg.scale,
        )  # fmt: skip
        for m in MODALITIES
    }
    return encoders, decoders


def _projector(cfg: CoherenceFIDConfig) -> nn.Module:
    """DCCA projector ``g_j``: the conv encoder's body, then a linear map to the embedding."""
    conv = ConvEncoder(SHAPE[0], SHAPE[1], cfg.dcca_dim, channels=cfg.channels)
    return nn.Sequential(conv.body, nn.Linear(conv.head.loc.in_features, cfg.dcca_dim))


def build_model(name: str, cfg: CoherenceFIDConfig) -> MultimodalVAE:
    """One model of the figure with the shared architecture (fresh weights).

    Args:
        name: one of :data:`MODEL_NAMES`.
        cfg: the experiment config.

    Returns:
        The model (on the CPU).

    Raises:
        ValueError: for an unknown model name.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose from {MODEL_NAMES}")
    d = cfg.latent_dim
    encoders, decoders = _networks(cfg)
    hmc = dict(cfg.hmc) or None
    if name in ("JNF", "JNF-DCCA", "JMVAE", "TELBO"):
        joint = JointMLPEncoder(
            {m: SHAPE for m in MODALITIES}, d, hidden=cfg.joint_hidden,
            joint_hidden=(cfg.joint_hidden,),
        )  # fmt: skip
        if name == "JMVAE":
            return JMVAE(
                joint, encoders, decoders, d, alpha=cfg.jmvae_alpha, warmup=cfg.jmvae_warmup,
                hmc_kwargs=hmc,
            )  # fmt: skip
        if name == "TELBO":  # partial subsets: PoE of the unimodal experts with the prior
            return TELBO(joint, encoders, decoders, d)

        def flow(encoder: nn.Module) -> FlowPosterior:
            return FlowPosterior(encoder, d, transforms=cfg.flow_transforms, hidden=cfg.flow_hidden)

        if name == "JNF":
            return JNF(
                joint, {m: flow(e) for m, e in encoders.items()}, decoders, d, hmc_kwargs=hmc
            )
        projectors = {m: _projector(cfg) for m in MODALITIES}
        posteriors = {
            m: flow(
                ProjectedEncoder(
                    projectors[m], MLPEncoder((cfg.dcca_dim,), cfg.dcca_encoder_hidden, d)
                )
            )
            for m in MODALITIES
        }
        return JNF(
            joint, posteriors, decoders, d, projectors=projectors, dcca_top_k=cfg.dcca_top_k,
            hmc_kwargs=hmc,
        )  # fmt: skip
    if name == "MoPoE":  # the official estimator: one subset per sample (31 subsets here), the
        # KL averaged over all subsets, N(0, I) in the full-set product; equal rows per subset
        return MoPoE(
            encoders, decoders, d, beta=cfg.mopoe_beta, stratified="chunks",
            poe_prior_expert="full",
        )  # fmt: skip
    if name == "MVTCAE":
        return MVTCAE(encoders, decoders, d, alpha=cfg.mvtcae_alpha, beta=cfg.mvtcae_beta)
    if name in ("CRMVAE", "CRMVAE-half"):
        recon = "half" if name == "CRMVAE-half" else "docstring"
        return CRMVAE(encoders, decoders, d, beta=cfg.crmvae_beta, recon_weight=recon)
    if name == "MMVAE":
        return MMVAE(
            encoders, decoders, d, K=cfg.mmvae_K, estimator=cfg.mmvae_estimator,
            stratified=cfg.mmvae_stratified, chunk_remainder="random",
        )  # fmt: skip
    return MVAE(encoders, decoders, d)


def stage_configs(
    name: str, model: MultimodalVAE, cfg: CoherenceFIDConfig
) -> dict[str, TrainConfig]:
    """The training config of every stage of ``model``.

    Args:
        name: the model's name in :data:`MODEL_NAMES`.
        model: the model.
        cfg: the experiment config.

    Returns:
        ``{stage: TrainConfig}`` for every stage of the model.
    """
    if name in ("JNF", "TELBO"):  # both: the joint VAE, then the unimodal posteriors
        return {"joint": cfg.jnf_joint_train, "unimodal": cfg.jnf_unimodal_train}
    if name == "JNF-DCCA":
        return {
            "projectors": cfg.dcca_train,
            "joint": cfg.dcca_joint_train,
            "unimodal": cfg.dcca_unimodal_train,
        }
    return {stage: cfg.train for stage in model.stages}


def _data(cfg: CoherenceFIDConfig) -> tuple[MultimodalImages, MultimodalImages, MultimodalImages]:
    """Train, validation and test tuples: one draw (seed :data:`DATA_SEED`) for every unit.

    The validation split has exactly ``n_val`` tuples and the training split ``n_train``; a
    real dataset holding fewer (a small build) gives all it has, 10 % of it for validation,
    with a warning, and the sidecar records the counts.
    """
    c = cfg.data
    g = torch.Generator().manual_seed(DATA_SEED)
    pool = polymnist(
        "train", n=c.n_train + c.n_val, generator=g, translated=c.translated, allow_fewer=True
    )
    order = torch.randperm(len(pool), generator=g)
    n_val = c.n_val if len(pool) >= c.n_train + c.n_val else max(len(pool) // 10, 1)
    n_train = min(c.n_train, len(pool) - n_val)
    train, val = pool.subset(order[:n_train]), pool.subset(order[n_train : n_train + n_val])
    test = polymnist("test", n=c.n_test, generator=g, translated=c.translated, allow_fewer=True)
    return train, val, test


def _dataset_name(data: MultimodalImages) -> str:
    """The data's name for labels: ``PolyMNIST``, or ``PolyMNIST stand-in``."""
    kind = "translated PolyMNIST" if "ranslated" in data.source else "PolyMNIST"
    return f"{kind} stand-in" if data.source.startswith("embedded stand-in") else kind


def _classifier_data(cfg: CoherenceFIDConfig) -> MultimodalImages:
    n = min(cfg.classifier_n_train, SMOKE_SIZE) if cfg.smoke else cfg.classifier_n_train
    return polymnist(
        "train", n=n, generator=torch.Generator().manual_seed(DATA_SEED + 1),
        translated=cfg.data.translated, allow_fewer=True,
    )  # fmt: skip


def train_classifier(cfg: CoherenceFIDConfig, modality: str) -> dict[str, torch.Tensor]:
    """One unit: the digit classifier of ``modality``, trained on the classifier split.

    Args:
        cfg: the experiment config.
        modality: one of ``m0`` ... ``m4``.

    Returns:
        The classifier's state dict (CPU tensors).
    """
    with default_dtype(torch.float32):
        set_threads(cfg.threads)
        data = _classifier_data(cfg)
        epochs = 1 if cfg.smoke else cfg.classifier_epochs
        k = MODALITIES.index(modality)
        clf = train_classifiers(
            {modality: data.x[modality]}, data.label, epochs=epochs,
            generator=torch.Generator().manual_seed(DATA_SEED + 10 + k),
            data_key=f"{data.source}|{len(data)}|{DATA_SEED + 1}|{modality}",
        )[modality]  # fmt: skip
        return {key: v.detach().cpu() for key, v in clf.state_dict().items()}


def _pretrained(cfg: CoherenceFIDConfig) -> tuple[dict | None, str]:
    """Sutter et al.'s classifiers under the data root (``None`` when absent), and the folder."""
    folder = data_root() / ("TranslatedPolyMNIST" if cfg.data.translated else "PolyMNIST") / "clf"
    return (load_pretrained(folder, MODALITIES) if folder.is_dir() else None), str(folder)


def _classifiers(cfg: CoherenceFIDConfig, executor: str, progress: bool = True) -> tuple[dict, str]:
    """The five digit classifiers: Sutter et al.'s when present, else trained here (units)."""
    pretrained, folder = _pretrained(cfg)
    if pretrained is not None:
        return pretrained, f"pretrained ({folder})"
    units = [Unit(f"classifier {m}", train_classifier, (cfg, m)) for m in MODALITIES]
    states = run_units(
        cfg.name, units, executor, cfg.workers, cfg.device, max(cfg.threads, 1),
        progress=progress,
    )  # fmt: skip
    out = {}
    for m in MODALITIES:
        clf = DigitClassifier(3, SHAPE[1])
        clf.load_state_dict(states[f"classifier {m}"])
        out[m] = clf.eval()
    n = len(_classifier_data(cfg))
    epochs = 1 if cfg.smoke else cfg.classifier_epochs
    return out, f"trained here on {n} training tuples ({epochs} epochs)"


def cached_classifiers(cfg: CoherenceFIDConfig) -> dict[str, DigitClassifier] | None:
    """The run's five digit classifiers without training any: pretrained, or its cached units.

    Args:
        cfg: the experiment config of the run.

    Returns:
        ``{m: classifier}`` in eval mode on the CPU, or ``None`` when a classifier is neither
        pretrained nor in the cache (the run was not done with this cache and code).
    """
    pretrained, _ = _pretrained(cfg)
    if pretrained is not None:
        return pretrained
    out = {}
    for m in MODALITIES:
        found, state = load_cached(cfg.name, Unit(f"classifier {m}", train_classifier, (cfg, m)))
        if not found:
            return None
        with default_dtype(torch.float32):
            clf = DigitClassifier(3, SHAPE[1])
        clf.load_state_dict(state)
        out[m] = clf.eval()
    return out


def sampler_kwargs(cfg: CoherenceFIDConfig, model: MultimodalVAE) -> dict:
    """The posterior sampler's settings the coherence uses for ``model`` (HMC for JNF)."""
    return (SMOKE_HMC if cfg.smoke else dict(cfg.hmc)) if isinstance(model, JNF) else {}


#: Relative run time of a model's unit (scheduling only: the pool starts the longest first).
#: MMVAE decodes every modality from every component; MVAE decodes 7 subset ELBOs; JNF and
#: JNF-DCCA train 2 and 3 stages and sample subset posteriors with HMC.
UNIT_COST = {
    "MMVAE": 5.0,
    "JNF-DCCA": 3.0,
    "JNF": 2.5,
    "MVAE": 2.5,
    "TELBO": 2.0,
    "JMVAE": 1.5,
    "CRMVAE": 1.5,
    "CRMVAE-half": 1.5,
}


def units(cfg: CoherenceFIDConfig) -> list[Unit]:
    """The figure's independent units: one per model and seed (:func:`train_unit`)."""
    seeds = cfg.seeds[:1] if cfg.smoke else cfg.seeds
    return [
        Unit(f"{name} seed {seed}", train_unit, (cfg, name, seed), UNIT_COST.get(name, 1.0))
        for name in cfg.models
        for seed in seeds
    ]


@torch.no_grad()
def _fd_one_input(model: MultimodalVAE, test: MultimodalImages, metric, n: int, seed: int) -> float:
    """FD of ``m0`` generated from each single other modality, averaged."""
    x = {m: v[:n] for m, v in test.x.items()}
    real = metric.statistics(x[FD_TARGET])  # once for the four sources
    values = []
    for j, source in enumerate(m for m in MODALITIES if m != FD_TARGET):
        g = torch.Generator().manual_seed(seed * 100 + j)
        generated = model.generate({source: x[source]}, [source], n=1, generator=g)[FD_TARGET][0]
        values.append(metric.distance(real, generated.clamp(0, 1)))
    return sum(values) / len(values)


@torch.no_grad()
def _fd_prior(model: MultimodalVAE, test: MultimodalImages, metric, n: int, seed: int) -> float:
    """FD of ``m0`` generated from the prior (unconditional generation)."""
    real = metric.statistics(test.x[FD_TARGET][:n])
    generated = model.sample_prior(n, generator=torch.Generator().manual_seed(seed * 100 + 50))
    return metric.distance(real, generated[FD_TARGET].clamp(0, 1))


def train_unit(cfg: CoherenceFIDConfig, name: str, seed: int) -> dict:
    """One unit: train ``name`` with ``seed`` on the figure's data, then evaluate it.

    Everything the unit uses is rebuilt from ``cfg`` (the data from the cached draw, the
    classifiers from their cached units) and every generator is seeded here, so the numbers do
    not depend on the process that runs it or on what ran before.

    Args:
        cfg: the experiment config.
        name: one of :data:`MODEL_NAMES`.
        seed: the model seed (initialisation, shuffling, sampling).

    Returns:
        ``{"by_size", "per_subset", "joint", "fd", "train_samples_per_second", "histories"}``.
    """
    with default_dtype(torch.float32):
        set_threads(cfg.threads)
        device = resolve_device(cfg.device)
        seed_everything(DATA_SEED)
        train, val, test = _data(cfg)
        classifiers, _ = _classifiers(cfg, "sequential", progress=False)  # cached units
        classifiers = {m: c.to(device) for m, c in classifiers.items()}
        metric = fd_metric(classifiers, FD_TARGET, dataset=_dataset_name(train))
        test_dev = test.to(device)
        generator = seed_everything(seed)
        model = build_model(name, cfg).to(device)
        stages = stage_configs(name, model, cfg)
        hist = fit_stages(
            model, train.x, stages, val.x, generator,
            checkpoints={s: checkpoint_path(cfg, f"{name}_seed{seed}_{s}") for s in stages},
            descs={s: f"{name} seed {seed}: {s}" for s in stages},
        )  # fmt: skip
        model.eval()
        saved = _save_model(model, cfg, name, seed)
        n_joint = min(cfg.n_joint, SMOKE_SIZE) if cfg.smoke else cfg.n_joint
        sampler = sampler_kwargs(cfg, model)
        coh = conditional_coherence(
            model, test_dev.x, test_dev.label, classifiers,
            torch.Generator().manual_seed(seed + 1), **sampler,
        )  # fmt: skip
        joint = joint_coherence(
            model, classifiers, n_joint, torch.Generator().manual_seed(seed + 2)
        )
        n_fid = min(cfg.n_fid, len(test))
        fd = _fd_one_input(model, test_dev, metric, n_fid, seed)
        fd_prior = _fd_prior(model, test_dev, metric, n_fid, seed)
        return {
            "by_size": {int(k): float(v) for k, v in coh.by_size.items()},
            "per_subset": {f"{'+'.join(s)}->{m}": float(v) for (s, m), v in coh.per_subset.items()},
            "joint": float(joint),
            "fd": float(fd),
            "fd_unconditional": float(fd_prior),
            "train_samples_per_second": {s: h.samples_per_second for s, h in hist.items()},
            "histories": hist,
            "model_path": saved,
        }


def model_path(cfg: CoherenceFIDConfig, name: str, seed: int):
    """Where :func:`train_unit` keeps the trained model's weights (keyed by the run identity)."""
    return checkpoint_path(cfg, f"{name}_seed{seed}_trained")


def _save_model(model: MultimodalVAE, cfg: CoherenceFIDConfig, name: str, seed: int) -> str | None:
    path = model_path(cfg, name, seed)
    try:
        atomic_torch_save(
            {k: v.detach().cpu() for k, v in model.state_dict().items()}, path,
            what=f"{name} seed {seed}: trained weights",
        )  # fmt: skip
    except OSError:  # an unwritable cache: the figure still gets its numbers
        return None
    return str(path)


def load_trained(cfg: CoherenceFIDConfig, name: str, seed: int) -> MultimodalVAE:
    """The model :func:`train_unit` trained for ``(name, seed)``, in eval mode on the CPU.

    Args:
        cfg: the experiment config of the run.
        name: the model's name.
        seed: its seed.

    Returns:
        The model with its trained weights.

    Raises:
        FileNotFoundError: when the run has not been done (or its cache was removed); the
            message says to run the figure first.
    """
    path = model_path(cfg, name, seed)
    if not path.is_file():
        raise FileNotFoundError(
            f"no trained weights of {name} seed {seed} for this config at {path}: run the "
            f"figure first ({cfg.name}, profile {cfg.profile!r}) with the same cache"
        )
    with default_dtype(torch.float32):
        model = build_model(name, cfg)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def run(cfg: CoherenceFIDConfig) -> CoherenceFIDResult:
    """Train every model for every seed, evaluate coherence and FID, collect the figure's data.

    The classifiers and then the (model, seed) units run through :func:`repro.jobs.run_units`
    (on a CPU: a local process pool sized to the cores, ``cfg.executor``); each unit's result is
    cached, so a killed run resumes after its finished units.

    Args:
        cfg: the experiment config (``repro.papers.jnf.settings.get("coherence_fid", ...)``).

    Returns:
        A :class:`CoherenceFIDResult`.
    """
    return run_benchmark(cfg, check_predictions)


def run_benchmark(
    cfg: CoherenceFIDConfig,
    predictions: Callable[[Mapping[str, Mapping[str, float]], str, int], dict[str, str]],
) -> CoherenceFIDResult:
    """The image benchmark behind this figure, for any figure that compares models on it.

    Classifiers, then every (model, seed) unit of ``cfg.models`` (:func:`units`), collected
    into a :class:`CoherenceFIDResult` whose ``details["paper_predictions"]`` are
    ``predictions(metrics, fd_key, n_test)``; the ``coord`` figures use it on translated
    PolyMNIST with their own models and claims.

    Args:
        cfg: the config (its ``name`` and ``profile`` decide the cache and the figure folder).
        predictions: the figure's claims.

    Returns:
        The result.
    """
    with default_dtype(torch.float32):
        return _run(cfg, predictions)


def _run(cfg: CoherenceFIDConfig, predictions: Callable) -> CoherenceFIDResult:
    tic = time.perf_counter()
    check_writable(cfg)  # before any training: a read-only figures/ folder fails now
    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    seed_everything(DATA_SEED)
    train, val, test = _data(cfg)
    classifiers, clf_source = _classifiers(cfg, cfg.executor)
    classifiers = {m: c.to(device) for m, c in classifiers.items()}
    clf_accuracy = accuracy(classifiers, {m: v.to(device) for m, v in test.x.items()}, test.label)
    metric = fd_metric(classifiers, FD_TARGET, dataset=_dataset_name(train))
    todo = units(cfg)
    done = run_units(cfg.name, todo, cfg.executor, cfg.workers, cfg.device, max(cfg.threads, 1))
    per_seed: dict[str, dict[int, dict]] = {}
    histories: dict[str, History] = {}
    for unit in todo:
        _, name, seed = unit.args
        out = dict(done[unit.name])
        hist = out.pop("histories")
        out.pop("model_path", None)  # a path of this machine: not for the sidecar
        histories.update({f"{name}/{seed}/{s}": h for s, h in hist.items()})
        per_seed.setdefault(name, {})[seed] = out
    metrics = {name: _mean_over_seeds(per_seed[name], metric.key) for name in cfg.models}
    details = {
        "per_seed": per_seed,
        "classifier_accuracy": clf_accuracy,
        "classifiers": clf_source,
        "data_source": train.source,
        "test_source": test.source,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        "fd_label": metric.label,
        "paper_predictions": predictions(metrics, metric.key, len(test)),
    }
    return CoherenceFIDResult(
        cfg=cfg,
        metrics=metrics,
        details=details,
        per_seed=per_seed,
        fd_label=metric.label,
        fd_key=metric.key,
        source=train.source,
        histories=histories,
        seconds=time.perf_counter() - tic,
    )


def _mean_over_seeds(runs: Mapping[int, dict], fd_key: str) -> dict[str, float]:
    sizes = sorted({k for r in runs.values() for k in r["by_size"]})
    out = {
        f"coherence_{k}_inputs": sum(r["by_size"][k] for r in runs.values()) / len(runs)
        for k in sizes
    }
    out["joint_coherence"] = sum(r["joint"] for r in runs.values()) / len(runs)
    out[fd_key] = sum(r["fd"] for r in runs.values()) / len(runs)
    out[f"{fd_key}_unconditional"] = sum(r["fd_unconditional"] for r in runs.values()) / len(runs)
    return out


FLAT = 0.05  # "flat": coherence varies by less than this over the number of inputs

#: The MultiVae benchmark on complete PolyMNIST (jnf.md §5: latent 512, ConvMMNIST networks,
#: 800 epochs, 4 seeds): coherence from 1 / 2 / 3 / 4 inputs; a sanity band, not Fig. 4.
MULTIVAE_BENCHMARK = {
    "JNF-DCCA": (0.755, 0.890, 0.935, 0.946),
    "JNF": (0.675, 0.848, 0.903, 0.917),
    "JMVAE": (0.631, 0.715, 0.793, 0.828),
    "MVTCAE": (0.535, 0.715, 0.793, 0.829),
    "MMVAE": (0.804, 0.804, 0.804, 0.804),
    "MoPoE": (0.614, 0.748, 0.803, 0.830),
}


CHANCE = 0.1  # ten digit classes


def at_chance(metrics: Mapping[str, Mapping[str, float]], n_test: int) -> bool:
    """Whether every model's one-input coherence is within 2 standard errors of chance (0.1)."""
    return all(within_noise(v["coherence_1_inputs"], CHANCE, n_test) for v in metrics.values())


def check_predictions(
    metrics: Mapping[str, Mapping[str, float]], fd_key: str, n_test: int
) -> dict[str, str]:
    """The MultiVae benchmark's ordering (jnf.md §5), checked in our numbers.

    ``JNF-DCCA > JNF > JMVAE ~ MoPoE > MVTCAE`` at one input, MMVAE flat over the number of
    inputs (range below :data:`FLAT`), and MMVAE with the worst FD. A strict comparison whose
    difference is within 2 standard errors of a share of ``n_test`` test tuples is a tie; when
    every model is at chance level nothing is testable. Comparisons whose models were not run
    are left out.

    Args:
        metrics: ``CoherenceFIDResult.metrics``.
        fd_key: the FD's key in ``metrics``.
        n_test: test tuples behind each coherence.

    Returns:
        ``{claim: verdict}`` in the words of :mod:`repro.verdicts`.
    """
    one = {m: v["coherence_1_inputs"] for m, v in metrics.items() if "coherence_1_inputs" in v}
    testable = not at_chance(metrics, n_test)
    out: dict[str, str] = {}
    for a, b in (("JNF-DCCA", "JNF"), ("JNF", "JMVAE"), ("MoPoE", "MVTCAE")):
        if a in one and b in one:
            out[f"{a} > {b} at one input"] = verdicts.compare(
                one[a] > one[b], within_noise(one[a], one[b], n_test), testable
            )
    if "JMVAE" in one and "MoPoE" in one:
        out["JMVAE ~ MoPoE at one input"] = verdicts.compare(
            within_noise(one["JMVAE"], one["MoPoE"], n_test), testable=testable
        )
    if "MMVAE" in metrics:
        by_size = [v for k, v in metrics["MMVAE"].items() if k.startswith("coherence_")]
        out["MMVAE flat over the number of inputs"] = verdicts.compare(
            max(by_size) - min(by_size) < FLAT, testable=testable
        )
        fds = {m: v[fd_key] for m, v in metrics.items()}
        out["MMVAE has the worst FD"] = verdicts.compare(
            max(fds, key=fds.get) == "MMVAE", testable=testable
        )
    return out


def short_source(source: str) -> str:
    """The data source in a few words (the sidecar keeps the whole description)."""
    return source.split(":")[0] if source.startswith("embedded stand-in") else source


def summary(result: CoherenceFIDResult) -> str:
    """The notebook's printed summary: rounded coherences and FD, and the benchmark's ordering.

    Args:
        result: the experiment result.

    Returns:
        A small text table (2 decimals for coherences, 1 for the FD).
    """
    sizes = sorted(
        int(k.split("_")[1]) for k in next(iter(result.metrics.values())) if k.endswith("_inputs")
    )
    head = f"{'model':9s}" + "".join(f"{f'coh {k}in':>9s}" for k in sizes)
    d = result.details
    lines = [
        f"data: {short_source(result.source)}; {d['n_train']} / {d['n_val']} / {d['n_test']} "
        "train / validation / test tuples",
        f"FD: {result.fd_label}",
        head + f"{'joint':>8s}{'FD':>9s}",
    ]
    for name, m in result.metrics.items():
        cells = "".join(f"{m[f'coherence_{k}_inputs']:9.2f}" for k in sizes)
        lines.append(f"{name:9s}{cells}{m['joint_coherence']:8.2f}{m[result.fd_key]:9.1f}")
    if at_chance(result.metrics, result.details["n_test"]):
        lines.append(
            "every model's coherence is at chance level (0.1): no model has learned the digit, "
            "so the ordering is not testable at this scale"
        )
    lines.append("MultiVae benchmark's ordering (jnf.md §5):")
    for claim, verdict in result.details["paper_predictions"].items():
        lines.append(f"  {claim}: {verdict}")
    return "\n".join(lines)
