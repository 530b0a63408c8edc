"""The ``mmvm`` paper's figures, drawn from the results of its figure modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from repro.plotting import set_style

if TYPE_CHECKING:
    from repro.papers.mmvm.latents import LatentsResult

__all__ = ["ODOR_COLOURS", "latents"]

ODOR_COLOURS = ("deepskyblue", "tan", "mediumseagreen", "purple")  # odors A-D (the paper's)


def latents(result: LatentsResult) -> Figure:
    """Fig. 4 of arXiv 2403.05300: held-out 2-D posterior means, methods x rats, by odor.

    One row per method; one column per rat and a last column overlaying all rats. Each point
    is one 100-ms sub-window; no projection (the latent is 2-D). Each row is titled with the
    held-out within-rat and across-rat probe accuracies.

    Args:
        result: the experiment result.

    Returns:
        The figure.
    """
    set_style()
    methods = list(result.means)
    rats = list(next(iter(result.means.values())))
    fig, axes = plt.subplots(
        len(methods), len(rats) + 1, figsize=(12, 2.2 * len(methods) + 0.6),
        layout="constrained", squeeze=False,
    )  # fmt: skip
    colours = [ODOR_COLOURS[int(k)] for k in result.label]
    for i, method in enumerate(methods):
        for j, rat in enumerate([*rats, "all rats"]):
            ax = axes[i, j]
            points = (
                result.means[method].values() if rat == "all rats" else [result.means[method][rat]]
            )
            for z in points:
                ax.scatter(z[:, 0], z[:, 1], c=colours, s=3, linewidths=0, alpha=0.7)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(rat, fontsize=10)
        m = result.metrics[method]
        axes[i, 0].set_ylabel(
            f"{method}\nwithin {m['within_rat_accuracy']:.2f}\nacross "
            f"{m['across_rat_accuracy']:.2f}", fontsize=9,
        )  # fmt: skip
    handles = [
        Line2D([], [], marker="o", linestyle="", color=c, label=f"odor {o}")
        for o, c in zip("ABCD", ODOR_COLOURS, strict=True)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=9)
    fig.suptitle(
        f"held-out posterior means ({result.source.split(':')[0]}, {result.cfg.profile} "
        "profile); probe accuracy (chance 0.25)",
        fontsize=10,
    )
    return fig
