"""Run-time settings: seeding, dtype, device, threads and run identity.

Everything about *where* and *how reproducibly* a run executes lives here, not in the training
loop or in the models: one call seeds every global RNG and returns the generator to pass around;
devices are resolved (and checked) in one place; the run identity of a config is what a
checkpoint must match to be resumed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from repro.paths import cache_dir

__all__ = [
    "seed_everything",
    "default_dtype",
    "resolve_device",
    "model_device",
    "set_threads",
    "RUNTIME_FIELDS",
    "run_identity",
    "checkpoint_path",
]


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed ``random``, numpy and torch, and return a CPU ``torch.Generator``.

    Library code draws data, splits and sampler noise from the returned generator, never from
    global numpy state. The global torch seed still matters for reparameterised samples drawn
    inside models (``Distribution.rsample`` has no generator argument).

    Args:
        seed: a non-negative integer.
        deterministic: also call ``torch.use_deterministic_algorithms(True)``, which makes CPU
            runs bit-reproducible (``warn_only`` so rare GPU kernels without a deterministic
            version still run; GPU runs are reproducible only to a tolerance).

    Returns:
        A ``torch.Generator`` seeded with ``seed``.

    Raises:
        ValueError: if ``seed`` is negative or not an integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (seeds the legacy global state for third parties)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Temporarily set torch's default floating dtype.

    Experiments build their models under a fixed dtype, so that parameter initialisation (which
    draws different random numbers in float32 and float64) does not depend on the caller's.

    Args:
        dtype: e.g. ``torch.float32``.

    Yields:
        Nothing; the previous default is restored on exit.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def resolve_device(device: str) -> torch.device:
    """Turn ``"auto"``, ``"cpu"`` or ``"cuda[:i]"`` into a device, checking availability.

    Args:
        device: the requested device name.

    Returns:
        The ``torch.device``.

    Raises:
        ValueError: for an unknown name, or ``cuda`` without a CUDA device.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", device):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but torch sees no CUDA device; use 'cpu' or 'auto'"
            )
        return torch.device(device)
    raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:<index>'")


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for an empty model)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def set_threads(threads: int) -> None:
    """Set torch's CPU threads; ``0`` keeps torch's default.

    One thread is robust for tiny models on a shared 2-core machine (no OpenMP spinning).

    Args:
        threads: number of threads, or 0.

    Raises:
        ValueError: for a negative number.
    """
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 keeps torch's default), got {threads}")
    if threads:
        torch.set_num_threads(threads)


RUNTIME_FIELDS = frozenset({"progress", "device", "threads", "executor", "workers"})  # no effect
# on the results (an executor runs the same units, bit for bit on a CPU)


def run_identity(cfg: object) -> dict:
    """``asdict(cfg)`` without the fields that do not change results, recursively.

    Progress bars, device and threads are dropped: this is what a checkpoint must match to be
    resumed (a killed run may resume on another device).

    Args:
        cfg: a config dataclass.

    Returns:
        A nested dict.
    """

    def strip(value: object) -> object:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in RUNTIME_FIELDS}
        return value

    return strip(dataclasses.asdict(cfg))


def checkpoint_path(cfg: object, stage: str) -> Path:
    """Checkpoint file of one training stage of a run, keyed by the run's identity.

    ``<cache>/checkpoints/<cfg.name>/<hash>_<stage>.pt``, the hash taken over
    :func:`run_identity`: another config never resumes a stale checkpoint, and a killed run
    resumes on another device or thread count.

    Args:
        cfg: the experiment config (a dataclass with a ``name`` field).
        stage: the stage's label, e.g. ``"joint"``.

    Returns:
        The path (not created here).
    """
    identity = json.dumps(run_identity(cfg), sort_keys=True, default=str)
    key = hashlib.sha1(identity.encode()).hexdigest()
    return (
        cache_dir()
        / "checkpoints"
        / getattr(cfg, "name", type(cfg).__name__)
        / (f"{key[:12]}_{stage}.pt")
    )
