"""Helpers shared by the benchmark scripts beside this file (not part of the ``repro`` package).

The scripts run as ``python benchmarks/<script>.py``, so this directory is on ``sys.path`` and
``import benchlib`` works. Everything here adapts to the library as it is: the JNF toy module is
looked up in its new and old places, ``prepare_stage`` results with or without ``.prepare`` are
accepted, and models that do not exist yet are reported as missing instead of failing.
"""

from __future__ import annotations

import importlib
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]

Batch = dict[str, Tensor]


# -- provenance ---------------------------------------------------------------------------------
def repo_state() -> dict[str, Any]:
    """Commit, dirty files, torch version and CPU model, printed at the top of every report."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10
            )
            return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    dirty = git("status", "--short").splitlines()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = []
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty_files": len(dirty),
        "torch": torch.__version__,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": load,  # 1, 5, 15 min: other processes sharing the cores
    }


def describe_state(state: Mapping[str, Any]) -> str:
    """One line for a report header."""
    load = state.get("load_average") or []
    busy = f", load average {load[0]:.1f} on {state.get('cores')} cores" if load else ""
    return (
        f"repro @ {state['commit']} (+{state['dirty_files']} uncommitted files), "
        f"torch {state['torch']}, {state['cpu']}{busy}"
    )


# -- our models ---------------------------------------------------------------------------------
def load_jnf_toy(profile: str = "full") -> tuple[Any, Callable[[Any], dict[str, nn.Module]]]:
    """The JNF toy config and its ``build_models``, wherever the module lives now.

    Tried in order: ``repro.papers.jnf.{settings, toy_posteriors}`` (the per-paper layout), then
    ``repro.experiments.jnf_toy`` with ``repro.config.get`` (the old layout).

    Args:
        profile: ``"full"`` (paper-size networks, what the speed goals refer to) or ``"quick"``.

    Returns:
        ``(cfg, build_models)``.
    """
    errors = []
    try:
        settings = importlib.import_module("repro.papers.jnf.settings")
        toy = importlib.import_module("repro.papers.jnf.toy_posteriors")
        return settings.get("toy_posteriors", profile), toy.build_models
    except (ImportError, AttributeError, ValueError) as err:
        errors.append(f"repro.papers.jnf: {err!r}")
    try:
        config = importlib.import_module("repro.config")
        toy = importlib.import_module("repro.experiments.jnf_toy")
        return config.get("jnf_toy_posteriors", profile), toy.build_models
    except (ImportError, AttributeError, ValueError) as err:
        errors.append(f"repro.experiments.jnf_toy: {err!r}")
    raise ImportError("cannot find the JNF toy module: " + "; ".join(errors))


def toy_data(n: int, seed: int = 0, size: int = 32) -> Batch:
    """``n`` binary toy square/circle pairs, ``{"circle", "square"}: (n, 1, size, size)``."""
    from repro.data.toy_square import make_pairs

    return dict(make_pairs(n, torch.Generator().manual_seed(seed), size=size).x)


def stage_parts(
    model: nn.Module, stage: str
) -> tuple[nn.Module, Callable[[Batch], Tensor], Callable[[Batch], Batch]]:
    """``(module, bound, prepare)`` of ``model.prepare_stage(stage)``.

    ``prepare`` maps the stage's data to what ``bound`` reads (identity when the library's
    ``Stage`` has none, or when ``prepare_stage`` returns a plain pair).
    """
    stage_obj = model.prepare_stage(stage)
    module, bound = stage_obj
    prepare = getattr(stage_obj, "prepare", None)
    if not callable(prepare):

        def prepare(data: Batch) -> Batch:
            return data

    return module, bound, prepare


def our_optimizer(params: list[nn.Parameter], lr: float = 1e-3) -> torch.optim.Optimizer:
    """The optimiser ``repro.train.fit`` builds for an Adam stage (fused where available)."""
    try:
        from repro.config import TrainConfig
        from repro.train import _optimizer

        return _optimizer(params, TrainConfig(lr=lr))
    except (ImportError, AttributeError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def optimizer_kind(optimizer: torch.optim.Optimizer) -> str:
    """``"Adam(fused)"``, ``"Adam(foreach)"`` or ``"Adam(for-loop)"``."""
    group = optimizer.param_groups[0]
    impl = "fused" if group.get("fused") else "foreach" if group.get("foreach") else "for-loop"
    return f"{type(optimizer).__name__}({impl})"


def trainable(module: nn.Module) -> list[nn.Parameter]:
    """Parameters with ``requires_grad``."""
    return [p for p in module.parameters() if p.requires_grad]


def n_params(module: nn.Module) -> int:
    """All parameters (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


# name: (module, class, keyword arguments). ``mopoe`` is MultiVae's MoPoE estimator (one subset
# per sample in contiguous chunks, leftover rows to the last subset, the prior expert in the
# full-set product, beta 1: the same per-sample objective, bench_vs_multivae.py --check-mopoe);
# ``mopoe-all`` is our default stratification (every subset decoded for every sample).
MLP_MODELS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "mopoe": (
        "repro.models.mopoe",
        "MoPoE",
        {
            "beta": 1.0,
            "stratified": "chunks",
            "chunk_remainder": "last",
            "poe_prior_expert": "full",
        },
    ),
    "mopoe-all": ("repro.models.mopoe", "MoPoE", {"beta": 1.0, "stratified": "all"}),
    "mvae": ("repro.models.mvae", "MVAE", {"beta": 1.0}),
    "mvtcae": ("repro.models.mvtcae", "MVTCAE", {}),
    "crmvae": ("repro.models.crmvae", "CRMVAE", {}),
}


def build_mlp_model(
    name: str, latent_dim: int = 16, hidden: int = 512, size: int = 32
) -> nn.Module:
    """One of :data:`MLP_MODELS` on two ``1 x size x size`` modalities, ``circle``/``square``.

    Architecture (every model, both modalities): encoder ``Flatten, Linear(size^2, hidden),
    ReLU`` then Gaussian heads ``Linear(hidden, latent_dim)`` x 2; decoder ``Linear(latent_dim,
    hidden), ReLU, Linear(hidden, size^2)``, Bernoulli logits.

    Raises:
        LookupError: when the module or class does not exist (yet) or cannot be built.
    """
    import inspect

    from repro.models.decoders import MLPDecoder
    from repro.models.encoders import MLPEncoder

    module, cls_name, kwargs = MLP_MODELS[name]
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError) as err:
        raise LookupError(f"missing: {err}") from None
    accepted = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    shape = (1, size, size)
    encoders = {m: MLPEncoder(shape, (hidden,), latent_dim) for m in ("circle", "square")}
    decoders = {
        m: MLPDecoder(latent_dim, (hidden,), shape, kind="bernoulli") for m in ("circle", "square")
    }
    try:
        return cls(encoders, decoders, latent_dim, **kwargs)
    except Exception as err:  # the class may be mid-rewrite: report, go on
        msg = f"cannot build {cls_name}(encoders, decoders, {latent_dim}): {err!r}"
        raise LookupError(msg) from err


def first_stage(model: nn.Module) -> str:
    """The model's only (or first) training stage name."""
    stages = getattr(model, "stages", ("train",))
    return stages[0]


# -- data and loops -----------------------------------------------------------------------------
def sample_batches(
    data: Mapping[str, Tensor], batch_size: int, count: int, seed: int = 1
) -> list[Batch]:
    """``count`` random batches (without replacement inside a batch), materialised up front."""
    n = len(next(iter(data.values())))
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        index = torch.randperm(n, generator=g)[:batch_size]
        out.append({k: v[index] for k, v in data.items()})
    return out


def to_device(batch: Mapping[str, Tensor], device: torch.device | str) -> Batch:
    """Move every tensor of a batch."""
    return {k: v.to(device) for k, v in batch.items()}


def make_step(
    loss_fn: Callable[[Batch], Tensor],
    optimizer: torch.optim.Optimizer,
    validate: bool | None = None,
) -> Callable[[Batch], None]:
    """The per-step loop body used on both sides: zero_grad, loss, backward, optimiser step.

    Args:
        loss_fn: batch -> scalar loss.
        optimizer: the optimiser.
        validate: ``torch.distributions`` argument validation during the step: ``None`` keeps
            the global default (on, unless changed), ``False`` switches it off for the step
            as ``repro.train.fit`` does around its loop (:func:`fit_step`).
    """

    def step(batch: Batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(batch)
        loss.backward()
        optimizer.step()

    if validate is None:
        return step
    from torch.distributions import Distribution

    def switched(batch: Batch) -> None:
        previous = Distribution._validate_args
        Distribution.set_default_validate_args(validate)
        try:
            step(batch)
        finally:
            Distribution.set_default_validate_args(previous)

    return switched


def fit_step(
    loss_fn: Callable[[Batch], Tensor], optimizer: torch.optim.Optimizer
) -> Callable[[Batch], None]:
    """Our bare step as ``repro.train.fit`` runs it: distribution validation off."""
    return make_step(loss_fn, optimizer, validate=False)


CLOCKS = ("wall", "cpu")
_CLOCK = {"now": time.perf_counter}


def set_clock(name: str) -> None:
    """Choose what :func:`clock` reads: ``"wall"`` (default) or ``"cpu"``.

    ``"wall"`` is ``time.perf_counter``. ``"cpu"`` is ``time.process_time``, the CPU seconds
    (user + system, page faults included) of every thread of this process: on a machine whose
    cores other processes share, a 1-thread step's CPU time is what it takes on an idle core
    (wall time then includes the time the scheduler gave to the others, which inflates long
    steps more than the short calls of a floor round). With ``N`` threads it is their total,
    spinning included, so only the 1-thread CPU time estimates wall time.

    Raises:
        ValueError: for another name.
    """
    if name not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {name!r}")
    _CLOCK["now"] = time.perf_counter if name == "wall" else time.process_time


def clock() -> float:
    """Seconds on the clock chosen by :func:`set_clock` (wall by default)."""
    return _CLOCK["now"]()


def synchronize(device: torch.device | str) -> None:
    """Wait for the device (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed_steps(
    step: Callable[[Batch], None],
    batches: Sequence[Batch],
    steps: int,
    device: torch.device | str = "cpu",
) -> float:
    """Seconds per step (on :func:`clock`) over ``steps`` steps cycling through ``batches``."""
    synchronize(device)
    tic = clock()
    for i in range(steps):
        step(batches[i % len(batches)])
    synchronize(device)
    return (clock() - tic) / steps


def interleave(runs: Mapping[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call every ``run`` once per repeat, rotating the order each repeat (A B, B A, ...).

    Args:
        runs: ``{name: () -> seconds}``.
        repeats: rounds.

    Returns:
        ``{name: [seconds per round]}``.
    """
    names = list(runs)
    out: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            out[name].append(runs[name]())
    return out


def median(values: Sequence[float]) -> float:
    """Median (NaN for an empty list)."""
    return statistics.median(values) if values else float("nan")


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """``b[i] / a[i]`` per round (interleaved rounds see the same machine load)."""
    return [y / x for x, y in zip(a, b, strict=True) if x > 0]


# -- memory -------------------------------------------------------------------------------------
def current_rss_mb() -> float:
    """Resident set size now (Linux), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux ``ru_maxrss``), MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0); True if it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_hwm_mb() -> float:
    """``VmHWM`` (peak RSS since the last :func:`reset_peak_rss`), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# -- the conv models of jnf_coherence_fid -------------------------------------------------------
#: ``entry: (model name, stage)`` of every model and training stage of ``jnf_coherence_fid``
#: (``repro/papers/jnf/coherence_fid.py``), in the figure's order.
CONV_ENTRIES: dict[str, tuple[str, str]] = {
    "JNF/joint": ("JNF", "joint"),
    "JNF/unimodal": ("JNF", "unimodal"),
    "JNF-DCCA/projectors": ("JNF-DCCA", "projectors"),
    "JNF-DCCA/joint": ("JNF-DCCA", "joint"),
    "JNF-DCCA/unimodal": ("JNF-DCCA", "unimodal"),
    "JMVAE": ("JMVAE", "train"),
    "MoPoE": ("MoPoE", "train"),
    "MVTCAE": ("MVTCAE", "train"),
    "MMVAE": ("MMVAE", "train"),
    "MVAE": ("MVAE", "train"),
    "CRMVAE": ("CRMVAE", "train"),
}


def load_coherence_fid(preset: str = "quick") -> tuple[Any, Any]:
    """The ``jnf_coherence_fid`` config of ``preset`` and its module, read at run time.

    The presets' sizes (channels, latent, batch) are never copied here: whatever
    ``repro.papers.jnf.settings`` holds now is what gets measured.

    Returns:
        ``(cfg, module)``: the frozen config and ``repro.papers.jnf.coherence_fid``.

    Raises:
        LookupError: when the figure's module or preset does not exist (yet).
    """
    try:
        settings = importlib.import_module("repro.papers.jnf.settings")
        module = importlib.import_module("repro.papers.jnf.coherence_fid")
        return settings.get("coherence_fid", preset), module
    except (ImportError, AttributeError, ValueError) as err:
        raise LookupError(f"cannot load jnf_coherence_fid ({preset}): {err!r}") from None


def describe_conv_preset(cfg: Any) -> str:
    """One line with the architecture of a ``coherence_fid`` config (for report headers)."""
    return (
        f"conv channels {tuple(cfg.channels)}, latent {cfg.latent_dim}, joint hidden "
        f"{cfg.joint_hidden}, flows {cfg.flow_transforms} x {tuple(cfg.flow_hidden)}, "
        f"{cfg.likelihood} likelihood (scale {cfg.scale}), MMVAE "
        f"{getattr(cfg, 'mmvae_estimator', 'iwae')}/{getattr(cfg, 'mmvae_stratified', 'all')} "
        f"K {cfg.mmvae_K}, batch {cfg.train.batch_size} (DCCA {cfg.dcca_train.batch_size})"
    )


def build_conv_stage(entry: str, preset: str = "quick") -> tuple[nn.Module, str, Any]:
    """The figure's model of ``entry`` (``coherence_fid.build_model``), its stage and config.

    Args:
        entry: a key of :data:`CONV_ENTRIES`.
        preset: ``"quick"`` or ``"full"``.

    Returns:
        ``(model, stage, train_cfg)``: fresh weights on the CPU, the stage name and the
        stage's ``TrainConfig`` (``coherence_fid.stage_configs``).

    Raises:
        LookupError: when the model cannot be built.
    """
    name, stage = CONV_ENTRIES[entry]
    cfg, figure = load_coherence_fid(preset)
    try:
        model = figure.build_model(name, cfg)
        train_cfg = figure.stage_configs(name, model, cfg)[stage]
    except Exception as err:  # the module may be mid-rewrite: report, go on
        raise LookupError(f"cannot build {name} ({preset}): {err!r}") from err
    return model, stage, train_cfg


def polymnist_data(n: int, seed: int = 0) -> Batch:
    """``n`` PolyMNIST tuples (the real data under the data root, else the stand-in).

    Returns:
        ``{"m0", ..., "m4"}``: ``(n, 3, 28, 28)`` images in ``[0, 1]``.
    """
    from repro.data.polymnist import polymnist

    return dict(polymnist("train", n=n, generator=torch.Generator().manual_seed(seed)).x)
