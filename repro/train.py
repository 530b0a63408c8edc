"""The one training loop, shared by every model and every training stage.

``fit(model, objective, data, cfg)`` maximises ``objective(batch)`` (a per-sample bound of shape
``(B,)``, or a batch-level scalar) over the parameters of ``model`` that require gradients;
:func:`fit_stages` runs it over the stages of a :class:`repro.models.base.MultimodalVAE`.

**Headless runs.** The batch runner (:mod:`repro.runner`) sets :data:`PROGRESS_ENV` to a file
before papermill or nbclient start the kernel: :func:`fit` then appends one JSON line per epoch
to it (the runner shows them in the terminal) and draws no progress bar in the notebook, whose
saved widget would otherwise stay frozen at ``0%`` outside a live Jupyter session.
:data:`HEADLESS_ENV` alone also turns the bar off.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution
from tqdm.auto import tqdm

from repro.config import TrainConfig
from repro.io import atomic_torch_save
from repro.runtime import model_device, run_identity

__all__ = [
    "History",
    "CheckpointError",
    "fit",
    "fit_stages",
    "evaluate",
    "batches",
    "distribution_validation",
    "PROGRESS_ENV",
    "HEADLESS_ENV",
    "headless",
    "progress_record",
]

Batch = Mapping[str, Tensor]
Data = Mapping[str, Tensor] | Iterable[Batch]

PROGRESS_ENV = "REPRO_PROGRESS_FILE"  # JSON-lines file that fit() appends one line per epoch to
HEADLESS_ENV = "REPRO_HEADLESS"  # set (non-empty) by the runner: no progress bar in the notebook

CHECKPOINT_KEYS = frozenset(
    {
        "cfg",
        "epoch",
        "model",
        "optimizer",
        "history",
        "best_value",
        "best_state",
        "rng",
        "cuda_rng",
        "generator",
    }
)


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be resumed from (corrupt, truncated, empty or incomplete).

    The message names the file and the stage, and says how to recover: delete that one file to
    restart that stage from its first epoch.
    """


@dataclass
class History:
    """What :func:`fit` did.

    Attributes:
        train: mean objective per epoch on the training data.
        val: mean objective per epoch on the validation data (empty without it).
        best_epoch: epoch (1-based) whose state was kept (last epoch without validation).
        seconds: wall time of the training steps (evaluation excluded), summed over sessions.
        samples: training samples processed, summed over sessions.
        resumed_from: epoch of the checkpoint this run resumed from (0 if none).
    """

    train: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    samples: int = 0
    resumed_from: int = 0

    @property
    def samples_per_second(self) -> float:
        """Training throughput."""
        return self.samples / self.seconds if self.seconds > 0 else float("nan")


def batches(
    data: Data,
    batch_size: int,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
) -> Iterator[Batch]:
    """Iterate over mini-batches.

    Args:
        data: a dict of equally long tensors (batched here, shuffled with ``generator``), or any
            re-iterable of batch dicts, e.g. a ``DataLoader`` (used as it is).
        batch_size: batch size for dict data; the last, smaller batch is kept.
        generator: shuffling randomness for dict data.
        shuffle: shuffle dict data.

    Yields:
        Batch dicts.

    Raises:
        ValueError: for an empty dict or tensors of different lengths.
    """
    if not isinstance(data, Mapping):
        yield from data
        return
    lengths = {k: len(v) for k, v in data.items()}
    if not lengths or len(set(lengths.values())) != 1:
        raise ValueError(f"data must be non-empty tensors of equal length, got lengths {lengths}")
    n = next(iter(lengths.values()))
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield {k: v[index] for k, v in data.items()}


@contextmanager
def distribution_validation(enabled: bool) -> Iterator[None]:
    """Temporarily switch ``torch.distributions`` argument validation on or off.

    Validation checks every distribution's parameters and samples against its constraints, at
    every construction: useful while debugging, pure overhead in a training loop whose loss is
    checked for NaN anyway. Distributions built with an explicit ``validate_args`` are not
    affected.

    Args:
        enabled: the default to use inside the block.

    Yields:
        Nothing; the previous default is restored on exit, also on error.
    """
    previous = Distribution._validate_args
    Distribution.set_default_validate_args(enabled)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(previous)


def _to(batch: Batch, device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _batch_size(batch: Batch) -> int:
    return len(next(iter(batch.values())))


def _fused_devices() -> set[str]:
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        return set(_get_fused_kernels_supported_devices())
    except (ImportError, AttributeError):  # private helper moved: the two devices we know
        return {"cpu", "cuda"}


def _optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (fused kernel where the parameters allow it) or RMSprop (torch's default impl).

    Fused Adam computes the same update in a few fused kernels (on a small CPU MLP the
    optimiser step takes about 0.7x the time of the loop; values agree to float rounding); it
    needs floating-point parameters on one device with fused kernels, else torch's default
    implementation (``foreach`` on CUDA, a loop on CPU) is used. RMSprop has no fused kernel;
    its default already picks ``foreach`` where that is faster (``foreach`` on CPU is slower).
    """
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    devices = {p.device.type for p in params}
    if (
        len(devices) == 1
        and devices <= _fused_devices()
        and all(p.is_floating_point() for p in params)
    ):
        try:
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        except (RuntimeError, ValueError, TypeError):  # an older torch or an unusual device
            pass
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _implementation(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    keys = ("fused", "foreach")
    return [{k: g[k] for k in keys if k in g} for g in optimizer.param_groups]


@torch.no_grad()
def evaluate(
    model: nn.Module, objective: Callable[[Batch], Tensor], data: Data, batch_size: int
) -> float:
    """Mean objective over ``data`` (per sample; batch-level objectives are batch-weighted).

    Distribution argument validation is off for the duration (see
    :func:`distribution_validation`); values are summed on the model's device and read once.

    Args:
        model: the model (put in eval mode for the duration).
        objective: the bound to evaluate.
        data: dict of tensors or iterable of batches.
        batch_size: batch size for dict data.

    Returns:
        The mean value (NaN or infinite if the objective is; :func:`fit` checks).
    """
    was_training = model.training
    model.eval()
    device = model_device(model)
    total, count = None, 0
    try:
        with distribution_validation(False):
            for batch in batches(data, batch_size, shuffle=False):
                batch = _to(batch, device)
                value = objective(batch).detach()
                size = _batch_size(batch)
                value = value.sum() if value.dim() else value * size
                value = value.to(_accumulator_dtype(device))
                total = value if total is None else total + value
                count += size
    finally:
        model.train(was_training)
    return float(total) / count if count else 0.0


def _accumulator_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def _check_each_step(device: torch.device) -> bool:
    """Check the loss for NaN at every step (free on CPU) or once per epoch (no GPU sync)."""
    return device.type == "cpu"


def headless() -> bool:
    """Whether progress bars are off: the batch runner, nbval, or :data:`HEADLESS_ENV` set."""
    return bool(os.environ.get(HEADLESS_ENV) or os.environ.get(PROGRESS_ENV))


def progress_record(desc: str, event: str, done: int, total: int) -> None:
    """Append one event (a unit that starts or ends, ...) to the runner's progress file.

    Does nothing outside the batch runner; never raises (progress is a convenience).

    Args:
        desc: what the event is about, e.g. ``"jnf_coherence_fid unit MoPoE seed 0"``.
        event: ``"unit-start"``, ``"unit-done"`` or ``"unit-cached"``.
        done: units finished so far.
        total: units of the run.
    """
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return
    record = {"desc": desc, "event": event, "done": done, "total": total}
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    except (OSError, ValueError):
        pass


class _ProgressLog:
    """Append-only JSON-lines progress for the batch runner; never fails the training."""

    def __init__(self, desc: str, epochs: int) -> None:
        path = os.environ.get(PROGRESS_ENV)
        self.path = Path(path) if path else None
        self.desc, self.epochs, self.tic = desc, epochs, time.perf_counter()

    def write(self, epoch: int, train: float | None = None, val: float | None = None) -> None:
        """Append a record: the start of a session (``train`` is None) or a finished epoch."""
        if self.path is None:
            return
        record = {
            "desc": self.desc,
            "start": train is None,
            "epoch": epoch,
            "epochs": self.epochs,
            "train": train if train is None or math.isfinite(train) else None,
            "val": val if val is None or math.isfinite(val) else None,
            "elapsed": round(time.perf_counter() - self.tic, 3),
        }
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        except (OSError, ValueError):  # progress is a convenience: stop writing, keep training
            self.path = None


def _load_checkpoint(
    ckpt: Path,
    desc: str,
    cfg: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator | None,
) -> dict[str, Any]:
    """Restore model, optimiser, history and RNG states from ``ckpt``; return its contents."""
    recover = (
        f"delete {ckpt} to restart stage {desc!r} from epoch 1 (checkpoints of other stages are "
        "separate files and stay valid)"
    )
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)  # RNG state: CPU tensor
    except Exception as err:  # torch/pickle/zip raise many types for a damaged file
        size = ckpt.stat().st_size if ckpt.exists() else 0
        what = "is empty" if size == 0 else f"cannot be read ({type(err).__name__}: {err})"
        raise CheckpointError(
            f"{desc}: checkpoint {ckpt} {what}; it is corrupt or was truncated. To recover, "
            f"{recover}."
        ) from err
    missing = sorted(CHECKPOINT_KEYS - set(state)) if isinstance(state, dict) else ["all"]
    if missing:
        raise CheckpointError(
            f"{desc}: checkpoint {ckpt} lacks the keys {missing} (not a checkpoint of "
            f"repro.train.fit, or from an incompatible version). To recover, {recover}."
        )
    if state["cfg"] != run_identity(cfg):
        raise ValueError(
            f"{desc}: checkpoint {ckpt} was written with another config "
            f"({state['cfg']}); delete it or choose another checkpoint path"
        )
    try:
        model.load_state_dict(state["model"])
        saved = state["optimizer"]
        for group, impl in zip(saved["param_groups"], _implementation(optimizer), strict=False):
            group.update(impl)  # this machine's kernel choice; load_state_dict places the state
        optimizer.load_state_dict(saved)
        history = History(**state["history"])
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if generator is not None and state["generator"] is not None:
            generator.set_state(state["generator"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"{desc}: checkpoint {ckpt} does not fit this model ({type(err).__name__}: {err}). "
            f"To recover, {recover}."
        ) from err
    state["history"] = history
    return state


def fit(
    model: nn.Module,
    objective: Callable[[Batch], Tensor],
    data: Data,
    cfg: TrainConfig,
    val_data: Data | None = None,
    generator: torch.Generator | None = None,
    checkpoint: str | Path | None = None,
    desc: str = "train",
    on_epoch: Callable[[int], None] | None = None,
) -> History:
    """Maximise ``objective`` with Adam or RMSprop over ``model``'s trainable parameters.

    Only parameters with ``requires_grad`` are optimised (see ``prepare_stage``). Batches are
    moved to the model's device; move the model once, before calling. At the start of every
    epoch, ``on_epoch(epoch)`` (default: ``model.set_epoch``, if the model has one) is called
    with the 1-based epoch, also after a resume, so warm-up schedules hold during the epoch's
    training steps and its validation. Distribution argument validation is off while training
    and evaluating (see :func:`distribution_validation`).

    Args:
        model: the module being trained (its trainable parameters, and its state for
            checkpoints and best-state selection).
        objective: ``batch -> (B,)`` per-sample bound or scalar batch bound, to maximise.
        data: training data, see :func:`batches`.
        cfg: epochs, batch size, optimiser, best-state selection, checkpointing, progress bar.
        val_data: optional validation data; with ``cfg.restore_best`` the state of the best
            validation epoch is restored at the end.
        generator: shuffling randomness.
        checkpoint: file for per-epoch checkpoints when ``cfg.checkpoint`` is set. If it exists
            and matches ``cfg``, training resumes after its epoch; at most the running epoch is
            lost when a run is killed.
        desc: label of the progress bar, of progress records and of error messages.
        on_epoch: called with the 1-based epoch before the epoch's first step.

    Returns:
        The :class:`History`.

    Raises:
        ValueError: with no trainable parameter, or a checkpoint from another config.
        CheckpointError: for a checkpoint that is corrupt, truncated, empty or incomplete; the
            message names the file and the stage, and says to delete that file to restart it.
        FloatingPointError: when the training loss or the validation value becomes NaN or
            infinite; the message names the stage, the epoch and the step (or "validation").
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{desc}: the model has no trainable parameter (all frozen?)")
    if on_epoch is None:
        on_epoch = getattr(model, "set_epoch", None)
    optimizer = _optimizer(params, cfg)
    history = History()
    best_value, best_state = -math.inf, None
    start = 1
    ckpt = Path(checkpoint) if (checkpoint is not None and cfg.checkpoint) else None
    if ckpt is not None and ckpt.exists():
        state = _load_checkpoint(ckpt, desc, cfg, model, optimizer, generator)
        history = state["history"]
        history.resumed_from = state["epoch"]
        best_value, best_state = state["best_value"], state["best_state"]
        start = state["epoch"] + 1
    device = model_device(model)
    check_each_step = _check_each_step(device)
    log = _ProgressLog(desc, cfg.epochs)
    log.write(start - 1)
    model.train()
    bar = tqdm(
        total=cfg.epochs,
        initial=start - 1,
        desc=desc,
        unit="epoch",
        disable=not cfg.progress or headless(),
        leave=False,
    )
    try:
        with distribution_validation(False):
            for epoch in range(start, cfg.epochs + 1):
                if callable(on_epoch):
                    on_epoch(epoch)
                tic = time.perf_counter()
                total, count = _train_epoch(
                    model, objective, data, cfg, optimizer, generator, device, desc, epoch,
                    check_each_step,
                )  # fmt: skip
                history.seconds += time.perf_counter() - tic
                history.samples += count
                history.train.append(total / max(count, 1))
                value = None
                if val_data is not None:
                    value = evaluate(model, objective, val_data, cfg.batch_size)
                    if not math.isfinite(value):
                        raise FloatingPointError(
                            f"{desc}: validation value is {value} at epoch {epoch}; lower the "
                            "learning rate, check the validation data for NaN, or resume from "
                            "the last checkpoint"
                        )
                    history.val.append(value)
                    if value > best_value:
                        best_value, history.best_epoch = value, epoch
                        if cfg.restore_best:
                            best_state = copy.deepcopy(model.state_dict())
                else:
                    history.best_epoch = epoch
                bar.update(1)
                bar.set_postfix(train=f"{history.train[-1]:.2f}", best=history.best_epoch)
                log.write(epoch, history.train[-1], value)
                if ckpt is not None:
                    _save_checkpoint(
                        ckpt, cfg, epoch, model, optimizer, history, best_value, best_state,
                        generator, desc,
                    )  # fmt: skip
    finally:
        bar.close()
    if start > cfg.epochs and cfg.epochs > 0 and callable(on_epoch):
        on_epoch(cfg.epochs)  # resumed a finished run: leave the schedule where training ended
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def _train_epoch(
    model: nn.Module,
    objective: Callable[[Batch], Tensor],
    data: Data,
    cfg: TrainConfig,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator | None,
    device: torch.device,
    desc: str,
    epoch: int,
    check_each_step: bool,
) -> tuple[float, int]:
    """One pass over ``data``; returns the summed objective and the sample count.

    The objective is summed on ``device`` and read once. On CPU the loss is checked for NaN at
    every step; elsewhere the first non-finite step is recorded on the device and reported at
    the end of the epoch (or when the objective raises, e.g. on NaN inputs), so that no step
    waits for the accelerator.
    """
    acc = _accumulator_dtype(device)
    total = torch.zeros((), dtype=acc, device=device)
    bad_step = torch.zeros((), dtype=torch.long, device=device)  # first non-finite step, 0: none
    bad_value = torch.zeros((), dtype=acc, device=device)
    count, step = 0, 0

    def nonfinite(step: int, value: float) -> FloatingPointError:
        return FloatingPointError(
            f"{desc}: loss is {value} at epoch {epoch}, step {step}; lower the learning rate, "
            "check the inputs for NaN, or resume from the last checkpoint"
        )

    try:
        for step, batch in enumerate(batches(data, cfg.batch_size, generator), start=1):
            if cfg.max_steps and step > cfg.max_steps:
                break
            batch = _to(batch, device)
            loss = -objective(batch).mean()
            finite = torch.isfinite(loss.detach())
            if check_each_step:
                if not finite:
                    raise nonfinite(step, loss.item())
            else:
                first = (~finite) & (bad_step == 0)
                bad_step = torch.where(first, step, bad_step)
                bad_value = torch.where(first, loss.detach().to(acc), bad_value)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            size = _batch_size(batch)
            total = total - loss.detach().to(acc) * size
            count += size
    except Exception as err:
        if not check_each_step and int(bad_step):
            raise nonfinite(int(bad_step), float(bad_value)) from err
        raise
    if not check_each_step and int(bad_step):
        raise nonfinite(int(bad_step), float(bad_value))
    return float(total), count


def _save_checkpoint(
    ckpt: Path,
    cfg: TrainConfig,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    history: History,
    best_value: float,
    best_state: dict[str, Tensor] | None,
    generator: torch.Generator | None,
    desc: str,
) -> None:
    atomic_torch_save(
        {
            "cfg": run_identity(cfg),
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "history": dataclasses.asdict(history),
            "best_value": best_value,
            "best_state": best_state,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "generator": generator.get_state() if generator is not None else None,
        },
        ckpt,
        what=f"{desc}: checkpoint after epoch {epoch}",
    )


def fit_stages(
    model: nn.Module,
    data: Mapping[str, Tensor],
    cfgs: Mapping[str, TrainConfig],
    val_data: Mapping[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
    checkpoints: Mapping[str, str | Path] | None = None,
    descs: Mapping[str, str] | None = None,
) -> dict[str, History]:
    """Train a staged model: one :func:`fit` per stage of ``model.stages`` that ``cfgs`` names.

    For each stage, in ``model.stages`` order, ``model.prepare_stage(stage)`` freezes all but
    the stage's parameters and returns a :class:`repro.models.base.Stage`; its ``module`` is
    trained on its ``bound``, with the data mapped through its ``prepare`` (a plain
    ``(module, bound)`` pair is accepted too, with the data used as it is). ``model.set_epoch``
    (if any) receives each stage's 1-based epoch, since the bound usually reads the schedule
    from the whole model, not from the stage's module.

    Args:
        model: a model with ``stages`` and ``prepare_stage`` (a ``MultimodalVAE``).
        data: training data, a dict of tensors.
        cfgs: ``{stage: TrainConfig}``; stages not named here are skipped.
        val_data: optional validation data (dict of tensors).
        generator: shuffling randomness, shared by the stages in order.
        checkpoints: ``{stage: file}`` for per-epoch checkpoints (with ``cfg.checkpoint``).
        descs: ``{stage: label}`` for progress bars and messages (default: the stage name).

    Returns:
        ``{stage: History}`` for the stages trained, in training order.

    Raises:
        ValueError: when ``cfgs``, ``checkpoints`` or ``descs`` name a stage the model lacks.
    """
    stages = tuple(model.stages)
    for name, mapping in (("cfgs", cfgs), ("checkpoints", checkpoints), ("descs", descs)):
        unknown = sorted(set(mapping or {}) - set(stages))
        if unknown:
            raise ValueError(f"{name} names unknown stage(s) {unknown}; the model has {stages}")
    checkpoints, descs = checkpoints or {}, descs or {}
    set_epoch = getattr(model, "set_epoch", None)
    histories = {}
    for stage in stages:
        if stage not in cfgs:
            continue
        prepared = model.prepare_stage(stage)
        module, bound = prepared
        prepare = getattr(prepared, "prepare", None) or (lambda d: d)
        histories[stage] = fit(
            module,
            bound,
            prepare(data),
            cfgs[stage],
            prepare(val_data) if val_data is not None else None,
            generator,
            checkpoints.get(stage),
            desc=descs.get(stage, stage),
            on_epoch=set_epoch if callable(set_epoch) else None,
        )
    return histories
