"""The figures this package regenerates: name -> notebook, paper, what it shows."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Figure", "FIGURES"]


@dataclass(frozen=True)
class Figure:
    """One reproducible figure.

    Attributes:
        name: ``<paper>_<topic>``; also the stem of the figure files and the notebook.
        paper: paper key (``jnf``, ``iai``, ``mmvm``, ``coord``).
        reproduces: which figure of which paper.
        notebook: path of the notebook, relative to ``notebooks/``.
        experiment: the experiment behind it: its config is
            ``repro.papers.<paper>.settings.get(experiment, profile)`` and its run is
            ``repro.papers.<paper>.<experiment>.run(cfg)``.
    """

    name: str
    paper: str
    reproduces: str
    notebook: str
    experiment: str = ""


FIGURES: dict[str, Figure] = {
    f.name: f
    for f in (
        Figure(
            name="jnf_toy_posteriors",
            paper="jnf",
            reproduces="Senellart & Allassonniere (arXiv 2502.03952), Fig. 2: Gaussian vs flow "
            "vs DCCA unimodal posteriors on toy squares/circles",
            notebook="jnf_toy_posteriors.ipynb",
            experiment="toy_posteriors",
        ),
        Figure(
            name="jnf_coherence_fid",
            paper="jnf",
            reproduces="Senellart & Allassonniere (arXiv 2502.03952), Fig. 4: coherence by number "
            "of inputs and coherence vs FID on PolyMNIST",
            notebook="jnf_coherence_fid.ipynb",
            experiment="coherence_fid",
        ),
        Figure(
            name="mmvm_latents",
            paper="mmvm",
            reproduces="Sutter et al. (arXiv 2403.05300), Fig. 4: 2-D latents of five rats "
            "coloured by odor, independent / AVG / MoPoE / MMVM",
            notebook="mmvm_latents.ipynb",
            experiment="latents",
        ),
        Figure(
            name="mmvm_beta_tradeoff",
            paper="mmvm",
            reproduces="Sutter et al. (arXiv 2403.05300), Fig. 3 (rat version, inferred layout): "
            "latent accuracy and coherence vs reconstruction error over beta",
            notebook="mmvm_beta_tradeoff.ipynb",
            experiment="tradeoff",
        ),
        Figure(
            name="coord_bound_hierarchy",
            paper="coord",
            reproduces="Suzuki & Matsuo (OpenReview Rn8u4MYgeNJ): the bound hierarchy of "
            "coordination-based VAEs, exact on a linear-Gaussian model (MVTCAE and JMVAE-KL "
            "against their targets over alpha) and on the trained image models (objective vs "
            "importance-sampled log p(X))",
            notebook="coord_bound_hierarchy.ipynb",
            experiment="bound_hierarchy",
        ),
        Figure(
            name="coord_cross_coherence",
            paper="coord",
            reproduces="Suzuki & Matsuo (OpenReview Rn8u4MYgeNJ): cross-coherence by number of "
            "inputs and coherence vs FD of coordination-based (JMVAE-KL, MVTCAE, TELBO, CRMVAE) "
            "and mixture-based (MVAE, MMVAE, MoPoE) models on translated PolyMNIST",
            notebook="coord_cross_coherence.ipynb",
            experiment="cross_coherence",
        ),
        Figure(
            name="iai_elbo_iterations",
            paper="iai",
            reproduces="Oshima, Suzuki & Matsuo (arXiv 2410.11403): multimodal ELBO vs "
            "refinement iteration with the PoE source model, cross-modal generations, probe / "
            "similarity table",
            notebook="iai_elbo_iterations.ipynb",
            experiment="elbo_iterations",
        ),
    )
}
