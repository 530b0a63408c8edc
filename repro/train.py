"""The one training loop, shared by every model and every training stage.

``fit(model, objective, data, cfg)`` maximises ``objective(batch)`` (a per-sample bound of shape
``(B,)``, or a batch-level scalar) over the parameters of ``model`` that require gradients.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from repro.config import TrainConfig
from repro.io import atomic_torch_save
from repro.runtime import model_device, run_identity

__all__ = ["History", "fit", "evaluate", "batches"]

Batch = Mapping[str, Tensor]
Data = Mapping[str, Tensor] | Iterable[Batch]


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


def _to(batch: Batch, device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def evaluate(
    model: nn.Module, objective: Callable[[Batch], Tensor], data: Data, batch_size: int
) -> float:
    """Mean objective over ``data`` (per sample; batch-level objectives are batch-weighted).

    Args:
        model: the model (put in eval mode for the duration).
        objective: the bound to evaluate.
        data: dict of tensors or iterable of batches.
        batch_size: batch size for dict data.

    Returns:
        The mean value.
    """
    was_training = model.training
    model.eval()
    device = model_device(model)
    total, count = 0.0, 0
    for batch in batches(data, batch_size, shuffle=False):
        batch = _to(batch, device)
        value = objective(batch)
        size = len(next(iter(batch.values())))
        total += float(value.sum()) if value.dim() else float(value) * size
        count += size
    model.train(was_training)
    return total / max(count, 1)


def fit(
    model: nn.Module,
    objective: Callable[[Batch], Tensor],
    data: Data,
    cfg: TrainConfig,
    val_data: Data | None = None,
    generator: torch.Generator | None = None,
    checkpoint: str | Path | None = None,
    desc: str = "train",
) -> History:
    """Maximise ``objective`` with Adam or RMSprop over ``model``'s trainable parameters.

    Only parameters with ``requires_grad`` are optimised (see ``JNF.set_stage``). Batches are
    moved to the model's device; move the model once, before calling.

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
        desc: label of the progress bar and of error messages.

    Returns:
        The :class:`History`.

    Raises:
        ValueError: with no trainable parameter, or a checkpoint from another config.
        FloatingPointError: when the loss becomes NaN or infinite; the message names the epoch
            and step.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{desc}: the model has no trainable parameter (all frozen?)")
    optimizer = _optimizer(params, cfg)
    history = History()
    best_value, best_state = -math.inf, None
    start = 1
    ckpt = Path(checkpoint) if (checkpoint is not None and cfg.checkpoint) else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)  # RNG state: CPU tensor
        if state["cfg"] != run_identity(cfg):
            raise ValueError(
                f"{desc}: checkpoint {ckpt} was written with another config "
                f"({state['cfg']}); delete it or choose another checkpoint path"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = History(**state["history"])
        history.resumed_from = state["epoch"]
        best_value, best_state = state["best_value"], state["best_state"]
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if generator is not None:
            generator.set_state(state["generator"])
        start = state["epoch"] + 1
    device = model_device(model)
    model.train()
    bar = tqdm(range(start, cfg.epochs + 1), desc=desc, disable=not cfg.progress, leave=False)
    for epoch in bar:
        tic, total, count = time.perf_counter(), 0.0, 0
        for step, batch in enumerate(batches(data, cfg.batch_size, generator), start=1):
            batch = _to(batch, device)
            loss = -objective(batch).mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"{desc}: loss is {loss.item()} at epoch {epoch}, step {step}; lower the "
                    "learning rate, check the inputs for NaN, or resume from the last checkpoint"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            size = len(next(iter(batch.values())))
            total -= loss.item() * size
            count += size
        history.seconds += time.perf_counter() - tic
        history.samples += count
        history.train.append(total / max(count, 1))
        if val_data is not None:
            value = evaluate(model, objective, val_data, cfg.batch_size)
            history.val.append(value)
            if value > best_value:
                best_value, history.best_epoch = value, epoch
                if cfg.restore_best:
                    best_state = copy.deepcopy(model.state_dict())
        else:
            history.best_epoch = epoch
        bar.set_postfix(train=f"{history.train[-1]:.2f}", best=history.best_epoch)
        if ckpt is not None:
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
                    "cuda_rng": torch.cuda.get_rng_state_all()
                    if torch.cuda.is_available()
                    else None,
                    "generator": generator.get_state() if generator is not None else None,
                },
                ckpt,
            )
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
