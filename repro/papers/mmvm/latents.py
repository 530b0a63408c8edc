"""Fig. 4, ``mmvm_latents``: 2-D latents of five rats coloured by odor, per method.

Reproduces the setting of Fig. 4 of Sutter et al. (NeurIPS 2024, arXiv 2403.05300) on the
hippocampal recordings of five rats (the Dryad files under the data root when present, else the
calibrated simulator of :mod:`repro.data.neural`): independent VAEs, AVG, MoPoE and the MMVM VAE
are trained on the same samples with the same per-rat networks; the posterior means of each rat's
held-out sub-windows are scattered directly (no projection) and probed with logistic regression,
per rat and on all rats stacked (the across-rat separation the paper is about).

The run is a set of independent units (:mod:`repro.jobs`; on a CPU a local process pool,
``cfg.executor``): the coherence classifiers, then one unit per method that rebuilds the data
from ``cfg.seed``, trains and evaluates its model. Every method starts from the same random
state (the one after the data split), so its numbers do not depend on which methods run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from repro import verdicts
from repro.config import SMOKE_SIZE
from repro.data.neural import RATS, RatWindows, rats, trial_split
from repro.jobs import Unit, run_units
from repro.metrics.coherence import within_noise
from repro.metrics.latent import (
    MLPClassifier,
    cross_coherence,
    latent_means,
    linear_probe,
    train_mlp_classifiers,
)
from repro.models import AVG, MMVMVAE, MoPoE, MultimodalVAE
from repro.models.mmvm import independent_vaes
from repro.papers.mmvm.networks import LOGVAR_BOUNDS, SpikeDecoder, SpikeEncoder
from repro.papers.mmvm.settings import LatentsConfig, TradeoffConfig
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
    "METHODS",
    "LatentsResult",
    "build_model",
    "split_data",
    "coherence_classifiers",
    "train_classifiers",
    "units",
    "train_method",
    "run",
    "check_predictions",
    "summary",
]

METHODS = ("independent", "AVG", "MoPoE", "MMVM")


@dataclass
class LatentsResult:
    """Everything the figure and the summary need.

    Attributes:
        cfg: the config that produced it.
        metrics: per method: ``within_rat_accuracy`` (mean over rats of the per-rat probes),
            ``across_rat_accuracy`` (one probe on all rats' means), both held out, their
            ``_in_sample`` versions, and ``coherence`` (cross-rat generation, held out).
        details: per-rat accuracies, coherence pairs, data source and statistics.
        means: per method, per rat, ``(N_test, 2)`` posterior means of held-out sub-windows.
        label: ``(N_test,)`` odors of the held-out sub-windows.
        source: which data was used.
        histories: per method, the training history.
        seconds: wall time of this call.
    """

    cfg: LatentsConfig
    metrics: dict[str, dict[str, float]]
    details: dict[str, object]
    means: dict[str, dict[str, Tensor]]
    label: Tensor
    source: str
    histories: dict[str, History] = field(default_factory=dict)
    seconds: float = 0.0


def build_model(
    method: str, cfg: LatentsConfig, dims: dict[str, int], beta: float | None = None
) -> MultimodalVAE:
    """One method of the figure with the code's rat networks (fresh weights).

    Args:
        method: one of :data:`METHODS`.
        cfg: the experiment config (``latent_dim``, ``hidden``, ``likelihood``, ``beta``).
        dims: ``{rat: D_m}``.
        beta: KL weight overriding ``cfg.beta`` (the beta grid of Fig. 3).

    Returns:
        The model.

    Raises:
        ValueError: for an unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    d, beta = cfg.latent_dim, cfg.beta if beta is None else beta
    bounds = LOGVAR_BOUNDS if cfg.likelihood == "poisson" else None  # see LOGVAR_BOUNDS
    encoders = {r: SpikeEncoder(dims[r], cfg.hidden or dims[r], d, bounds) for r in RATS}
    decoders = {r: SpikeDecoder(d, cfg.hidden or dims[r], dims[r], cfg.likelihood) for r in RATS}
    if method == "independent":
        return independent_vaes(encoders, decoders, d, beta=beta)
    if method == "MMVM":
        return MMVMVAE(encoders, decoders, d, beta=beta)
    if method == "AVG":
        return AVG(encoders, decoders, d, beta=beta)
    return MoPoE(
        encoders, decoders, d, beta=beta, stratified="chunks", chunk_kl="chosen",
        chunk_remainder="last",
    )  # fmt: skip  # mmvmvae's sampler and KL (its own chunk's KL per row, leftovers to the last)


def split_data(
    cfg: LatentsConfig, generator: torch.Generator
) -> tuple[RatWindows, RatWindows, RatWindows]:
    """The rat data (real or simulated) and its trial-level train/test split.

    Args:
        cfg: an ``mmvm`` config (``data`` and ``smoke`` are read).
        generator: source of the simulation, the split and the smoke subsample.

    Returns:
        ``(data, train, test)``; in smoke mode, ``SMOKE_SIZE`` random rows of each split.
    """
    data = rats(generator, n_trials_per_odor=cfg.data.n_trials_per_odor)
    train, test = trial_split(data, cfg.data.test_fraction, generator)
    if cfg.smoke:  # random rows: the samples are ordered by odor
        train = train.subset(torch.randperm(len(train), generator=generator)[:SMOKE_SIZE])
        test = test.subset(torch.randperm(len(test), generator=generator)[:SMOKE_SIZE])
    return data, train, test


def coherence_classifiers(
    cfg: LatentsConfig | TradeoffConfig, train: RatWindows
) -> dict[str, MLPClassifier]:
    """The per-rat odor classifiers of the coherence, trained or read from their cache.

    Seeded by ``cfg.seed`` alone (:func:`repro.metrics.latent.train_mlp_classifiers` forks
    the global RNG), so every unit that asks for them gets the same weights; the classifier
    unit trains them once, and the method units, which call this after their training, read
    them from the cache.

    Args:
        cfg: an ``mmvm`` config (``seed``, ``smoke``, ``mlp_epochs``, ``mlp_hidden``).
        train: the training split.

    Returns:
        ``{rat: classifier}`` in eval mode, on the CPU.
    """
    return train_mlp_classifiers(
        train.x, train.label, epochs=1 if cfg.smoke else cfg.mlp_epochs, hidden=cfg.mlp_hidden,
        generator=torch.Generator().manual_seed(cfg.seed),
    )  # fmt: skip


def train_classifiers(cfg: LatentsConfig | TradeoffConfig) -> dict[str, float]:
    """Unit: train the coherence classifiers (kept by their cache) before the method units.

    Args:
        cfg: an ``mmvm`` config (this figure's or ``mmvm_beta_tradeoff``'s).

    Returns:
        ``{rat: held-out accuracy}`` of each rat's classifier on its own test sub-windows.
    """
    with default_dtype(torch.float32):
        set_threads(cfg.threads)
        _, train, test = split_data(cfg, seed_everything(cfg.seed))
        classifiers = coherence_classifiers(cfg, train)
        with torch.no_grad():
            return {
                r: float((c(test.x[r]).argmax(-1) == test.label).double().mean())
                for r, c in classifiers.items()
            }


CLASSIFIER_UNIT = "coherence classifiers"

#: Relative run time of a method's unit (scheduling only: the pool starts the longest first):
#: CPU seconds per training epoch of the quick profile, relative to AVG's.
UNIT_COST = {"independent": 1.3, "AVG": 1.0, "MoPoE": 1.1, "MMVM": 1.3}


def units(cfg: LatentsConfig) -> list[Unit]:
    """The figure's method units (:func:`train_method`), after :data:`CLASSIFIER_UNIT`."""
    return [
        Unit(method, train_method, (cfg, method), UNIT_COST.get(method, 1.0))
        for method in cfg.methods
    ]


def train_method(cfg: LatentsConfig, method: str) -> dict[str, object]:
    """Unit: train ``method`` on the figure's data, then probe it and measure its coherence.

    The data, the model and every generator are rebuilt here from ``cfg`` (the data split
    from ``seed_everything(cfg.seed)``, then the model's initialisation and shuffling continue
    that stream), so the numbers do not depend on the process or on the other units.

    Args:
        cfg: the experiment config.
        method: one of :data:`METHODS`.

    Returns:
        ``{"metrics", "details", "means", "history"}`` of the method (as in
        :class:`LatentsResult`; means on the CPU).
    """
    with default_dtype(torch.float32):
        set_threads(cfg.threads)
        device = resolve_device(cfg.device)
        generator = seed_everything(cfg.seed)
        _, train, test = split_data(cfg, generator)
        dims = {r: train.x[r].shape[1] for r in RATS}
        model = build_model(method, cfg, dims).to(device)
        hist = fit_stages(
            model, train.x, {s: cfg.train for s in model.stages}, None, generator,
            checkpoints={s: checkpoint_path(cfg, f"{method}_{s}") for s in model.stages},
            descs={s: f"{method}: {s}" for s in model.stages},
        )  # fmt: skip
        model.eval()
        # The classifiers are read only after the training: CPU BLAS results have depended on
        # the process's allocation history, and these small 2-D models amplify last-bit
        # differences (README); the classifier unit has already trained them.
        classifiers = {r: c.to(device) for r, c in coherence_classifiers(cfg, train).items()}
        x_train = {r: v.to(device) for r, v in train.x.items()}
        x_test = {r: v.to(device) for r, v in test.x.items()}
        z_train, z_test = latent_means(model, x_train), latent_means(model, x_test)
        held_out = linear_probe(z_train, train.label, z_test, test.label)
        in_sample = linear_probe(z_train, train.label, z_train, train.label)
        coh = cross_coherence(
            model, x_test, test.label.to(device), classifiers, torch.Generator().manual_seed(1)
        )
        history = next(iter(hist.values()))
        metrics = {
            "within_rat_accuracy": sum(held_out[r] for r in RATS) / len(RATS),
            "across_rat_accuracy": held_out["all"],
            "within_rat_accuracy_in_sample": sum(in_sample[r] for r in RATS) / len(RATS),
            "across_rat_accuracy_in_sample": in_sample["all"],
            "coherence": coh["mean"],
        }
        details = {
            "probe_held_out": held_out,
            "probe_in_sample": in_sample,
            "coherence_pairs": coh["pairs"],
            "train_samples_per_second": history.samples_per_second,
        }
        means = {r: v.cpu() for r, v in z_test.items()}
        return {"metrics": metrics, "details": details, "means": means, "history": history}


def run(cfg: LatentsConfig) -> LatentsResult:
    """Train every method, probe and scatter the held-out latents.

    The classifier unit and then the method units run through :func:`repro.jobs.run_units`
    (``cfg.executor``: on a CPU a local process pool); each unit's result is cached, so a
    killed run resumes after its finished units.

    Args:
        cfg: the experiment config (``repro.papers.mmvm.settings.get("latents", ...)``).

    Returns:
        A :class:`LatentsResult`.
    """
    with default_dtype(torch.float32):
        return _run(cfg)


def _run(cfg: LatentsConfig) -> LatentsResult:
    tic = time.perf_counter()
    check_writable(cfg)  # before any training: a read-only figures/ folder fails now
    set_threads(cfg.threads)
    data, train, test = split_data(cfg, seed_everything(cfg.seed))
    n_trials = int(torch.unique(test.trial).numel())  # independent units behind a held-out share
    jobs = {"executor": cfg.executor, "workers": cfg.workers, "device": cfg.device,
            "threads": max(cfg.threads, 1)}  # fmt: skip
    clf = run_units(cfg.name, [Unit(CLASSIFIER_UNIT, train_classifiers, (cfg,))], **jobs)
    done = run_units(cfg.name, units(cfg), **jobs)
    metrics = {method: done[method]["metrics"] for method in cfg.methods}
    details: dict[str, object] = {method: done[method]["details"] for method in cfg.methods}
    details["data_source"] = data.source
    details["n_train_samples"], details["n_test_samples"] = len(train), len(test)
    details["n_test_trials"] = n_trials
    details["classifier_test_accuracy"] = clf[CLASSIFIER_UNIT]
    details["paper_predictions"] = check_predictions(metrics, n_trials)
    return LatentsResult(
        cfg=cfg,
        metrics=metrics,
        details=details,
        means={method: done[method]["means"] for method in cfg.methods},
        label=test.label,
        source=data.source,
        histories={method: done[method]["history"] for method in cfg.methods},
        seconds=time.perf_counter() - tic,
    )


CLAIMS = (
    ("MMVM", "independent"),
    ("MoPoE", "independent"),
    ("MMVM", "AVG"),
    ("MoPoE", "AVG"),
)  # the paper: MMVM and MoPoE separate the odors across rats, independent and AVG only within


def check_predictions(metrics: dict[str, dict[str, float]], n_trials: int) -> dict[str, str]:
    """Whether the across-rat separation of MMVM and MoPoE beats independent VAEs and AVG.

    Each claim compares held-out across-rat accuracies (one logistic regression on all rats'
    posterior means); a difference within 2 standard errors of shares of ``n_trials``
    held-out trials (the independent units: a trial's 16 sub-windows are strongly correlated)
    is a tie.

    Args:
        metrics: ``LatentsResult.metrics``.
        n_trials: held-out trial tuples.

    Returns:
        ``{claim: verdict}`` (:mod:`repro.verdicts`) for the methods that were run.
    """
    out = {}
    for a, b in CLAIMS:
        if a in metrics and b in metrics:
            pa, pb = metrics[a]["across_rat_accuracy"], metrics[b]["across_rat_accuracy"]
            out[f"{a} > {b} in across-rat accuracy"] = verdicts.compare(
                pa > pb, within_noise(pa, pb, n_trials)
            )
    return out


def summary(result: LatentsResult) -> str:
    """The notebook's printed summary: rounded accuracies (held out and in sample), verdicts.

    Args:
        result: the experiment result.

    Returns:
        A small text table (2 decimals).
    """
    short = result.source.split(":")[0]
    keys = (
        ("within_rat_accuracy", "within"),
        ("across_rat_accuracy", "across"),
        ("within_rat_accuracy_in_sample", "within(in)"),
        ("across_rat_accuracy_in_sample", "across(in)"),
        ("coherence", "coherence"),
    )
    lines = [
        f"data: {short}; held out: {result.details['n_test_trials']} trial tuples "
        f"({result.details['n_test_samples']} sub-windows); chance 0.25",
        f"{'method':12s}" + "".join(f"{label:>12s}" for _, label in keys),
    ]
    for method, m in result.metrics.items():
        lines.append(f"{method:12s}" + "".join(f"{m[k]:12.2f}" for k, _ in keys))
    lines.append("paper's claim (MMVM and MoPoE separate odors across rats):")
    for claim, verdict in result.details["paper_predictions"].items():
        lines.append(f"  {claim}: {verdict}")
    return "\n".join(lines)
