"""The ``mmvm`` paper's figures, drawn from the results of its figure modules."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from repro.explore import Choice
from repro.plotting import set_style

if TYPE_CHECKING:
    from torch import Tensor

    from repro.papers.mmvm.latents import LatentsResult
    from repro.papers.mmvm.tradeoff import TradeoffResult

__all__ = [
    "ODOR_COLOURS",
    "METHOD_STYLE",
    "latents",
    "tradeoff",
    "latents_explorer",
    "tradeoff_explorer",
]

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
        len(methods), len(rats) + 1, figsize=(10, 2.0 * len(methods) + 0.6),
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
    verdict_text = textwrap.fill(  # wrapped: a long line would widen the figure past Lab's width
        "; ".join(f"{claim}: {verdict}" for claim, verdict in claims.items()), 120
    )
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


ALL = "all"  # the explorers' "no filter" option
RAT_MARKERS = ("o", "s", "^", "D", "v", "P", "X")  # one per rat where rats are overlaid


def _odor_scatter(
    ax: plt.Axes,
    means: dict[str, Tensor],
    label: Tensor,
    rat: str = ALL,
    odor: int | str = ALL,
) -> int:
    """Posterior means by odor (colour) and rat (marker), the points outside the filter grey.

    Returns:
        The number of points shown in colour.
    """
    keep_odor = torch.ones_like(label, dtype=torch.bool) if odor == ALL else label == int(odor)
    shown = 0
    for k, (r, z) in enumerate(means.items()):
        marker = RAT_MARKERS[k % len(RAT_MARKERS)]
        if rat != ALL and r != rat:
            ax.scatter(z[:, 0], z[:, 1], c="0.88", s=3, linewidths=0, marker=marker)
            continue
        ax.scatter(z[~keep_odor, 0], z[~keep_odor, 1], c="0.75", s=3, linewidths=0,
                   marker=marker)  # fmt: skip
        colours = [ODOR_COLOURS[int(o)] for o in label[keep_odor]]
        ax.scatter(z[keep_odor, 0], z[keep_odor, 1], c=colours, s=9, linewidths=0, alpha=0.8,
                   marker=marker)  # fmt: skip
        shown += int(keep_odor.sum())
    ax.set_xlabel("$z_1$", fontsize=9)
    ax.set_ylabel("$z_2$", fontsize=9)
    ax.tick_params(labelsize=9)
    odors = sorted({int(o) for o in label[keep_odor]})
    handles = [Line2D([], [], marker="o", linestyle="", color=ODOR_COLOURS[o],
                      label="ABCD"[o] if o < 4 else str(o)) for o in odors]  # fmt: skip
    if handles:
        ax.legend(handles=handles, title="odor", fontsize=9, title_fontsize=9, loc="best")
    return shown


def _odor_choice(label: Tensor) -> Choice:
    odors = sorted({int(o) for o in label})
    names = {o: f"odor {'ABCD'[o] if o < 4 else o}" for o in odors}
    return Choice("odor", options=[ALL, *odors], names={ALL: "all odors", **names})


def latents_explorer(result: LatentsResult) -> tuple[Callable[..., Figure], dict[str, Choice]]:
    """The explorer of ``mmvm_latents``: method, rat and odor filters on the latent scatter.

    Left: the held-out posterior means of the chosen method, the chosen rat's (or every rat's,
    one marker per rat) sub-windows of the chosen odor coloured by odor, the others grey.
    Right: that method's held-out probe accuracy per rat and on all rats stacked, the chosen
    rat marked, chance dotted. Drawn from the result alone.

    Args:
        result: the experiment result.

    Returns:
        ``(update, choices)`` for :func:`repro.explore.show`: ``update(method=..., rat=...,
        odor=...)`` returns a figure of about 9 x 3.5 inches.
    """
    methods = list(result.means)
    rats = list(next(iter(result.means.values())))
    default = "MMVM" if "MMVM" in methods else methods[0]
    choices = {
        "method": Choice("method", options=methods, default=default),
        "rat": Choice("rat", options=[ALL, *rats], names={ALL: "all rats"}),
        "odor": _odor_choice(result.label),
    }

    def update(method: str = default, rat: str = ALL, odor: int | str = ALL) -> Figure:
        set_style()
        fig, (ax, bars) = plt.subplots(
            1, 2, figsize=(9, 3.5), layout="constrained", width_ratios=(1.3, 1)
        )
        n = _odor_scatter(ax, result.means[method], result.label, rat, odor)
        m = result.metrics[method]
        ax.set_title(
            f"{method}: {'all rats' if rat == ALL else rat}, "
            f"{choices['odor'].names.get(odor, odor) if odor != ALL else 'all odors'} "
            f"({n} sub-windows)",
            fontsize=9,
        )
        probe = result.details.get(method, {}).get("probe_held_out", {})
        keys = [k for k in (*rats, "all") if k in probe]
        colours = ["tab:red" if (k == rat or (rat == ALL and k == "all")) else "tab:grey"
                   for k in keys]  # fmt: skip
        bars.bar(range(len(keys)), [probe[k] for k in keys], color=colours)
        bars.set_xticks(range(len(keys)), ["all rats" if k == "all" else k for k in keys],
                        fontsize=9, rotation=30)  # fmt: skip
        bars.axhline(0.25, color="black", linestyle=":", linewidth=0.8)
        bars.set_ylim(0, 1)
        bars.tick_params(labelsize=9)
        bars.set_ylabel("held-out probe accuracy", fontsize=9)
        bars.set_title(
            f"within {m['within_rat_accuracy']:.2f}, across {m['across_rat_accuracy']:.2f}, "
            f"coherence {m['coherence']:.2f}",
            fontsize=9,
        )
        return fig

    return update, choices


def tradeoff_explorer(result: TradeoffResult) -> tuple[Callable[..., Figure], dict[str, Choice]]:
    """The explorer of ``mmvm_beta_tradeoff``: one (method, beta) of the Fig. 3 grid.

    Left and middle: latent accuracy and coherence against reconstruction error, every
    (method, beta) point faint and the chosen one marked (seed mean, error bars one standard
    deviation over seeds). Right: the held-out posterior means of that model (first model
    seed, every rat, one marker per rat) coloured by odor. A (method, beta) that was not run,
    or a result without latents, says so in text; nothing is retrained.

    Args:
        result: the experiment result.

    Returns:
        ``(update, choices)`` for :func:`repro.explore.show`: ``update(method=..., beta=...)``
        returns a figure of about 9 x 3.5 inches.
    """
    methods = list(result.metrics)
    betas = sorted({b for by_beta in result.metrics.values() for b in by_beta}, key=float)
    default = "MMVM" if "MMVM" in methods else methods[0]
    choices = {
        "method": Choice("method", options=methods, default=default),
        "beta": Choice("beta", options=betas, default=betas[len(betas) // 2]),
    }
    panels = (("within_rat_accuracy", "latent accuracy (held out)"),
              ("coherence", "coherence (held out)"))  # fmt: skip

    def update(method: str = default, beta: str = choices["beta"].value()) -> Figure:
        set_style()
        fig, axes = plt.subplots(1, 3, figsize=(9, 3.5), layout="constrained")
        cell = result.metrics.get(method, {}).get(beta)
        for ax, (key, ylabel) in zip(axes[:2], panels, strict=True):
            for name, by_beta in result.metrics.items():
                colour, marker = METHOD_STYLE.get(name, ("black", "o"))
                order = sorted(by_beta, key=float)
                x = [by_beta[b]["reconstruction_error"]["mean"] for b in order]
                y = [by_beta[b][key]["mean"] for b in order]
                ax.plot(x, y, color=colour, marker=marker, markersize=4, linewidth=0.8,
                        alpha=0.35, label=name)  # fmt: skip
            if cell is not None:
                colour, marker = METHOD_STYLE.get(method, ("black", "o"))
                ax.errorbar(
                    [cell["reconstruction_error"]["mean"]], [cell[key]["mean"]],
                    xerr=[cell["reconstruction_error"]["std"]], yerr=[cell[key]["std"]],
                    color=colour, marker=marker, markersize=10, markeredgecolor="black",
                    capsize=3,
                )  # fmt: skip
                ax.set_title(f"{method}, beta {beta}: {cell[key]['mean']:.2f}", fontsize=9)
            ax.axhline(0.25, color="black", linestyle=":", linewidth=0.8)
            ax.set_xlabel("reconstruction error (held out)", fontsize=9)
            ax.set_ylabel(ylabel, fontsize=9)
            ax.tick_params(labelsize=9)
        axes[0].legend(fontsize=9, loc="best")
        right = axes[2]
        means = result.latents.get(method, {}).get(beta)
        if cell is None or means is None or result.latent_label is None:
            why = ("this (method, beta) was not run" if cell is None else
                   "this result keeps no latents\n(TradeoffResult.latents): run\n"
                   "tradeoff.run(cfg) with this\nversion of the code")  # fmt: skip
            right.axis("off")
            right.text(0.5, 0.5, why, ha="center", va="center", fontsize=9,
                       transform=right.transAxes)  # fmt: skip
        else:
            _odor_scatter(right, means, result.latent_label)
            right.set_title(f"posterior means, seed {result.details['seeds'][0]}", fontsize=9)
        return fig

    return update, choices
