"""The ``mmvm`` paper's figures, drawn from the results of its figure modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from repro.plotting import set_style

if TYPE_CHECKING:
    from repro.papers.mmvm.latents import LatentsResult
    from repro.papers.mmvm.tradeoff import TradeoffResult

__all__ = ["ODOR_COLOURS", "METHOD_STYLE", "latents", "tradeoff"]

ODOR_COLOURS = ("deepskyblue", "tan", "mediumseagreen", "purple")  # odors A-D (the paper's)
METHOD_STYLE = {
    "independent": ("tab:gray", "s"),
    "AVG": ("tab:orange", "^"),
    "MoPoE": ("tab:blue", "D"),
    "MMVM": ("tab:red", "o"),
}  # colour, marker


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
            ax.tick_params(labelsize=8)
            if i == 0:
                ax.set_title(rat, fontsize=10)
            if i == len(methods) - 1:
                ax.set_xlabel("$z_1$", fontsize=9)
        m = result.metrics[method]
        axes[i, 0].set_ylabel(
            f"{method}\nwithin {m['within_rat_accuracy']:.2f}, across "
            f"{m['across_rat_accuracy']:.2f}\n$z_2$", fontsize=9,
        )  # fmt: skip
    handles = [
        Line2D([], [], marker="o", linestyle="", color=c, label=f"odor {o}")
        for o, c in zip("ABCD", ODOR_COLOURS, strict=True)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=9)
    claims = result.details.get("paper_predictions", {})
    verdict_text = "; ".join(f"{claim}: {verdict}" for claim, verdict in claims.items())
    fig.suptitle(
        f"held-out posterior means ({result.source.split(':')[0]}, {result.cfg.profile} "
        "profile); probe accuracy (chance 0.25)" + (f"\n{verdict_text}" if verdict_text else ""),
        fontsize=9,
    )
    return fig


def tradeoff(result: TradeoffResult) -> Figure:
    """Fig. 3 (rat version, inferred layout): accuracy and coherence vs reconstruction error.

    Two panels sharing x = held-out reconstruction error (summed squared error per sample,
    summed over rats): latent accuracy (mean of the per-rat probes) and cross-rat coherence.
    One point per method and beta (seed mean, error bars one standard deviation over seeds on
    both axes), joined in beta order, the marker's size growing with beta (a legend gives the
    sizes: labels on the points piled up where methods share a reconstruction error); chance
    (0.25) dotted.

    Args:
        result: the experiment result.

    Returns:
        The figure.
    """
    set_style()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    panels = (("within_rat_accuracy", "latent accuracy (per-rat probe, held out)"),
              ("coherence", "coherence (cross-rat, held out)"))  # fmt: skip
    all_betas = sorted({b for by_beta in result.metrics.values() for b in by_beta}, key=float)
    sizes = {b: 4 + 4 * i for i, b in enumerate(all_betas)}  # marker size grows with beta
    for ax, (key, ylabel) in zip(axes, panels, strict=True):
        for method, by_beta in result.metrics.items():
            colour, marker = METHOD_STYLE.get(method, ("black", "o"))
            betas = sorted(by_beta, key=float)
            x = [by_beta[b]["reconstruction_error"]["mean"] for b in betas]
            y = [by_beta[b][key]["mean"] for b in betas]
            ax.errorbar(
                x, y,
                xerr=[by_beta[b]["reconstruction_error"]["std"] for b in betas],
                yerr=[by_beta[b][key]["std"] for b in betas],
                color=colour, linewidth=1, capsize=2, label=method,
            )  # fmt: skip
            for b, xi, yi in zip(betas, x, y, strict=True):
                ax.plot([xi], [yi], marker=marker, markersize=sizes[b], color=colour,
                        markeredgecolor="black", markeredgewidth=0.4, linestyle="")  # fmt: skip
        ax.axhline(0.25, color="black", linestyle=":", linewidth=0.8)
        ax.set_xlabel("reconstruction error (summed squared error, held out)")
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=9, title="method", title_fontsize=9)
    beta_handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color="grey",
            markersize=sizes[b],
            label=f"{float(b):g}",
        )  # fmt: skip
        for b in all_betas
    ]
    axes[1].legend(handles=beta_handles, title="beta", fontsize=9, title_fontsize=9)
    n_seeds = len(result.details["seeds"])
    fig.suptitle(
        f"accuracy and coherence vs reconstruction over beta ({result.source.split(':')[0]}, "
        f"{result.cfg.profile} profile; mean +- sd over {n_seeds} seeds; chance dotted)",
        fontsize=10,
    )
    return fig
