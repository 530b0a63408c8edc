"""Fig. 3, ``mmvm_beta_tradeoff``: latent accuracy and coherence against reconstruction over beta.

The rat version of the trade-off plots of Sutter et al. (NeurIPS 2024, arXiv 2403.05300, Fig. 3
and its benchmark counterpart Fig. 2; the rat layout is inferred, mmvm.md §5): independent VAEs,
AVG, MoPoE and the MMVM VAE are trained with the per-rat networks of Fig. 4 for every ``beta`` of
a grid and several model seeds, on the same data and trial-level split. Each (method, beta)
gives one point: x = held-out reconstruction error, y = held-out latent probe accuracy (mean of
the per-rat logistic regressions on unimodal posterior means) or cross-rat coherence, each the
mean over seeds with their standard deviation.

The run is a set of independent units (:mod:`repro.jobs`; on a CPU a local process pool,
``cfg.executor``): the coherence classifiers, then one unit per (method, beta, seed), which
rebuilds the data from ``cfg.seed``, seeds its model with its own seed, trains and evaluates it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch

from repro import verdicts
from repro.data.neural import RATS
from repro.jobs import Unit, run_units
from repro.metrics.coherence import within_noise
from repro.metrics.latent import (
    cross_coherence,
    latent_means,
    linear_probe,
    self_reconstruction_error,
)
from repro.papers.mmvm.latents import (
    CLASSIFIER_UNIT,
    build_model,
    coherence_classifiers,
    split_data,
    train_classifiers,
)
from repro.papers.mmvm.settings import TradeoffConfig
from repro.record import check_writable
from repro.runtime import (
    checkpoint_path,
    default_dtype,
    resolve_device,
    seed_everything,
    set_threads,
)
from repro.train import fit_stages

__all__ = [
    "METRICS",
    "TradeoffResult",
    "explore_index",
    "units",
    "train_point",
    "run",
    "aggregate",
    "check_predictions",
    "summary",
]

METRICS = (
    "reconstruction_error",  # held out: summed squared error per sample, summed over rats
    "within_rat_accuracy",  # held out: mean over rats of the per-rat probes
    "across_rat_accuracy",  # held out: one probe on all rats' means stacked
    "coherence",  # held out: cross-rat generation, all 25 pairs
    "reconstruction_error_in_sample",
    "within_rat_accuracy_in_sample",
    "across_rat_accuracy_in_sample",
)


@dataclass
class TradeoffResult:
    """Everything the figure and the summary need.

    Attributes:
        cfg: the config that produced it.
        runs: one record per (method, beta, seed): those keys plus every metric of
            :data:`METRICS` and the training throughput.
        metrics: per method, per beta (as ``f"{beta:g}"``), per metric: ``mean`` and ``std``
            over seeds (``std`` 0 with one seed).
        details: data source and sizes, seeds, the per-seed ``runs`` again (for the sidecar),
            the verdicts of :func:`check_predictions`.
        source: which data was used.
        seconds: wall time of this call.
        latents: the explorer's scatter: per method, per beta (``f"{beta:g}"``), per rat,
            ``(n, 2)`` held-out posterior means of the first model seed, on at most
            :data:`EXPLORE_POINTS` sub-windows evenly spaced in the test split (empty for a
            result without them).
        latent_label: ``(n,)`` the odors of those sub-windows (``None`` without them).
    """

    cfg: TradeoffConfig
    runs: list[dict[str, float | str | int]]
    metrics: dict[str, dict[str, dict[str, dict[str, float]]]]
    details: dict[str, object] = field(default_factory=dict)
    source: str = ""
    seconds: float = 0.0
    latents: dict[str, dict[str, dict[str, torch.Tensor]]] = field(default_factory=dict)
    latent_label: torch.Tensor | None = None


EXPLORE_POINTS = 300  # held-out sub-windows kept per (method, beta) for the explorer's scatter


def explore_index(n: int) -> torch.Tensor:
    """The test sub-windows of the explorer's scatter: at most :data:`EXPLORE_POINTS`, spread.

    Args:
        n: held-out sub-windows.

    Returns:
        ``(min(n, EXPLORE_POINTS),)`` increasing indices (the split is ordered by odor).
    """
    return torch.linspace(0, n - 1, min(n, EXPLORE_POINTS)).round().long()


def run(cfg: TradeoffConfig) -> TradeoffResult:
    """Train every method at every beta and seed; measure reconstruction, probes, coherence.

    The classifier unit and then the (method, beta, seed) units run through
    :func:`repro.jobs.run_units` (``cfg.executor``: on a CPU a local process pool); each unit's
    result is cached, so a killed run resumes after its finished units.

    Args:
        cfg: the experiment config (``repro.papers.mmvm.settings.get("tradeoff", ...)``).

    Returns:
        A :class:`TradeoffResult`.

    Raises:
        ValueError: for an empty beta grid, a non-positive beta or ``n_seeds < 1``.
    """
    if not cfg.betas or min(cfg.betas) <= 0 or cfg.n_seeds < 1:
        raise ValueError(
            f"betas must be a non-empty tuple of positive numbers and n_seeds >= 1, got "
            f"betas={cfg.betas}, n_seeds={cfg.n_seeds}"
        )
    with default_dtype(torch.float32):
        return _run(cfg)


#: Relative run time of a unit by method (scheduling only: the pool starts the longest first):
#: CPU seconds per training epoch of the quick profile, relative to AVG's.
UNIT_COST = {"independent": 1.4, "AVG": 1.0, "MoPoE": 1.1, "MMVM": 1.4}


def unit_name(method: str, beta: float, seed: int) -> str:
    """The label of a (method, beta, seed) unit, e.g. ``"MMVM beta 0.001 seed 0"``."""
    return f"{method} beta {beta:g} seed {seed}"


def units(cfg: TradeoffConfig) -> list[Unit]:
    """The figure's units: one per (method, beta, seed) (:func:`train_point`)."""
    seeds = [cfg.seed + i for i in range(cfg.n_seeds)]
    cost = UNIT_COST.get
    return [
        Unit(unit_name(m, beta, seed), train_point, (cfg, m, beta, seed), cost(m, 1.0))
        for m in cfg.methods
        for beta in cfg.betas
        for seed in seeds
    ]


def train_point(cfg: TradeoffConfig, method: str, beta: float, seed: int) -> dict[str, object]:
    """Unit: train ``method`` at ``beta`` with model seed ``seed``, then measure it.

    The data split is rebuilt from ``cfg.seed`` and the model's initialisation and shuffling
    come from ``seed_everything(seed)``, so the numbers do not depend on the process or on the
    other units.

    Args:
        cfg: the experiment config.
        method: one of :data:`repro.papers.mmvm.latents.METHODS`.
        beta: the KL weight.
        seed: the model seed.

    Returns:
        One record of :attr:`TradeoffResult.runs`: the coordinates, every metric of
        :data:`METRICS` and ``train_samples_per_second``; for the first model seed also
        ``"means"``, the explorer's held-out posterior means (taken out of the record by
        :func:`run`).
    """
    with default_dtype(torch.float32):
        set_threads(cfg.threads)
        device = resolve_device(cfg.device)
        _, train, test = split_data(cfg, seed_everything(cfg.seed))
        dims = {r: train.x[r].shape[1] for r in RATS}
        generator = seed_everything(seed)  # the model's initialisation and its shuffling
        model = build_model(method, cfg, dims, beta=beta).to(device)
        name, tag = unit_name(method, beta, seed), f"{method}_b{beta:g}_s{seed}"
        hist = fit_stages(
            model, train.x, {s: cfg.train for s in model.stages}, None, generator,
            checkpoints={s: checkpoint_path(cfg, f"{tag}_{s}") for s in model.stages},
            descs={s: f"{name}: {s}" for s in model.stages},
        )  # fmt: skip
        model.eval()
        # After the training, as in Fig. 4 (latents.py): read from the classifier unit's cache.
        classifiers = {r: c.to(device) for r, c in coherence_classifiers(cfg, train).items()}
        x_train = {r: v.to(device) for r, v in train.x.items()}
        x_test = {r: v.to(device) for r, v in test.x.items()}
        z_train, z_test = latent_means(model, x_train), latent_means(model, x_test)
        held_out = linear_probe(z_train, train.label, z_test, test.label)
        in_sample = linear_probe(z_train, train.label, z_train, train.label)
        coh = cross_coherence(
            model, x_test, test.label.to(device), classifiers, torch.Generator().manual_seed(1)
        )
        record: dict[str, object] = {
            "method": method,
            "beta": beta,
            "seed": seed,
            "reconstruction_error": self_reconstruction_error(model, x_test)["sum"],
            "within_rat_accuracy": sum(held_out[r] for r in RATS) / len(RATS),
            "across_rat_accuracy": held_out["all"],
            "coherence": coh["mean"],
            "reconstruction_error_in_sample": self_reconstruction_error(model, x_train)["sum"],
            "within_rat_accuracy_in_sample": sum(in_sample[r] for r in RATS) / len(RATS),
            "across_rat_accuracy_in_sample": in_sample["all"],
            "train_samples_per_second": next(iter(hist.values())).samples_per_second,
        }
        if seed == cfg.seed:
            idx = explore_index(len(test))
            record["means"] = {r: z_test[r][idx.to(z_test[r].device)].cpu() for r in RATS}
        return record


def _run(cfg: TradeoffConfig) -> TradeoffResult:
    tic = time.perf_counter()
    check_writable(cfg)  # before any training: a read-only figures/ folder fails now
    set_threads(cfg.threads)
    data, train, test = split_data(cfg, seed_everything(cfg.seed))
    jobs = {"executor": cfg.executor, "workers": cfg.workers, "device": cfg.device,
            "threads": max(cfg.threads, 1)}  # fmt: skip
    clf = run_units(cfg.name, [Unit(CLASSIFIER_UNIT, train_classifiers, (cfg,))], **jobs)
    todo = units(cfg)
    done = run_units(cfg.name, todo, **jobs)
    latents: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    for unit in todo:
        if "means" in done[unit.name]:
            _, method, beta, _ = unit.args
            latents.setdefault(method, {})[f"{beta:g}"] = done[unit.name]["means"]
    runs = [{k: v for k, v in done[unit.name].items() if k != "means"} for unit in todo]
    n_trials = int(torch.unique(test.trial).numel())
    metrics = aggregate(runs)
    details: dict[str, object] = {
        "data_source": data.source,
        "n_train_samples": len(train),
        "n_test_samples": len(test),
        "n_test_trials": n_trials,
        "seeds": [cfg.seed + i for i in range(cfg.n_seeds)],
        "classifier_test_accuracy": clf[CLASSIFIER_UNIT],
        "runs": runs,  # per seed, so the sidecar keeps the spread's raw values
    }
    details["paper_predictions"] = check_predictions(metrics, n_trials)
    return TradeoffResult(
        cfg=cfg,
        runs=runs,
        metrics=metrics,
        details=details,
        source=data.source,
        seconds=time.perf_counter() - tic,
        latents=latents,
        latent_label=test.label[explore_index(len(test))] if latents else None,
    )


def aggregate(
    runs: list[dict[str, float | str | int]],
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Mean and standard deviation over seeds of every metric, per method and beta.

    Args:
        runs: :attr:`TradeoffResult.runs`.

    Returns:
        ``{method: {f"{beta:g}": {metric: {"mean", "std", "n"}}}}`` (sample std; 0 for one seed).
    """
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in runs:
        groups.setdefault((str(r["method"]), float(r["beta"])), []).append(r)
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for (method, beta), rows in groups.items():
        cell = {}
        for k in METRICS:
            values = [float(r[k]) for r in rows]
            cell[k] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "n": len(values),
            }
        out.setdefault(method, {})[f"{beta:g}"] = cell
    return out


BASELINES = ("independent", "AVG", "MoPoE")


def check_predictions(
    metrics: dict[str, dict[str, dict[str, dict[str, float]]]], n_trials: int
) -> dict[str, str]:
    """Whether MMVM's latents and coherence beat each baseline at the same beta [inferred claim].

    The paper's trade-off plots place MMVM above the baselines (better representation and
    coherence at a comparable reconstruction error). Per baseline and metric (held-out
    within-rat accuracy, coherence), each beta of the grid is a comparison of seed means; a
    difference within 2 standard errors of shares of ``n_trials`` held-out trials is a tie.

    Args:
        metrics: :attr:`TradeoffResult.metrics`.
        n_trials: held-out trial tuples (the independent units behind a share).

    Returns:
        ``{claim: "holds at i, tie at j, does not hold at k of n betas"}``
        (:func:`repro.verdicts.tally`) for the methods run.
    """
    out = {}
    if "MMVM" not in metrics:
        return out
    for baseline in BASELINES:
        if baseline not in metrics:
            continue
        for key, label in (("within_rat_accuracy", "latent accuracy"), ("coherence", "coherence")):
            found = []
            for beta, cell in metrics["MMVM"].items():
                if beta not in metrics[baseline]:
                    continue
                a, b = cell[key]["mean"], metrics[baseline][beta][key]["mean"]
                found.append(verdicts.compare(a > b, within_noise(a, b, n_trials)))
            out[f"MMVM > {baseline} in {label}"] = verdicts.tally(found, "betas")
    return out


def summary(result: TradeoffResult) -> str:
    """The notebook's printed summary: seed means per method and beta, the verdicts.

    Args:
        result: the experiment result.

    Returns:
        A small text table (2 decimals; reconstruction error 1 decimal).
    """
    d = result.details
    lines = [
        f"data: {result.source.split(':')[0]}; held out: {d['n_test_trials']} trial tuples "
        f"({d['n_test_samples']} sub-windows); {len(d['seeds'])} seeds; chance 0.25",
        f"{'method':12s}{'beta':>7s}{'rec':>8s}{'within':>8s}{'across':>8s}{'coher':>8s}"
        f"{'within(in)':>11s}",
    ]
    for method, by_beta in result.metrics.items():
        for beta, c in by_beta.items():
            lines.append(
                f"{method:12s}{beta:>7s}{c['reconstruction_error']['mean']:8.1f}"
                f"{c['within_rat_accuracy']['mean']:8.2f}{c['across_rat_accuracy']['mean']:8.2f}"
                f"{c['coherence']['mean']:8.2f}{c['within_rat_accuracy_in_sample']['mean']:11.2f}"
            )
    lines.append("paper's claim (MMVM above the baselines at the same beta) [inferred]:")
    for claim, verdict in d["paper_predictions"].items():
        lines.append(f"  {claim}: {verdict}")
    return "\n".join(lines)
