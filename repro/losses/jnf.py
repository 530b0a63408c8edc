"""JNF objectives: the stage-2 joint-to-unimodal fit, subset densities, and DCCA.

Pure functions returning quantities to maximise (see :mod:`repro.losses`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution

__all__ = ["jnf_ljm", "subset_log_density", "canonical_correlations", "dcca"]


def jnf_ljm(qz_xj: Mapping[str, Distribution], z: Tensor) -> Tensor:
    """JNF stage-2 objective ``sum_j log q_j(z|x_j)`` at ``z ~ q(z|X)`` (joint model frozen).

    With ``q(z|X)`` frozen its entropy is constant, so maximising the expectation of this
    minimises ``sum_j KL(q(z|X) || q_j(z|x_j))``, the forward (mass-covering) KL.

    Args:
        qz_xj: unimodal posteriors per modality, batch ``(B,)``, event ``(D,)``.
        z: ``(B, D)`` or ``(K, B, D)`` samples from the frozen joint posterior.

    Returns:
        ``(B,)`` values (averaged over leading sample dims).

    References:
        Senellart & Allassonniere, arXiv 2502.03952, stage 2 (MultiVae ``_compute_ljm``).
    """
    if len(qz_xj) == 0:
        raise ValueError("jnf_ljm needs at least one unimodal posterior")
    total = sum(q.log_prob(z) for q in qz_xj.values())
    return total.reshape(-1, total.shape[-1]).mean(0)


def subset_log_density(
    z: Tensor,
    posteriors: Sequence[Distribution],
    pz: Distribution,
    prior_exponent: float | None = None,
) -> Tensor:
    """Unnormalised ``log p(z|x_S) = sum_{j in S} log q_j(z|x_j) - e log p(z)``.

    With modalities conditionally independent given ``z`` and ``q_j = p(z|x_j)`` exactly,
    ``p(z|x_S) ∝ prod_j p(z|x_j) / p(z)^(|S|-1)``, so the exact exponent is ``e = |S| - 1``.
    The public implementations use ``e = 1`` (exact only for ``|S| = 2``).

    Args:
        z: ``(..., B, D)`` points.
        posteriors: the ``|S|`` unimodal posteriors, batch ``(B,)``.
        pz: prior ``p(z)``.
        prior_exponent: ``e``; ``None`` means ``|S| - 1``.

    Returns:
        ``(..., B)`` unnormalised log densities.

    References:
        Senellart & Allassonniere, arXiv 2502.03952, subset posteriors by PoE + HMC.
    """
    if len(posteriors) == 0:
        raise ValueError("subset_log_density needs at least one posterior")
    exponent = len(posteriors) - 1 if prior_exponent is None else prior_exponent
    return sum(q.log_prob(z) for q in posteriors) - exponent * pz.log_prob(z)


def _inv_sqrt(matrix: Tensor, eps: float) -> Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    keep = values > eps
    values = torch.where(keep, values, torch.ones_like(values))
    inv = torch.where(keep, values.rsqrt(), torch.zeros_like(values))
    return (vectors * inv.unsqueeze(-2)) @ vectors.transpose(-1, -2)


def _whitened_cross_covariance(h1: Tensor, h2: Tensor, r: float, eps: float) -> Tensor:
    """``T = S11^{-1/2} S12 S22^{-1/2}`` with ``Sii = cov(Hi) + r I`` (Andrew et al., Sec. 2)."""
    if h1.shape[0] != h2.shape[0] or h1.shape[0] < 2:
        raise ValueError(f"need two batches of equal size >= 2, got {h1.shape} and {h2.shape}")
    m = h1.shape[0]
    c1 = h1 - h1.mean(0, keepdim=True)
    c2 = h2 - h2.mean(0, keepdim=True)
    s12 = c1.T @ c2 / (m - 1)
    s11 = c1.T @ c1 / (m - 1) + r * torch.eye(h1.shape[1], dtype=h1.dtype, device=h1.device)
    s22 = c2.T @ c2 / (m - 1) + r * torch.eye(h2.shape[1], dtype=h2.dtype, device=h2.device)
    return _inv_sqrt(s11, eps) @ s12 @ _inv_sqrt(s22, eps)


def canonical_correlations(h1: Tensor, h2: Tensor, r: float = 0.0, eps: float = 1e-9) -> Tensor:
    """Canonical correlations of two batches of projections: the singular values of ``T``.

    ``T = S11^{-1/2} S12 S22^{-1/2}`` with ``Sii = cov(Hi) + r I``. This is the published form
    of Andrew et al. (2013), whose ridge regularises only ``S11`` and ``S22``; each value is at
    most 1 (with ``r = 0``, the sample canonical correlations; a ridge only shrinks them).
    Directions whose variance is below ``eps`` are dropped (their correlation is 0).

    Args:
        h1: ``(m, o1)`` projections of modality 1 for a batch of ``m`` samples.
        h2: ``(m, o2)`` projections of modality 2.
        r: ridge added to the two covariances (0: the plain sample statistic).
        eps: eigenvalues below this are dropped in the inverse square roots.

    Returns:
        ``(min(o1, o2),)`` correlations in ``[0, 1]``, sorted in decreasing order.

    Raises:
        ValueError: on mismatched batch sizes or a batch of fewer than 2 samples.

    References:
        Andrew, Arora, Bilmes, Livescu, "Deep Canonical Correlation Analysis", ICML 2013, Sec. 2.
    """
    t = _whitened_cross_covariance(h1, h2, r, eps)
    return torch.linalg.svdvals(t).clamp(max=1.0)


def dcca(
    h: Mapping[str, Tensor],
    top_k: int | None = None,
    r: float = 1e-3,
    eps: float = 1e-9,
    trace_ridge: bool = True,
) -> Tensor:
    """Deep CCA training objective: the ``top_k`` regularised correlations, summed over pairs.

    Batch-level (scalar), not per sample: correlations are statistics of the whole batch.
    The DCCA loss is its negative. Per pair it is ``sum_k sqrt(eig_k(T^T T + r I))``, ``T`` as
    in :func:`canonical_correlations` with the ridge ``r`` on both covariances. The extra
    ``+ r I`` on ``T^T T`` (``trace_ridge=True``, the default) is what the public DCCA code and
    the JNF-Shared implementation optimise; it keeps the square root differentiable at zero
    correlations, but lets a value exceed 1 (``sqrt(rho^2 + r)``), so this is an *objective*,
    not a correlation: report :func:`canonical_correlations` instead. ``trace_ridge=False`` is
    the published form of Andrew et al., which regularises only ``S11`` and ``S22``.

    Args:
        h: projections ``g_j(x_j)`` per modality, each ``(m, o)``; at least two modalities.
        top_k: number of largest correlations kept per pair (``None``: all of them; the JNF
            toy uses 1, and the reference notes that keeping all "generally leads to NaN").
        r: ridge, as in :func:`canonical_correlations`.
        eps: eigenvalue floor, as in :func:`canonical_correlations`.
        trace_ridge: also add ``r I`` to ``T^T T`` (the public implementations).

    Returns:
        A scalar to maximise.

    References:
        Andrew, Arora, Bilmes, Livescu, "Deep Canonical Correlation Analysis", ICML 2013;
        Senellart & Allassonniere, arXiv 2502.03952 (JNF-Shared projectors).
    """
    if len(h) < 2:
        raise ValueError(f"dcca needs at least two modalities, got {sorted(h)}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be None or >= 1, got {top_k}")
    total = 0.0
    for a, b in itertools.combinations(sorted(h), 2):
        t = _whitened_cross_covariance(h[a], h[b], r, eps)
        tt = t.T @ t
        if trace_ridge:
            tt = tt + r * torch.eye(t.shape[1], dtype=t.dtype, device=t.device)
        corr = torch.linalg.eigvalsh(tt).clamp(min=eps).flip(0).sqrt()
        total = total + (corr if top_k is None else corr[:top_k]).sum()
    return total
