"""Fig. 2, ``jnf_toy_posteriors``: Gaussian vs flow vs DCCA unimodal posteriors on toy pairs.

Reproduces the setting of Fig. 2 of Senellart & Allassonniere (arXiv 2502.03952). One joint VAE
is trained (stage 1) and shared by three models that differ only in the unimodal posteriors
fitted to it (stage 2): a diagonal Gaussian (the JMVAE-style baseline), a Gaussian pushed through
a MAF (JNF), and a MAF posterior on the frozen DCCA projection ``g_j(x_j)`` (JNF-DCCA).

The run is a set of units (:mod:`repro.jobs`; on a CPU a local process pool, ``cfg.executor``):
stage 1 (the DCCA projectors and the joint VAE) is one unit, the stage 2 of each posterior
another, which reads stage 1 from the unit cache and evaluates its posterior.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from repro import verdicts
from repro.config import TrainConfig
from repro.data.toy_square import MODALITIES, ToyPairs, fit_shapes, make_pairs
from repro.distributions import rsample
from repro.flows import FlowPosterior
from repro.jobs import Unit, run_units
from repro.losses import canonical_correlations
from repro.metrics.coherence import coherence, within_noise
from repro.models.decoders import MLPDecoder
from repro.models.encoders import JointMLPEncoder, MLPEncoder, ProjectedEncoder, mlp
from repro.models.jnf import JNF
from repro.papers.jnf.settings import ToyPosteriorsConfig
from repro.record import check_writable
from repro.runtime import (
    checkpoint_path,
    default_dtype,
    resolve_device,
    seed_everything,
    set_threads,
)
from repro.train import History, fit

__all__ = [
    "VARIANTS",
    "ToyResult",
    "explore_indices",
    "build_models",
    "stage1_unit",
    "units",
    "train_joint",
    "train_posterior",
    "run",
    "check_predictions",
    "summary",
]

VARIANTS = ("gaussian", "flow", "dcca")
SOURCE, TARGET = "square", "circle"  # condition on the square, generate circles
LIMIT = 4.5  # the paper's axes, [-4.5, 4.5]^2 (the smallest we draw)


@dataclass
class ToyResult:
    """Everything the figure and the summary need (no retraining to re-plot).

    Attributes:
        cfg: the config that produced it.
        metrics: per variant, ``class_coherence``, ``heldout_log_q`` and ``unrealistic_rate``.
        details: extra numbers for the sidecar (per-modality log q, rates at other thresholds,
            DCCA correlation, throughput, ...).
        samples: ``{"square", "circle"}`` example test pairs (panel a), ``(n, 1, S, S)``.
        embedding: ``(n_scatter, 2)`` joint-posterior means of test pairs.
        colour: ``(n_scatter,)`` ``(2 class - 1) * square size`` (sign: full/empty).
        reference: ``(1, S, S)`` the reference square.
        grid: ``(G,)`` coordinates of the density grid, on both axes.
        density: per variant, ``(G, G)`` density of ``q(z|x_ref)`` on the grid (rows: y).
        shown: per variant, ``(n_shown, 1, S, S)`` circles generated from the reference square.
        shown_realistic: per variant, ``(n_shown,)`` bool, realistic by
            :meth:`repro.data.toy_square.ShapeFit.realistic`.
        histories: per training stage, its :class:`repro.train.History`.
        seconds: wall time of this call (a resumed run: this session only; see
            ``details["train_seconds"]`` for training summed over sessions).
        squares: the explorer's panels for a few test squares (:func:`explore_indices`):
            ``"index"``, ``"label"``, ``"radius"`` ``(n_sq,)``, ``"images"``
            ``(n_sq, 1, S, S)``, ``"grid"`` ``(G',)`` (every few points of ``grid``), and per
            variant ``"density"`` ``(n_sq, G', G')``, ``"circles"`` ``(n_sq, k, 1, S, S)`` bool
            and ``"realistic"`` ``(n_sq, k)`` bool (empty for a result without them).
    """

    cfg: ToyPosteriorsConfig
    metrics: dict[str, dict[str, float]]
    details: dict[str, object]
    samples: dict[str, Tensor]
    embedding: Tensor
    colour: Tensor
    reference: Tensor
    grid: Tensor
    density: dict[str, Tensor]
    shown: dict[str, Tensor]
    shown_realistic: dict[str, Tensor]
    histories: dict[str, History] = field(default_factory=dict)
    seconds: float = 0.0
    squares: dict[str, object] = field(default_factory=dict)


#: The explorer's squares: per class, the test square nearest to each of this many radii.
EXPLORE_RADII = 7
EXPLORE_GRID = 61  # at most this many density points per axis in the explorer's panels
EXPLORE_CIRCLES = 8  # circles generated per explorer square


def explore_indices(test: ToyPairs, r_min: float, r_max: float) -> dict[str, Tensor]:
    """The test squares of the explorer: per class (full, empty), the nearest to a few radii.

    Args:
        test: the test pairs.
        r_min: the smallest radius of the data.
        r_max: the largest radius of the data.

    Returns:
        ``{"index", "label", "radius"}``, each ``(2 * EXPLORE_RADII,)``: full squares first,
        by increasing radius.
    """
    radii = torch.linspace(r_min, r_max, EXPLORE_RADII, dtype=test.radius[SOURCE].dtype)
    index = []
    for label in (1, 0):
        same = test.label == label
        for r in radii:
            gap = torch.where(same, (test.radius[SOURCE] - r).abs(), torch.inf)
            index.append(int(torch.argmin(gap)))
    idx = torch.tensor(index)
    return {"index": idx, "label": test.label[idx], "radius": test.radius[SOURCE][idx]}


def build_models(cfg: ToyPosteriorsConfig) -> dict[str, JNF]:
    """Build the three models around one shared joint VAE (networks of the paper's toy run).

    Args:
        cfg: the experiment config.

    Returns:
        ``{"gaussian", "flow", "dcca"}`` JNF models sharing one joint encoder and decoder set.
    """
    shape = (1, cfg.data.size, cfg.data.size)
    d, h = cfg.latent_dim, cfg.hidden
    # Construction order fixes the initial weights (global RNG): joint encoder, decoders,
    # projectors, then the Gaussian, flow and DCCA posteriors.
    joint_encoder = JointMLPEncoder({m: shape for m in MODALITIES}, d, hidden=h, joint_hidden=(h,))
    decoders = {m: MLPDecoder(d, (h,), shape, kind=cfg.likelihood) for m in MODALITIES}

    def flow(encoder: nn.Module) -> FlowPosterior:
        return FlowPosterior(encoder, d, transforms=cfg.flow_transforms, hidden=cfg.flow_hidden)

    projectors = {
        m: nn.Sequential(nn.Flatten(), mlp((shape[1] * shape[2], *cfg.dcca_hidden, cfg.dcca_dim)))
        for m in MODALITIES
    }
    posteriors = {
        "gaussian": {m: MLPEncoder(shape, (h,), d) for m in MODALITIES},
        "flow": {m: flow(MLPEncoder(shape, (h,), d)) for m in MODALITIES},
        "dcca": {
            m: flow(
                ProjectedEncoder(
                    projectors[m], MLPEncoder((cfg.dcca_dim,), cfg.dcca_encoder_hidden, d)
                )
            )
            for m in MODALITIES
        },
    }
    common = {"beta": cfg.beta, "dcca_top_k": cfg.dcca_top_k}
    return {
        name: JNF(
            joint_encoder,
            encoders,
            decoders,
            d,
            projectors=projectors if name == "dcca" else None,
            **common,
        )
        for name, encoders in posteriors.items()
    }


def _split(cfg: ToyPosteriorsConfig, generator: torch.Generator) -> dict[str, ToyPairs]:
    c = cfg.data
    kwargs = {"size": c.size, "r_min": c.r_min, "r_max": c.r_max, "thickness": c.thickness}
    return {
        "train": make_pairs(c.n_train, generator, **kwargs),
        "val": make_pairs(c.n_val, generator, **kwargs),
        "test": make_pairs(c.n_test, generator, **kwargs),
    }


def _setup(
    cfg: ToyPosteriorsConfig,
) -> tuple[torch.Generator, torch.device, dict[str, ToyPairs], dict[str, JNF]]:
    """The data and the three models with their initial weights, from ``cfg.seed`` alone."""
    generator = seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    data = _split(cfg, generator)
    models = build_models(cfg)
    for model in models.values():
        model.to(device)
    return generator, device, data, models


def _fit_stage(
    cfg: ToyPosteriorsConfig,
    model: JNF,
    stage: str,
    data: dict[str, ToyPairs],
    train_cfg: TrainConfig,
    generator: torch.Generator,
    key: str,
    desc: str,
) -> History:
    st = model.prepare_stage(stage)
    return fit(
        st.module, st.bound, st.prepare(data["train"].x), train_cfg, st.prepare(data["val"].x),
        generator, checkpoint_path(cfg, key), desc=desc,
    )  # fmt: skip


def _cpu(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


STAGE1_UNIT = "stage 1"

#: Relative run time of a posterior's stage 2 (scheduling only: the pool starts the longest
#: first): seconds of the quick profile's stage 2, relative to the Gaussian's.
UNIT_COST = {"gaussian": 1.0, "flow": 1.4, "dcca": 2.5}


def stage1_unit(cfg: ToyPosteriorsConfig) -> Unit:
    """The unit of stage 1 (:func:`train_joint`), which every posterior's unit reads."""
    return Unit(STAGE1_UNIT, train_joint, (cfg,), 4.0)


def units(cfg: ToyPosteriorsConfig) -> list[Unit]:
    """The posteriors' units (:func:`train_posterior`), run after :func:`stage1_unit`."""
    return [Unit(name, train_posterior, (cfg, name), UNIT_COST[name]) for name in VARIANTS]


def train_joint(cfg: ToyPosteriorsConfig) -> dict[str, object]:
    """Unit: stage 1, the DCCA projectors and the joint VAE the three posteriors share.

    Also computes what depends on stage 1 alone: the joint embeddings of the scatter, the
    projectors' canonical correlation and the evaluation frame of every posterior (one joint
    sample per test pair, the density grid, the reference square).

    Args:
        cfg: the experiment config.

    Returns:
        ``{"joint", "projectors"}`` (state dicts), ``{"rng", "generator"}`` (the random states
        at the end of stage 1), ``"histories"``, ``"embedding"``, ``"dcca_val_correlation"``
        and ``"frame"``.
    """
    with default_dtype(torch.float32):
        set_threads(cfg.threads)
        generator, device, data, models = _setup(cfg)
        plan = (
            ("projectors", models["dcca"], "projectors", cfg.dcca_train, "DCCA projectors"),
            ("joint", models["flow"], "joint", cfg.joint_train, "joint VAE"),
        )  # the joint VAE is shared: training it through the flow model trains it for all three
        histories = {
            key: _fit_stage(cfg, model, stage, data, train_cfg, generator, key, f"stage 1: {label}")
            for key, model, stage, train_cfg, label in plan
        }
        out: dict[str, object] = {
            "joint": _cpu(models["flow"].joint_modules()),
            "projectors": _cpu(models["dcca"].projectors),
            "rng": torch.get_rng_state(),
            "generator": generator.get_state(),
            "histories": histories,
        }
        test = data["test"]
        out["frame"] = _frame(cfg, models["gaussian"], test, device)
        with torch.no_grad():
            n = min(cfg.n_scatter, len(test))
            q = models["flow"].posterior({m: v[:n].to(device) for m, v in test.x.items()})
            out["embedding"] = q.mean.cpu()
        out["dcca_val_correlation"] = _projector_correlation(models["dcca"], data["val"].x, device)
        return out


def _stage1(cfg: ToyPosteriorsConfig) -> dict[str, object]:
    """Stage 1's result: from the unit cache once :func:`train_joint` has run (else computed)."""
    unit = stage1_unit(cfg)
    return run_units(cfg.name, [unit], "sequential", threads=cfg.threads, progress=False)[unit.name]


def train_posterior(cfg: ToyPosteriorsConfig, name: str) -> dict[str, object]:
    """Unit: stage 2 of one posterior on the shared joint VAE of stage 1, then its evaluation.

    The models are rebuilt with their initial weights, stage 1's weights are loaded and the
    random streams continue where stage 1 left them, so every posterior is trained as it would
    be right after stage 1 (the Gaussian as in the single-process run before units; the flow
    and DCCA posteriors see the Gaussian's random numbers, not those left after it).

    Args:
        cfg: the experiment config.
        name: one of :data:`VARIANTS`.

    Returns:
        ``{"metrics", "details", "density", "shown", "realistic", "history"}`` of the posterior.
    """
    with default_dtype(torch.float32):
        set_threads(cfg.threads)
        generator, device, data, models = _setup(cfg)
        first = _stage1(cfg)
        model = models[name]
        model.joint_modules().load_state_dict(first["joint"])
        models["dcca"].projectors.load_state_dict(first["projectors"])
        torch.set_rng_state(first["rng"])
        generator.set_state(first["generator"])
        history = _fit_stage(
            cfg, model, "unimodal", data, cfg.unimodal_train, generator, name,
            f"{name}: stage 2 posteriors",
        )  # fmt: skip
        out = _evaluate(cfg, model, data["test"], first["frame"], device)
        out["history"] = history
        return out


@torch.no_grad()
def _frame(
    cfg: ToyPosteriorsConfig, model: JNF, test: ToyPairs, device: torch.device
) -> dict[str, object]:
    """What every posterior is evaluated with: common random numbers and the panels' frame.

    Returns:
        ``{"z_joint": (N, 2)`` one joint-posterior sample per test pair, ``"grid": (G,)``
        coordinates of the density grid, ``"reference_index"``, ``"reference_radius"}``.
    """
    x = {m: v.to(device) for m, v in test.x.items()}
    q_joint = model.posterior(x)
    z_joint = rsample(q_joint, (), torch.Generator().manual_seed(cfg.seed + 1))
    # The paper's axes, [-4.5, 4.5]^2, widened in steps of 0.5 when the embeddings spread further.
    spread = float(torch.quantile(q_joint.mean.abs().flatten().cpu(), 0.99))
    limit = max(LIMIT, 0.5 * math.ceil(2 * (spread + 0.5)))
    full = test.label == 1
    ref = int(
        torch.argmin(torch.where(full, (test.radius[SOURCE] - cfg.reference_radius).abs(), 9))
    )
    return {
        "z_joint": z_joint.cpu(),
        "grid": torch.linspace(-limit, limit, cfg.grid_points, device=device).cpu(),
        "reference_index": ref,
        "reference_radius": float(test.radius[SOURCE][ref]),
    }


@torch.no_grad()
def _evaluate(
    cfg: ToyPosteriorsConfig, model: JNF, test: ToyPairs, frame: dict, device: torch.device
) -> dict[str, object]:
    """One posterior's metrics and reference-square panels, in the frame of :func:`_frame`.

    Returns:
        ``{"metrics", "details", "density", "shown", "realistic"}`` as in :class:`ToyResult`.
    """
    x = {m: v.to(device) for m, v in test.x.items()}
    z_joint, grid = frame["z_joint"].to(device), frame["grid"].to(device)
    ref = frame["reference_index"]
    x_ref = {m: v[ref : ref + 1] for m, v in x.items()}
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    points = torch.stack([xx, yy], -1).reshape(-1, 1, 2)  # (G*G, 1, 2)
    model.eval()
    log_q = {m: float(model.posterior(x, [m]).log_prob(z_joint).mean()) for m in MODALITIES}
    gen = model.generate(x, [SOURCE], generator=torch.Generator().manual_seed(cfg.seed + 2))
    fitted = fit_shapes(gen[TARGET][0].cpu(), TARGET)
    realistic_all = fitted.realistic(cfg.iou_threshold)
    metrics = {
        "class_coherence": coherence(fitted.label, test.label),
        "heldout_log_q": sum(log_q.values()) / len(log_q),
        "unrealistic_rate": float((~realistic_all).double().mean()),
    }
    details = {
        "heldout_log_q_per_modality": log_q,
        "unrealistic_rate_at_iou": {
            str(t): float((~fitted.realistic(t)).double().mean()) for t in (0.7, 0.8, 0.9)
        },
        "mean_iou": float(fitted.iou.mean()),
        "mean_misplaced": float(fitted.misplaced.mean()),
    }
    q_ref = model.posterior(x_ref, [SOURCE])
    density = q_ref.log_prob(points).exp().reshape(len(grid), len(grid)).cpu()
    circles = model.generate(
        x_ref, [SOURCE], n=cfg.n_shown, generator=torch.Generator().manual_seed(cfg.seed + 3)
    )[TARGET][:, 0].cpu()
    return {
        "metrics": metrics,
        "details": details,
        "density": density,
        "shown": circles,
        "realistic": fit_shapes(circles, TARGET).realistic(cfg.iou_threshold),
        "explore": _explore_panels(cfg, model, test, grid, device),
    }


@torch.no_grad()
def _explore_panels(
    cfg: ToyPosteriorsConfig, model: JNF, test: ToyPairs, grid: Tensor, device: torch.device
) -> dict[str, Tensor]:
    """The explorer's panels of one posterior: densities and circles of a few test squares.

    Computed after the metrics with its own generator, so nothing else changes.

    Returns:
        ``{"density": (n_sq, G', G'), "circles": (n_sq, k, 1, S, S) bool,
        "realistic": (n_sq, k) bool}``.
    """
    idx = explore_indices(test, cfg.data.r_min, cfg.data.r_max)["index"]
    x = {m: v[idx].to(device) for m, v in test.x.items()}
    coarse = grid[:: max(1, -(-len(grid) // EXPLORE_GRID))]
    yy, xx = torch.meshgrid(coarse, coarse, indexing="ij")
    points = torch.stack([xx, yy], -1).reshape(-1, 1, 2)  # (G'*G', 1, 2)
    q = model.posterior(x, [SOURCE])
    n_sq, g = len(idx), len(coarse)
    density = q.log_prob(points).exp().reshape(g, g, n_sq).permute(2, 0, 1).cpu()
    k = min(cfg.n_shown, EXPLORE_CIRCLES)
    gen = torch.Generator().manual_seed(cfg.seed + 4)
    circles = model.generate(x, [SOURCE], n=k, generator=gen)[TARGET].transpose(0, 1).cpu()
    realistic = fit_shapes(circles.flatten(0, 1), TARGET).realistic(cfg.iou_threshold)
    return {
        "density": density,
        "circles": circles > 0.5,
        "realistic": realistic.reshape(n_sq, k),
    }


@torch.no_grad()
def _projector_correlation(model: JNF, x: dict[str, Tensor], device: torch.device) -> float:
    """Top canonical correlation (at most 1) of the trained DCCA projections of ``x``."""
    h = {m: model.projectors[m](x[m].to(device)) for m in MODALITIES}
    return float(canonical_correlations(h[MODALITIES[0]], h[MODALITIES[1]])[0])


def run(cfg: ToyPosteriorsConfig) -> ToyResult:
    """Train the shared joint VAE and the three unimodal posteriors; evaluate; collect panels.

    Stage 1 (:func:`train_joint`) and then the three posteriors' stage 2 (:func:`train_posterior`,
    each evaluated in its unit) run through :func:`repro.jobs.run_units` (``cfg.executor``: on a
    CPU a local process pool); each unit's result is cached, so a killed run resumes after its
    finished units.

    Args:
        cfg: the experiment config (``repro.papers.jnf.settings.get("toy_posteriors", ...)``).

    Returns:
        A :class:`ToyResult`.
    """
    with default_dtype(torch.float32):
        return _run(cfg)


def _run(cfg: ToyPosteriorsConfig) -> ToyResult:
    tic = time.perf_counter()
    check_writable(cfg)  # before any training: a read-only figures/ folder fails now
    set_threads(cfg.threads)
    test = _split(cfg, seed_everything(cfg.seed))["test"]
    jobs = {"executor": cfg.executor, "workers": cfg.workers, "device": cfg.device,
            "threads": max(cfg.threads, 1)}  # fmt: skip
    first = run_units(cfg.name, [stage1_unit(cfg)], **jobs)[STAGE1_UNIT]
    done = run_units(cfg.name, units(cfg), **jobs)
    histories = dict(first["histories"])
    histories.update({name: done[name]["history"] for name in VARIANTS})
    metrics = {name: done[name]["metrics"] for name in VARIANTS}
    details: dict[str, object] = {name: done[name]["details"] for name in VARIANTS}
    frame = first["frame"]
    details["reference_index"] = ref = frame["reference_index"]
    details["reference_radius"] = frame["reference_radius"]
    n = len(first["embedding"])
    colour = (2 * test.label[:n] - 1) * test.radius[SOURCE][:n]
    # the training objective (regularised, may exceed 1) and the true canonical correlation
    details["dcca_val_objective"] = max(histories["projectors"].val, default=None)
    details["dcca_val_correlation"] = first["dcca_val_correlation"]
    details["train_samples_per_second"] = {k: h.samples_per_second for k, h in histories.items()}
    # summed over sessions: a resumed run still reports the whole training time
    details["train_seconds"] = {k: round(h.seconds, 1) for k, h in histories.items()}
    details["paper_predictions"] = check_predictions(metrics, cfg.data.n_test)
    squares: dict[str, object] = {}
    if all("explore" in done[name] for name in VARIANTS):
        squares = dict(explore_indices(test, cfg.data.r_min, cfg.data.r_max))
        squares["images"] = test.x[SOURCE][squares["index"]]
        g = frame["grid"]
        squares["grid"] = g[:: max(1, -(-len(g) // EXPLORE_GRID))]
        for name in VARIANTS:
            squares[name] = done[name]["explore"]
    return ToyResult(
        cfg=cfg,
        metrics=metrics,
        details=details,
        samples={m: test.x[m][:8] for m in MODALITIES},
        embedding=first["embedding"],
        colour=colour,
        reference=test.x[SOURCE][ref],
        grid=frame["grid"],
        density={name: done[name]["density"] for name in VARIANTS},
        shown={name: done[name]["shown"] for name in VARIANTS},
        shown_realistic={name: done[name]["realistic"] for name in VARIANTS},
        histories=histories,
        seconds=time.perf_counter() - tic,
        squares=squares,
    )


PREDICTIONS = (
    ("heldout_log_q", "flow", ">=", "gaussian"),
    ("class_coherence", "flow", ">", "gaussian"),
    ("class_coherence", "dcca", ">", "gaussian"),
)  # what the paper predicts (arXiv 2502.03952, Fig. 2 and its discussion)


def check_predictions(metrics: dict[str, dict[str, float]], n_test: int) -> dict[str, str]:
    """Each of the paper's predictions on ``metrics`` (unrounded values), as a verdict.

    A comparison of shares of the ``n_test`` test pairs (coherence) whose difference is within
    2 standard errors is a :data:`repro.verdicts.TIE`; the held-out log density is a mean over
    the same pairs, compared as it is.

    Args:
        metrics: ``ToyResult.metrics``.
        n_test: test pairs behind each share.

    Returns:
        ``{"flow >= gaussian on heldout_log_q": "holds", ...}`` (:mod:`repro.verdicts`).
    """
    ops = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b}
    out = {}
    for key, a, op, b in PREDICTIONS:
        va, vb = metrics[a][key], metrics[b][key]
        tie = key in PROPORTIONS and within_noise(va, vb, n_test)
        out[f"{a} {op} {b} on {key}"] = verdicts.compare(bool(ops[op](va, vb)), tie)
    return out


def summary(result: ToyResult) -> str:
    """The notebook's printed summary: rounded metrics and the paper's predictions.

    Args:
        result: the experiment result.

    Returns:
        A small text table (values rounded to 2 decimals).
    """
    keys = ("class_coherence", "heldout_log_q", "unrealistic_rate")
    lines = [f"{'posterior':10s}" + "".join(f"{k:>18s}" for k in keys)]
    for name in VARIANTS:
        lines.append(f"{name:10s}" + "".join(f"{result.metrics[name][k]:18.2f}" for k in keys))
    lines.append("paper's predictions (a tie: within 2 standard errors):")
    for claim, verdict in result.details["paper_predictions"].items():
        lines.append(f"  {claim}: {verdict}")
    return "\n".join(lines)


PROPORTIONS = ("class_coherence", "unrealistic_rate")  # shares of the n test pairs
