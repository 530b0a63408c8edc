"""The ``iai`` paper's figures, drawn from the results of its figure modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from repro.explore import Choice
from repro.plotting import set_style

if TYPE_CHECKING:
    from repro.papers.iai.elbo_iterations import IterationsResult

__all__ = ["elbo_iterations", "elbo_explorer"]


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
    fig = plt.figure(figsize=(10, 4.2), layout="constrained")
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


def _words(ax: plt.Axes, words: list[str], label: str) -> None:
    """A row of words (text inputs or generations) in an empty axes."""
    ax.axis("off")
    shown = "  ".join(" ".join(w.split()) or "''" for w in words)  # one line, no newlines
    ax.text(0.0, 0.5, f"{label}: {shown}", fontsize=9, va="center", ha="left",
            transform=ax.transAxes)  # fmt: skip


def elbo_explorer(result: IterationsResult) -> tuple[Callable[..., Figure], dict[str, Choice]]:
    """The explorer of ``iai_elbo_iterations``: a slider over the refinement iterate ``t``.

    Left: the mean test ELBO of the chosen refiner at every iteration (band one standard
    deviation over seeds; the other refiners faint), the iterate ``t`` marked. Right: the first
    test tuples (MNIST, SVHN, text) and every modality decoded from the mean of the iterate
    ``q_{lambda_t}(z|X)`` of that refiner (first seed; ``t = 0`` is the PoE source model).
    Drawn from ``result.iterates``, nothing retrained; a result without them says so.

    Args:
        result: the experiment result.

    Returns:
        ``(update, choices)`` for :func:`repro.explore.show`: ``update(t=..., T=...)``
        returns a figure of about 9 x 3.5 inches.
    """
    elbo = result.metrics["elbo"]
    t_eval = max(len(curve) for curve in elbo.values()) - 1
    trained = sorted(int(T) for T in elbo)
    default_T = trained[-1]
    choices = {
        "t": Choice("iterate t", low=0, high=t_eval, default=min(default_T, t_eval)),
        "T": Choice(
            "refiner T",
            options=trained,
            default=default_T,
            names={T: f"trained with T={T}" for T in trained},
        ),  # fmt: skip
    }
    iterates = result.iterates

    def update(t: int = choices["t"].value(), T: int = default_T) -> Figure:
        set_style()
        fig = plt.figure(figsize=(9, 3.5), layout="constrained")
        grid = fig.add_gridspec(4, 3, width_ratios=(1.15, 1, 1), height_ratios=(1, 0.3, 1, 0.3))
        ax = fig.add_subplot(grid[:, 0])
        for key, curve in elbo.items():
            steps = np.arange(len(curve))
            mean = np.array([c["mean"] for c in curve])
            if int(key) != T:
                ax.plot(steps, mean, color="grey", alpha=0.4, linewidth=1, label=f"T={key}")
                continue
            std = np.array([c["std"] for c in curve])
            ax.plot(steps, mean, color="tab:blue", marker="o", markersize=3, label=f"T={key}")
            ax.fill_between(steps, mean - std, mean + std, color="tab:blue", alpha=0.2,
                            linewidth=0)  # fmt: skip
            if t < len(curve):
                ax.axvline(t, color="tab:red", linewidth=1)
                ax.plot([t], [mean[t]], marker="o", markersize=8, color="tab:red")
                ax.set_title(f"t={t}: ELBO {mean[t]:.1f} nats", fontsize=9)
        ax.set_xlabel("refinement iteration t", fontsize=9)
        ax.set_ylabel("test ELBO (nats per tuple)", fontsize=9)
        ax.tick_params(labelsize=9)
        ax.legend(fontsize=9, title="refiner", title_fontsize=9)
        if "input" not in iterates or T not in iterates:
            note = fig.add_subplot(grid[:, 1:])
            note.axis("off")
            note.text(0.5, 0.5, "this result keeps no generations per iterate\n"
                      "(IterationsResult.iterates): run elbo_iterations.run(cfg)\n"
                      "with this version of the code", ha="center", va="center",
                      fontsize=10, transform=note.transAxes)  # fmt: skip
            return fig
        inp, at = iterates["input"], iterates[T]
        t_shown = min(t, len(at["text"]) - 1)
        rows = (
            (0, "input", inp["mnist"].float() / 255, inp["svhn"].float() / 255, inp["text"]),
            (2, f"from $q_{{\\lambda_{{{t_shown}}}}}$", at["mnist"][t_shown].float() / 255,
             at["svhn"][t_shown].float() / 255, at["text"][t_shown]),
        )  # fmt: skip
        for row, label, mnist, svhn, words in rows:
            for col, (images, name) in enumerate(((mnist, "MNIST"), (svhn, "SVHN")), start=1):
                a = fig.add_subplot(grid[row, col])
                a.imshow(_strip(images))
                a.set_xticks([])
                a.set_yticks([])
                a.set_title(f"{name}, {label}", fontsize=9)
            _words(fig.add_subplot(grid[row + 1, 1:]), words, f"text, {label}")
        fig.suptitle(
            f"refiner trained with T={T}: every modality decoded from the iterate mean "
            f"(first seed, first {len(inp['text'])} test tuples)",
            fontsize=10,
        )
        return fig

    return update, choices
