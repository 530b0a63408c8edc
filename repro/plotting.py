"""One plotting style, one ``plot_*`` function per figure, and atomic figure + sidecar saving."""

from __future__ import annotations

import dataclasses
import io
import json
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from repro.config import PROFILES
from repro.io import atomic_write, atomic_write_text
from repro.paths import figures_dir, repo_root

__all__ = ["set_style", "savefig", "sidecar", "tile", "plot_jnf_toy_posteriors"]

VARIANT_TITLES = {
    "gaussian": "(b) Gaussian $q(z|x_1)$",
    "flow": "(c) Normalizing flow $q(z|x_1)$",
    "dcca": "(d) DCCA: $q(z|g_1(x_1))$",
}


def set_style() -> None:
    """Apply the package's seaborn style (called by every ``plot_*``)."""
    import seaborn as sns

    sns.set_theme(context="paper", style="white", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "image.interpolation": "nearest"})


def _versions() -> dict[str, str]:
    import zuko

    import repro

    return {
        "python": platform.python_version(),
        "repro": repro.__version__,
        "torch": torch.__version__,
        "zuko": zuko.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "platform": platform.platform(),
    }


def _git() -> dict[str, Any]:
    try:
        root = repo_root()
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return {"sha": sha, "dirty": bool(dirty)}
    except (OSError, subprocess.CalledProcessError):
        return {"sha": None, "dirty": None}


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def sidecar(
    name: str,
    profile: str,
    config: Any,
    metrics: Mapping[str, Any],
    seconds: float | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON record written next to a figure.

    Args:
        name: figure name.
        profile: ``"quick"`` or ``"full"``.
        config: the experiment config (a dataclass).
        metrics: the figure's key numbers.
        seconds: wall time of the run that produced them.
        details: further numbers.

    Returns:
        ``{"figure", "profile", "config", "metrics", "seconds", "versions", "git",
        "determinism", "details"}``.
    """
    device = getattr(config, "device", "cpu")
    gpu = device != "cpu" and torch.cuda.is_available()
    return _jsonable(
        {
            "figure": name,
            "profile": profile,
            "config": config,
            "metrics": metrics,
            "seconds": None if seconds is None else round(seconds, 1),
            "versions": _versions(),
            "git": _git(),
            "determinism": (
                "GPU run: not bitwise reproducible (GPU reductions); compare with a tolerance"
                if gpu
                else "CPU run: bit-reproducible for the same seed, threads and machine"
            ),
            "details": details or {},
        }
    )


def savefig(
    fig: Figure,
    name: str,
    profile: str,
    *,
    config: Any,
    metrics: Mapping[str, Any],
    seconds: float | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Atomically write ``figures/<profile>/<name>.png``, ``.pdf`` and the ``.json`` sidecar.

    The PDF carries no creation date, so it is byte-stable for the same figure.

    Args:
        fig: the figure.
        name: file stem, ``<paper>_<topic>``.
        profile: ``"quick"`` or ``"full"``.
        config: experiment config recorded in the sidecar.
        metrics: key numbers recorded in the sidecar.
        seconds: run time recorded in the sidecar.
        details: further numbers for the sidecar.

    Returns:
        ``{"png", "pdf", "json"}`` paths.

    Raises:
        ValueError: for an unknown profile or an empty name.
        FileNotFoundError: if the repository (hence ``figures/``) cannot be located.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    if not name or "/" in name:
        raise ValueError(f"figure name must be a plain file stem, got {name!r}")
    folder = figures_dir(profile)
    paths = {ext: folder / f"{name}.{ext}" for ext in ("png", "pdf", "json")}
    record = sidecar(name, profile, config, metrics, seconds, details)
    buffers = {}
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, metadata=meta, bbox_inches="tight")
        buffers[ext] = buffer.getvalue()
    for ext, data in buffers.items():
        atomic_write(paths[ext], lambda handle, data=data: handle.write(data))
    atomic_write_text(paths["json"], json.dumps(record, indent=2, sort_keys=True) + "\n")
    return paths


def tile(images: torch.Tensor, ncols: int, pad: int = 2) -> np.ndarray:
    """Arrange ``(n, S, S)`` images on a grid with ``pad`` pixels of background between them.

    Args:
        images: ``(n, S, S)`` images in ``[0, 1]``.
        ncols: images per row.
        pad: padding in pixels.

    Returns:
        A ``(rows*(S+pad)+pad, ncols*(S+pad)+pad)`` array (background 1.0, i.e. white).
    """
    n, size = images.shape[0], images.shape[-1]
    rows = -(-n // ncols)
    step = size + pad
    canvas = np.ones((rows * step + pad, ncols * step + pad))
    for i, image in enumerate(images.detach().cpu().numpy()):
        r, c = divmod(i, ncols)
        canvas[pad + r * step : pad + r * step + size, pad + c * step : pad + c * step + size] = (
            1.0 - image  # black shapes on white
        )
    return canvas


def _frame(ax: plt.Axes, index: int, ncols: int, size: int, pad: int = 2) -> None:
    r, c = divmod(index, ncols)
    step = size + pad
    ax.add_patch(
        Rectangle(
            (pad + c * step - 1.5, pad + r * step - 1.5), size + 2, size + 2,
            fill=False, edgecolor="red", linewidth=1.5,
        )
    )  # fmt: skip


def plot_jnf_toy_posteriors(result: Any) -> Figure:
    """Fig. 2 of arXiv 2502.03952 from a :class:`repro.experiments.jnf_toy.ToyResult`.

    (a) example pairs; (b)-(d) the joint-posterior means of test pairs coloured by
    ``(2 class - 1) * square size``, the density of ``q(z|x_1)`` for the reference large full
    square (contours at 10, 20, 40, 60, 80 % of its maximum), and circles generated from it,
    framed in red when they are not a clean disc or ring (IoU below the threshold).

    Args:
        result: the experiment result.

    Returns:
        The figure.
    """
    set_style()
    fig = plt.figure(figsize=(17, 4.6), layout="constrained")
    grid = fig.add_gridspec(1, 7, width_ratios=[0.9, 1.6, 0.8, 1.6, 0.8, 1.6, 0.8])
    ax = fig.add_subplot(grid[0])
    pairs = torch.stack([result.samples["square"][:, 0], result.samples["circle"][:, 0]], 1)
    ax.imshow(tile(pairs.flatten(0, 1)[:16], ncols=4), cmap="gray", vmin=0, vmax=1)
    ax.set_title("(a) pairs (square | circle)")
    ax.axis("off")
    lim = float(result.grid.abs().max())
    extent = (-lim, lim)
    levels = [0.1, 0.2, 0.4, 0.6, 0.8]
    size = result.reference.shape[-1]
    scatter, main_axes = None, [ax]
    for k, name in enumerate(("gaussian", "flow", "dcca")):
        ax = fig.add_subplot(grid[1 + 2 * k])
        scatter = ax.scatter(
            result.embedding[:, 0], result.embedding[:, 1], c=result.colour, cmap="RdBu",
            vmin=-0.9, vmax=0.9, s=7, linewidths=0,
        )  # fmt: skip
        density = result.density[name].numpy()
        ax.contour(
            result.grid.numpy(), result.grid.numpy(), density,
            levels=[f * density.max() for f in levels], colors="black", linewidths=0.9,
        )  # fmt: skip
        ax.set(xlim=extent, ylim=extent, aspect="equal", title=VARIANT_TITLES[name])
        ax.set_xlabel("$z_1$")
        ax.set_ylabel("$z_2$")
        inset = ax.inset_axes([0.02, 0.76, 0.22, 0.22])
        inset.imshow(1 - result.reference[0].numpy(), cmap="gray", vmin=0, vmax=1)
        inset.set_xticks([])
        inset.set_yticks([])
        m = result.metrics[name]
        ax.text(
            0.98, 0.02,
            f"coherence {m['class_coherence']:.2f}\nlog q {m['heldout_log_q']:.2f}\n"
            f"unrealistic {m['unrealistic_rate']:.2f}",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
        )  # fmt: skip
        gen_ax = fig.add_subplot(grid[2 + 2 * k])
        gen_ax.imshow(tile(result.shown[name], ncols=4), cmap="gray", vmin=0, vmax=1)
        for i, ok in enumerate(result.shown_realistic[name].tolist()):
            if not ok:
                _frame(gen_ax, i, 4, size)
        gen_ax.set_title("circles from $x_1$", fontsize=9)
        gen_ax.axis("off")
        main_axes += [ax, gen_ax]
    bar = fig.colorbar(scatter, ax=main_axes, shrink=0.8, pad=0.01, aspect=30)
    bar.set_ticks([-0.9, -0.6, -0.3, 0, 0.3, 0.6, 0.9])
    bar.set_ticklabels(["0.9", "0.6", "0.3", "0", "0.3", "0.6", "0.9"])
    bar.set_label("Square size (red: empty, blue: full)")
    return fig
