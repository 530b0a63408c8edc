"""``coord_bound_hierarchy``: how tightly coordination-based objectives bound the evidence.

Suzuki & Matsuo's first claim (coordination.md §1): coordination-based models derive from one
multimodal ELBO and differ in how tightly they lower-bound it; by our derivation (§3), MVTCAE
at beta = 1 is a convex combination of valid bounds of its target, while JMVAE-KL has an extra
slack ``alpha KL(q(z|X) || p(z))``.

* **Exact** (left panel): on a linear-Gaussian model (:mod:`repro.papers.coord.bounds`, no
  Monte Carlo), MVTCAE and JMVAE-KL against their targets over ``alpha``, for the exact
  posteriors, a perturbed (miscalibrated) ``q`` and MVTCAE's own product-of-experts ``q``:
  the gaps and the slack.
* **Trained** (right panel): the image models of ``coord_cross_coherence`` (the same config,
  so their units are shared through the cache); for each, its own objective evaluated as a
  bound (``beta = 1`` where the model has a beta) and an importance-sampled ``log p(X)`` on test
  tuples (``K`` samples from the model's joint posterior), i.e. the gap per model. The
  estimate's error is measured with ``K_check`` samples on a few tuples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from repro import verdicts
from repro.distributions import rsample
from repro.jobs import Unit, run_units
from repro.models import MultimodalVAE
from repro.papers.coord import bounds
from repro.papers.coord.cross_coherence import check_predictions as cross_predictions
from repro.papers.coord.settings import BoundHierarchyConfig
from repro.papers.jnf import coherence_fid as bench
from repro.record import check_writable
from repro.runtime import default_dtype, resolve_device, seed_everything, set_threads

__all__ = [
    "FAMILIES",
    "BoundHierarchyResult",
    "log_evidence",
    "objective",
    "evaluate_model",
    "run",
    "check_predictions",
    "summary",
]

FAMILIES = bounds.FAMILIES  # exact, perturbed, poe
CHUNK = 250  # importance samples decoded at once per tuple batch


@dataclass
class BoundHierarchyResult:
    """Everything the figure and the summary need.

    Attributes:
        cfg: the config.
        metrics: ``exact/<family>/<quantity>`` at ``alpha = 0.5`` and ``trained/<model>/...``
            (objective, log p(X), gap, the check's difference), plain floats.
        details: the alpha grid, per-seed raw numbers, the data source, the verdicts.
        exact: per family, :func:`repro.papers.coord.bounds.sweep` over the alpha grid.
        trained: per model, the means over seeds of its numbers.
        seconds: wall time.
    """

    cfg: BoundHierarchyConfig
    metrics: dict[str, dict]
    details: dict[str, object]
    exact: dict[str, dict[str, Tensor]]
    trained: dict[str, dict[str, float]]
    seconds: float = 0.0


def _logmeanexp(x: Tensor, dim: int) -> Tensor:
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


@torch.no_grad()
def log_evidence(
    model: MultimodalVAE, x: Mapping[str, Tensor], K: int, generator: torch.Generator
) -> Tensor:
    """Importance-sampled ``log p(X)`` per tuple, proposal the model's joint posterior.

    ``log p(X) ~ log 1/K sum_k p(X|z_k) p(z_k) / q(z_k|X)``, ``z_k ~ q(z|X)``; consistent in
    ``K`` for any proposal whose support covers the posterior's.

    Args:
        model: the trained model (eval mode).
        x: ``{m: (B, ...)}`` test observations of every modality.
        K: importance samples per tuple.
        generator: source of the samples.

    Returns:
        ``(B,)`` estimates.
    """
    q = model.posterior(x)
    pz = model.prior()
    parts = []
    for start in range(0, K, CHUNK):
        k = min(CHUNK, K - start)
        z = rsample(q, (k,), generator)  # (k, B, D)
        log_w = pz.log_prob(z) - q.log_prob(z)
        for m, p in model.decode(z).items():
            log_w = log_w + p.log_prob(x[m])
        parts.append(log_w)
    return _logmeanexp(torch.cat(parts), 0)


@torch.no_grad()
def objective(
    model: MultimodalVAE, x: Mapping[str, Tensor], draws: int, generator: torch.Generator
) -> Tensor:
    """The model's own training objective per tuple, as a bound: ``beta = 1``, eval mode.

    Averaged over ``draws`` reparameterised draws (the objectives are single-sample estimates).

    Args:
        model: the trained model.
        x: ``{m: (B, ...)}`` observations.
        draws: Monte Carlo repeats.
        generator: seeds the global RNG the models' samples use.

    Returns:
        ``(B,)`` values.
    """
    saved = getattr(model, "beta", None)
    if saved is not None:
        model.beta = 1.0
    try:
        torch.manual_seed(int(torch.randint(0, 2**62, (), generator=generator)))
        return torch.stack([model.bound(dict(x)) for _ in range(draws)]).mean(0)
    finally:
        if saved is not None:
            model.beta = saved


def evaluate_model(cfg: BoundHierarchyConfig, name: str, seed: int) -> dict:
    """One unit: a trained model's objective and importance-sampled ``log p(X)`` per tuple.

    Args:
        cfg: the figure's config (``cfg.trained`` names the models' run).
        name: the model.
        seed: its seed.

    Returns:
        Per-tuple ``objective``, ``log_evidence`` (``(n_is,)`` lists), and the check
        ``check_K``, ``check_K_check`` on the first ``n_check`` tuples.
    """
    with default_dtype(torch.float32):
        set_threads(cfg.threads)
        device = resolve_device(cfg.device)
        seed_everything(seed)
        model = bench.load_trained(cfg.trained, name, seed).to(device)
        _, _, test = bench._data(cfg.trained)
        n = min(cfg.n_is, len(test))
        x = {m: v[:n].to(device) for m, v in test.x.items()}
        g = torch.Generator().manual_seed(seed + 7)
        K = 8 if cfg.smoke else cfg.K
        lp = torch.cat(
            [
                log_evidence(model, {m: v[i : i + 20] for m, v in x.items()}, K, g)
                for i in range(0, n, 20)
            ]
        )
        obj = objective(model, x, 4 if cfg.smoke else 20, g)
        c = min(cfg.n_check, n)
        xc = {m: v[:c] for m, v in x.items()}
        K_check = 16 if cfg.smoke else cfg.K_check
        again = log_evidence(model, xc, K, torch.Generator().manual_seed(seed + 8))
        more = log_evidence(model, xc, K_check, torch.Generator().manual_seed(seed + 9))
        return {
            "objective": obj.cpu().tolist(),
            "log_evidence": lp.cpu().tolist(),
            "check_K": again.cpu().tolist(),
            "check_K_check": more.cpu().tolist(),
        }


def run(cfg: BoundHierarchyConfig) -> BoundHierarchyResult:
    """The exact sweep, then the trained models' objectives against ``log p(X)``.

    Args:
        cfg: ``repro.papers.coord.settings.get("bound_hierarchy", ...)``.

    Returns:
        A :class:`BoundHierarchyResult`.
    """
    tic = time.perf_counter()
    check_writable(cfg)
    set_threads(cfg.threads)
    e = cfg.exact
    g = seed_everything(cfg.seed)
    lg = bounds.LinearGaussianModel.random(
        modalities=tuple(f"x{m}" for m in range(e.n_modalities)), dim=e.dim,
        generator=torch.Generator().manual_seed(cfg.seed + 123),
    )  # fmt: skip
    _, x = lg.sample(e.n_samples, g)
    alphas = torch.linspace(0, 1, e.n_alpha, dtype=torch.float64)
    with default_dtype(torch.float64):
        exact = {
            fam: bounds.sweep(lg, x, alphas, fam, e.perturb_shift, e.perturb_scale)
            for fam in FAMILIES
        }
    trained_cfg = cfg.trained
    profile = trained_cfg.profile
    bench.run_benchmark(  # trains and evaluates the models (or reads their cached units)
        trained_cfg, lambda m, k, n: cross_predictions(m, k, n, profile)
    )
    seeds = trained_cfg.seeds[:1] if trained_cfg.smoke else trained_cfg.seeds
    units = [
        Unit(
            f"{name} seed {seed}: log p(X)",
            evaluate_model,
            (cfg, name, seed),
            bench.UNIT_COST.get(name, 1.0),
        )  # fmt: skip
        for name in trained_cfg.models
        for seed in seeds
    ]
    done = run_units(cfg.name, units, cfg.executor, cfg.workers, cfg.device, max(cfg.threads, 1))
    per_seed: dict[str, dict[int, dict]] = {}
    for unit in units:
        _, name, seed = unit.args
        per_seed.setdefault(name, {})[seed] = done[unit.name]
    trained = {name: _trained_numbers(runs) for name, runs in per_seed.items()}
    metrics: dict[str, dict] = {
        "exact": {
            fam: {k: float(v[len(alphas) // 2]) for k, v in sweep.items() if k != "alpha"}
            for fam, sweep in exact.items()
        },
        "trained": trained,
    }
    _, _, test = bench._data(trained_cfg)
    details = {
        "alpha": alphas.tolist(),
        "exact_model": {"modalities": e.n_modalities, "dim": e.dim, "n_samples": e.n_samples},
        "per_seed": per_seed,
        "data_source": test.source,
        "K": cfg.K,
        "K_check": cfg.K_check,
        "paper_predictions": check_predictions(exact, per_seed),
    }
    return BoundHierarchyResult(
        cfg=cfg,
        metrics=metrics,
        details=details,
        exact={f: {k: v.clone() for k, v in s.items()} for f, s in exact.items()},
        trained=trained,
        seconds=time.perf_counter() - tic,
    )


def _trained_numbers(runs: Mapping[int, dict]) -> dict[str, float]:
    def mean(key: str) -> float:
        values = [sum(r[key]) / len(r[key]) for r in runs.values()]
        return sum(values) / len(values)

    check = [
        max(abs(a - b) for a, b in zip(r["check_K"], r["check_K_check"], strict=True))
        for r in runs.values()
    ]
    obj, lp = mean("objective"), mean("log_evidence")
    return {"objective": obj, "log_evidence": lp, "gap": lp - obj, "check_max_diff": max(check)}


def check_predictions(
    exact: Mapping[str, Mapping[str, Tensor]], per_seed: Mapping[str, Mapping[int, dict]]
) -> dict[str, str]:
    """Check "MVTCAE is more tightly bounded than JMVAE-KL", exactly and in trained models.

    * exact: for each posterior family, MVTCAE's gap to its target below JMVAE-KL's gap to its
      own target at every ``alpha > 0`` of the grid (batch means; no noise: exact);
    * trained: the trained MVTCAE's gap (``log p(X)`` minus its objective at beta = 1) below
      the trained JMVAE-KL's, paired over the test tuples in every seed
      (:func:`repro.verdicts.paired`; the seeds combined by :func:`repro.verdicts.combine`).

    Args:
        exact: per family, the sweep.
        per_seed: per model and seed, the per-tuple numbers of :func:`evaluate_model`.

    Returns:
        ``{claim: verdict}``.
    """
    out = {}
    for fam, s in exact.items():
        positive = s["alpha"] > 0
        tighter = bool((s["mvtcae_gap"][positive] < s["jmvae_gap"][positive]).all())
        out[f"exact ({fam} q): MVTCAE's gap < JMVAE-KL's at every alpha > 0"] = verdicts.compare(
            tighter
        )
    if "MVTCAE" in per_seed and "JMVAE" in per_seed:
        found = []
        for seed in per_seed["MVTCAE"]:
            if seed not in per_seed["JMVAE"]:
                continue
            a, b = per_seed["MVTCAE"][seed], per_seed["JMVAE"][seed]
            gap_a = torch.tensor(a["log_evidence"]) - torch.tensor(a["objective"])
            gap_b = torch.tensor(b["log_evidence"]) - torch.tensor(b["objective"])
            found.append(verdicts.paired(gap_b - gap_a))  # positive: MVTCAE tighter
        if found:
            out["trained: MVTCAE's gap < JMVAE-KL's"] = verdicts.combine(found)
    return out


def summary(result: BoundHierarchyResult) -> str:
    """The notebook's printed summary: the exact gaps at alpha = 0.5, the trained gaps, verdicts.

    Args:
        result: the experiment result.

    Returns:
        A small text table (1 decimal for nats).
    """
    d = result.details
    lines = [
        f"exact: linear-Gaussian model, M = {d['exact_model']['modalities']}, D = "
        f"{d['exact_model']['dim']}, {d['exact_model']['n_samples']} samples; at alpha = 0.5:",
        f"{'q':10s}{'ELBO gap':>10s}{'MVTCAE gap':>12s}{'JMVAE gap':>11s}{'slack':>8s}",
    ]
    for fam, m in result.metrics["exact"].items():
        lines.append(
            f"{fam:10s}{m['log_evidence'] - m['elbo']:10.2f}{m['mvtcae_gap']:12.2f}"
            f"{m['jmvae_gap']:11.2f}{m['jmvae_slack']:8.2f}"
        )
    lines += [
        f"trained ({d['data_source'].split(':')[0]}): objective at beta = 1 and log p(X) "
        f"(K = {d['K']}), nats per tuple",
        f"{'model':12s}{'objective':>11s}{'log p(X)':>11s}{'gap':>9s}{'K check':>9s}",
    ]
    for name, m in result.trained.items():
        lines.append(
            f"{name:12s}{m['objective']:11.1f}{m['log_evidence']:11.1f}{m['gap']:9.1f}"
            f"{m['check_max_diff']:9.2f}"
        )
    lines.append(
        f"K check: largest |log p(X) with K = {d['K']} - with K = {d['K_check']}| on the first "
        "tuples"
    )
    lines.append("the paper's first claim (coordination.md §3, our derivation):")
    for claim, verdict in d["paper_predictions"].items():
        lines.append(f"  {claim}: {verdict}")
    return "\n".join(lines)
