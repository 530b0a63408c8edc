"""The ``coord`` paper's figures, drawn from the results of its figure modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from repro import explore
from repro.papers.jnf import plot as jnf_plot

if TYPE_CHECKING:
    from repro.papers.coord.bound_hierarchy import BoundHierarchyResult
    from repro.papers.jnf.coherence_fid import CoherenceFIDResult

__all__ = ["cross_coherence", "bound_hierarchy", "conditional_explorer", "bound_explorer"]


def cross_coherence(result: CoherenceFIDResult) -> Figure:
    """Cross-coherence by number of inputs, and one-input coherence against FD (translated).

    The panels of :func:`repro.papers.jnf.plot.coherence_fid`, with CRMVAE's published
    coherences (MultiVae's reproduction on translated PolyMNIST) as the dashed reference.

    Args:
        result: the result of :func:`repro.papers.coord.cross_coherence.run`.

    Returns:
        The figure.
    """
    from repro.papers.coord.cross_coherence import MULTIVAE

    return jnf_plot.coherence_fid(
        result,
        reference={"CRMVAE": MULTIVAE},
        reference_label="CRMVAE, MultiVae's reproduction",
        dataset="translated PolyMNIST",
    )


def bound_hierarchy(result: BoundHierarchyResult) -> Figure:
    """The bound hierarchy: exact gaps against alpha, and trained models' gaps.

    (a) On the linear-Gaussian model, for each posterior family, MVTCAE's gap to its target
    (solid) and JMVAE-KL's gap to its own (dashed), with JMVAE-KL's slack
    ``alpha KL(q(z|X)||p(z))`` (dotted). (b) For each trained image model, its objective at
    ``beta = 1`` and the importance-sampled ``log p(X)`` (a bar spans the gap).

    Args:
        result: the result of :func:`repro.papers.coord.bound_hierarchy.run`.

    Returns:
        The figure.
    """
    import seaborn as sns
    from matplotlib import pyplot as plt

    from repro.plotting import set_style

    set_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.4), layout="constrained")
    colours = dict(zip(result.exact, sns.color_palette("tab10", len(result.exact)), strict=True))
    for fam, s in result.exact.items():
        a = s["alpha"].numpy()
        left.plot(a, s["mvtcae_gap"].numpy(), color=colours[fam], label=f"MVTCAE, {fam} q")
        left.plot(a, s["jmvae_gap"].numpy(), color=colours[fam], linestyle="--",
                  label=f"JMVAE-KL, {fam} q")  # fmt: skip
        left.plot(a, s["jmvae_slack"].numpy(), color=colours[fam], linestyle=":", linewidth=1)
    left.plot([], [], color="grey", linestyle=":", linewidth=1, label="JMVAE-KL's slack")
    e = result.details["exact_model"]
    left.set(
        xlabel=r"$\alpha$", ylabel="gap to the bounded quantity (nats)",
        title=f"(a) exact, linear-Gaussian (M = {e['modalities']}, D = {e['dim']})",
    )  # fmt: skip
    left.legend(fontsize=8, ncols=2)
    names = list(result.trained)
    for i, name in enumerate(names):
        m = result.trained[name]
        right.plot([i, i], [m["objective"], m["log_evidence"]], color="grey", linewidth=3)
        right.scatter([i], [m["objective"]], color="tab:blue", zorder=3,
                      label="objective (beta = 1)" if i == 0 else None)  # fmt: skip
        right.scatter([i], [m["log_evidence"]], color="tab:red", marker="D", zorder=3,
                      label=f"log p(X), K = {result.details['K']}" if i == 0 else None)  # fmt: skip
    right.set_xticks(range(len(names)), names, rotation=30, ha="right")
    right.set(ylabel="nats per test tuple", title="(b) trained models: objective vs log p(X)")
    right.legend(fontsize=9)
    fig.suptitle(
        f"Bound hierarchy of coordination-based VAEs ({result.cfg.profile} profile; trained on "
        f"{result.details['data_source'].split(':')[0]})",
        fontsize=10,
    )
    return fig


def conditional_explorer(
    result: CoherenceFIDResult, n_tuples: int = 20
) -> tuple[Callable[..., Figure], dict[str, explore.Choice]]:
    """The explorer of ``coord_cross_coherence``: one model's conditional samples of a tuple.

    :func:`repro.papers.jnf.plot.conditional_explorer` over this figure's models (the same
    benchmark, on translated PolyMNIST at the intermediate and full profiles).

    Args:
        result: the result of :func:`repro.papers.coord.cross_coherence.run`.
        n_tuples: how many test tuples the slider offers.

    Returns:
        ``(update, choices)`` for :func:`repro.explore.show`.
    """
    return jnf_plot.conditional_explorer(result, n_tuples)


EXACT_VALUES = (  # (key of the sweep, label): the bounded quantities and the objectives
    ("log_evidence", "log p(X)"),
    ("elbo", "ELBO"),
    ("mvtcae_target", "MVTCAE\ntarget"),
    ("mvtcae", "MVTCAE"),
    ("jmvae_target", "JMVAE-KL\ntarget"),
    ("jmvae", "JMVAE-KL"),
)


def bound_explorer(
    result: BoundHierarchyResult,
) -> tuple[Callable[..., Figure], dict[str, explore.Choice]]:
    """The explorer of ``coord_bound_hierarchy``: the exact terms at one alpha, a model's tuples.

    Pick a posterior family and an ``alpha`` of the grid: (a) the exact batch means at that
    ``alpha`` of ``log p(X)``, the ELBO, each objective and its target; (b) the gaps: the
    ELBO's, MVTCAE's, and JMVAE-KL's split into its slack ``alpha (M-1) KL(q(z|X) || p(z))``
    and the rest. Pick a trained model: (c) its objective at ``beta = 1`` against its
    importance-sampled ``log p(X)`` per test tuple, every seed, drawn as
    ``objective - log p(X)`` against ``log p(X)`` so that the gap shows at any scale (a valid
    bound lies below 0). Everything is read from the result (``exact`` and
    ``details["per_seed"]``); a model without numbers says so in text.

    Args:
        result: the result of :func:`repro.papers.coord.bound_hierarchy.run`.

    Returns:
        ``(update, choices)`` for :func:`repro.explore.show`:
        ``update(family="exact", alpha=0.5, model=...)`` returns a figure of about 13 x 4
        inches.
    """
    import torch
    from matplotlib import pyplot as plt

    from repro.plotting import set_style

    families = list(result.exact)
    alphas = [round(float(a), 4) for a in result.details["alpha"]]
    per_seed = result.details.get("per_seed", {})
    names = list(result.trained) or list(per_seed) or ["(none)"]

    def update(
        family: str = families[0], alpha: float = alphas[len(alphas) // 2], model: str = names[0]
    ) -> Figure:
        if family not in result.exact:
            raise ValueError(f"family must be one of {families}, got {family!r}")
        i = min(range(len(alphas)), key=lambda j: abs(alphas[j] - alpha))
        s = {k: float(v[i]) for k, v in result.exact[family].items()}
        set_style()
        fig, (values, gaps, tuples) = plt.subplots(
            1, 3, figsize=(13, 4.0), layout="constrained", width_ratios=[1.5, 1, 1.3]
        )
        labels = [label for _, label in EXACT_VALUES]
        heights = [s[key] for key, _ in EXACT_VALUES]
        colours = ["black", "grey", "tab:blue", "tab:blue", "tab:orange", "tab:orange"]
        hatches = ["", "", "//", "", "//", ""]
        low, high = min(heights), max(heights)
        pad = 0.1 * (high - low) + 1e-3
        base = low - pad  # bars rise from below the lowest value: the differences show
        for k, (h, c, hatch) in enumerate(zip(heights, colours, hatches, strict=True)):
            values.bar(k, h - base, bottom=base, color=c, hatch=hatch, alpha=0.8 if hatch else 1)
        values.set_xticks(range(len(labels)), labels, fontsize=9)
        values.set_ylim(base, high + pad)
        values.set(ylabel="nats (batch mean)", title=f"(a) {family} q, alpha = {alphas[i]:.2f}")
        slack = s["jmvae_slack"]
        gaps.bar(0, s["log_evidence"] - s["elbo"], color="grey")
        gaps.bar(1, s["mvtcae_gap"], color="tab:blue")
        gaps.bar(2, s["jmvae_gap"] - slack, color="tab:orange", label="rest of the gap")
        gaps.bar(2, slack, bottom=s["jmvae_gap"] - slack, color="tab:orange", hatch="..",
                 alpha=0.6, label="JMVAE-KL's slack")  # fmt: skip
        gaps.set_xticks(range(3), ["ELBO", "MVTCAE", "JMVAE-KL"], fontsize=9)
        gaps.set(ylabel="target - objective (nats)", title="(b) the gaps")
        gaps.legend(fontsize=8)
        runs = per_seed.get(model, {})
        if not runs:
            tuples.text(0.5, 0.5, f"no trained numbers of {model} in this result", ha="center",
                        va="center", color="firebrick", transform=tuples.transAxes)  # fmt: skip
            tuples.axis("off")
        else:
            for seed, r in sorted(runs.items()):
                lp = torch.tensor(r["log_evidence"])
                tuples.scatter(lp, torch.tensor(r["objective"]) - lp, s=12, alpha=0.7,
                               label=f"seed {seed}")  # fmt: skip
            tuples.axhline(0, color="black", linewidth=1, label="objective = log p(X)")
            gap = result.trained.get(model, {}).get("gap")
            note = "" if gap is None else f" (mean gap {gap:.1f})"
            tuples.set(
                xlabel=f"log p(X), K = {result.details['K']}",
                ylabel="objective (beta = 1) - log p(X)",
                title=f"(c) {model}, one dot per test tuple{note}",
            )  # fmt: skip
            tuples.legend(fontsize=8)
        fig.suptitle(
            f"Bound hierarchy ({result.cfg.profile} profile): exact terms on the linear-Gaussian "
            "model, and a trained model's objective vs log p(X)",
            fontsize=10,
        )
        return fig

    choices = {
        "family": explore.Choice("posterior", options=families),
        "alpha": explore.Choice(
            "alpha",
            options=alphas,
            default=alphas[len(alphas) // 2],
            names={a: f"{a:.2f}" for a in alphas},
        ),  # fmt: skip
        "model": explore.Choice("model", options=names),
    }
    return update, choices
