"""The ``iai`` paper's figures, drawn from the results of its figure modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from repro.plotting import set_style

if TYPE_CHECKING:
    from repro.papers.iai.elbo_iterations import IterationsResult

__all__ = ["elbo_iterations"]


def _strip(images) -> np.ndarray:
    """``(n, C, H, W)`` images in ``[0, 1]`` side by side, ``(H, n*W, 3)``."""
    arr = images.clamp(0, 1).numpy()
    if arr.shape[1] == 1:
        arr = np.repeat(arr, 3, axis=1)
    return np.concatenate(list(arr.transpose(0, 2, 3, 1)), axis=1)


def elbo_iterations(result: IterationsResult) -> Figure:
    """ELBO vs refinement iteration, and cross-modal generations from MNIST per row.

    Left: the mean test ELBO at every iteration ``t`` of each refiner (trained with ``T``
    steps; a marker at ``t = T``), as the gain over the PoE source model (``t = 0``, the
    dotted line, its ELBO in the legend), band one standard deviation over seeds of the gain
    (the source models' seed-to-seed offsets cancel). Right: the MNIST inputs of the first
    test tuples, then the SVHN images and the text decoded from the unimodal MNIST posterior
    mean of the source experts and of each set of aligned students (first seed).

    Args:
        result: the experiment result.

    Returns:
        The figure.
    """
    set_style()
    gens = result.generations
    rows = [r for r in gens if r != "input"]
    fig = plt.figure(figsize=(12, 4.2), layout="constrained")
    grid = fig.add_gridspec(len(rows) + 1, 2, width_ratios=(1, 1.4))
    ax = fig.add_subplot(grid[:, 0])
    gain, source = result.metrics["elbo_gain"], result.metrics["source_elbo"]
    colours = plt.get_cmap("viridis")(np.linspace(0.15, 0.85, max(len(gain), 1)))
    for (T, curve), colour in zip(gain.items(), colours, strict=True):
        t = np.arange(len(curve))
        mean = np.array([c["mean"] for c in curve])
        std = np.array([c["std"] for c in curve])
        ax.plot(t, mean, color=colour, marker="o", markersize=3, label=f"refiner, T={T}")
        ax.fill_between(t, mean - std, mean + std, color=colour, alpha=0.25, linewidth=0)
        if int(T) < len(curve):
            ax.plot([int(T)], [mean[int(T)]], marker="*", markersize=11, color=colour)
    ax.axhline(
        0.0, color="black", linestyle=":",
        label=f"PoE source model ({source['mean']:.0f} nats)",
    )  # fmt: skip
    ax.set_xlabel("refinement iteration t")
    ax.set_ylabel("test ELBO gain over the source model (nats per tuple)")
    ax.legend(fontsize=8, title="star: t = T of training; band: sd over seeds", title_fontsize=7)
    top = fig.add_subplot(grid[0, 1])
    top.imshow(_strip(gens["input"]["mnist"]))
    top.set_ylabel("MNIST\ninput", rotation=0, ha="right", va="center", fontsize=8)
    for i, row in enumerate(rows, start=1):
        a = fig.add_subplot(grid[i, 1])
        a.imshow(_strip(gens[row]["svhn"]))
        a.set_ylabel(row, rotation=0, ha="right", va="center", fontsize=8)
        width = gens[row]["svhn"].shape[-1]
        for j, word in enumerate(gens[row]["text"]):
            a.text((j + 0.5) * width, width + 1, word or "''", ha="center", va="top", fontsize=6)
    for a in fig.axes[1:]:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(
        f"iterative amortized inference on MNIST-SVHN-Text ({result.source.split(':')[0]}, "
        f"{result.cfg.profile} profile, {len(result.details['seeds'])} seeds); right: SVHN "
        "and text generated from MNIST",
        fontsize=10,
    )
    return fig
