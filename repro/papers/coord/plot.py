"""The ``coord`` paper's figures, drawn from the results of its figure modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from repro.papers.jnf import plot as jnf_plot

if TYPE_CHECKING:
    from repro.papers.coord.bound_hierarchy import BoundHierarchyResult
    from repro.papers.jnf.coherence_fid import CoherenceFIDResult

__all__ = ["cross_coherence", "bound_hierarchy"]


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
