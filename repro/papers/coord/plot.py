"""The ``coord`` paper's figures, drawn from the results of its figure modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from repro.papers.jnf import plot as jnf_plot

if TYPE_CHECKING:
    from repro.papers.jnf.coherence_fid import CoherenceFIDResult

__all__ = ["cross_coherence"]


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
