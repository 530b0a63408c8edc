"""Unit functions for tests/test_jobs.py (workers import them by name, so not in a test file)."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def train_tiny(seed: int, steps: int = 30) -> dict[str, torch.Tensor]:
    """Fit a tiny MLP to noise with Adam: float results that depend on every step's bits."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed + 100)
    x, y = torch.randn(256, 8, generator=g), torch.randn(256, 1, generator=g)
    for _ in range(steps):
        loss = (net(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def counted(marker_dir: str, name: str, fail: bool = False, delay: float = 0.0) -> str:
    """Append to a marker file (to count calls across processes); optionally raise or wait."""
    import time

    time.sleep(delay)
    path = Path(marker_dir) / f"{name}.calls"
    with path.open("a") as handle:
        handle.write(f"{os.getpid()}\n")
    if fail:
        raise ValueError(f"unit {name} was told to fail")
    return f"result of {name}"


def calls(marker_dir: str, name: str) -> int:
    """How many times :func:`counted` ran for ``name``."""
    path = Path(marker_dir) / f"{name}.calls"
    return len(path.read_text().splitlines()) if path.exists() else 0


def sleepy(folder: str, i: int) -> int:
    """Write this worker's pid, then sleep long (a unit that is still running)."""
    import time

    (Path(folder) / f"{i}.pid").write_text(str(os.getpid()))
    time.sleep(120)
    return i
