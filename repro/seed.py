"""Seeding: one call seeds every global RNG and returns the generator to pass around."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["seed_everything", "default_dtype"]


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
