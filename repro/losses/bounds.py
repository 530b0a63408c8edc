"""Generic bounds: likelihoods, KL, the ELBO and the importance-weighted bound.

Objectives as pure functions.

Each function returns a quantity to **maximise**: a bound per sample, shape ``(B,)``, or, for
batch-level statistics such as DCCA, a scalar. The caller reduces and negates:
``loss = -elbo(...).mean()``. No function here samples; callers pass the latent samples ``z``,
so each objective can be checked against closed forms (tests/test_losses.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence

__all__ = [
    "log_likelihood",
    "kl",
    "elbo",
    "log_importance_weights",
    "iwae",
]


def log_likelihood(
    px_z: Mapping[str, Distribution],
    x: Mapping[str, Tensor],
    weights: Mapping[str, float] | None = None,
    present: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """Weighted multimodal log-likelihood ``sum_j lambda_j 1[j present] log p(x_j|z)``.

    Args:
        px_z: decoder distributions per modality, batch ``(..., B)``.
        x: observations per modality, ``(B, *event_shape)``.
        weights: optional rescaling ``lambda_j`` per modality (default 1).
        present: optional ``{j: (B,) bool}``; an absent modality's term is 0 (its stored
            value is never read into the sum, so placeholders may be anything). A modality
            missing from ``present`` counts as present.

    Returns:
        ``(..., B)`` log-likelihoods (the leading dims are those of ``z``).

    Raises:
        ValueError: if a decoder has no matching observation, or a weight or ``present``
            names no modality.
    """
    missing = sorted(set(px_z) - set(x))
    if missing:
        raise ValueError(f"no observation for decoded modalities {missing}; x has {sorted(x)}")
    weights = dict(weights or {})
    for what, names in (("weights", weights), ("present", present or {})):
        unknown = sorted(set(names) - set(px_z))
        if unknown:
            raise ValueError(f"{what} name unknown modalities {unknown}; decoders: {sorted(px_z)}")
    total: Tensor | float = 0.0
    for m, p in px_z.items():
        term = weights.get(m, 1.0) * p.log_prob(x[m])
        if present is not None and m in present:
            term = torch.where(present[m], term, torch.zeros_like(term))
        total = total + term
    return total


def kl(q: Distribution, p: Distribution, z: Tensor | None = None) -> Tensor:
    """``KL(q || p)``: closed form when torch has one, else a Monte-Carlo estimate at ``z``.

    Args:
        q: distribution with batch shape ``(B,)``.
        p: distribution broadcastable to ``q``.
        z: ``(..., B, D)`` samples from ``q``, needed only without a closed form.

    Returns:
        ``(B,)`` divergences (estimates are averaged over the leading sample dims).

    Raises:
        ValueError: without a closed form and without ``z``.
    """
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        if z is None:
            raise ValueError(
                f"KL({type(q).__name__} || {type(p).__name__}) has no closed form; pass samples z"
            ) from None
        log_ratio = q.log_prob(z) - p.log_prob(z)
        return log_ratio.reshape(-1, *log_ratio.shape[-1:]).mean(0)


def elbo(
    x: Mapping[str, Tensor],
    qz_x: Distribution,
    px_z: Mapping[str, Distribution],
    pz: Distribution,
    z: Tensor,
    beta: float = 1.0,
    weights: Mapping[str, float] | None = None,
) -> Tensor:
    """Multimodal evidence lower bound (the JNF stage-1 / joint-VAE objective).

    ``E_q[sum_j lambda_j log p(x_j|z)] - beta KL(q(z|X) || p(z))``, the expectation estimated
    with the given samples, the KL in closed form where available.

    Args:
        x: observations per modality, ``(B, ...)``.
        qz_x: joint posterior ``q(z|X)``, batch ``(B,)``, event ``(D,)``.
        px_z: decoders evaluated at ``z``, batch ``(..., B)``.
        pz: prior ``p(z)``.
        z: ``(B, D)`` or ``(K, B, D)`` samples from ``qz_x``.
        beta: KL weight (JNF toy: 0.5, ``beta_prior``).
        weights: likelihood rescaling ``lambda_j``.

    Returns:
        ``(B,)`` bounds; with ``beta=1`` and ``weights=None`` this lower-bounds ``log p(X)``.

    References:
        Senellart & Allassonniere, arXiv 2502.03952, stage 1 (MultiVae ``jnf_model.py:109-146``).
    """
    rec = log_likelihood(px_z, x, weights)
    rec = rec.reshape(-1, rec.shape[-1]).mean(0)
    return rec - beta * kl(qz_x, pz, z)


def log_importance_weights(
    x: Mapping[str, Tensor],
    qz_x: Distribution,
    px_z: Mapping[str, Distribution],
    pz: Distribution,
    z: Tensor,
) -> Tensor:
    """``log w = log p(X|z) + log p(z) - log q(z|X)`` for each sample.

    Args:
        x: observations per modality, ``(B, ...)``.
        qz_x: proposal, batch ``(B,)``.
        px_z: decoders evaluated at ``z``.
        pz: prior.
        z: ``(K, B, D)`` samples from ``qz_x``.

    Returns:
        ``(K, B)`` log importance weights.
    """
    return log_likelihood(px_z, x) + pz.log_prob(z) - qz_x.log_prob(z)


def iwae(log_w: Tensor) -> Tensor:
    """Importance-weighted bound ``log (1/K) sum_k w_k`` (Burda et al. 2016, arXiv 1509.00519).

    Args:
        log_w: ``(K, B)`` log importance weights from :func:`log_importance_weights`.

    Returns:
        ``(B,)`` bounds; ``K = 1`` gives the single-sample ELBO, and the expectation is
        non-decreasing in ``K``.
    """
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])
