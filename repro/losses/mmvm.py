"""The MMVM VAE objective: per-modality ELBOs regularised towards a mixture of all experts.

Every modality ``m`` has its own latent ``z_m ~ q(z_m|x_m)`` and decoder ``p(x_m|z_m)``; the
prior of ``z_m`` is the data-dependent mixture ("MMVM prior")

``h(z_m|X) = alpha N(0, I) + (1 - alpha) (1/M) sum_m' q(z|x_m')``

(the sum includes ``m' = m``), and the objective to maximise is

``E(X) = sum_m E_{q_m} log p(x_m|z_m) - beta sum_m R_m``,

with ``R_m`` the KL of ``q_m`` to ``h`` (:func:`mixture_prior_kl`) or the upper bound on it that
the public code optimises. Pure per-sample functions: they return ``(B,)`` values and take the
latent samples as arguments instead of drawing them.

**The weight alpha.** The public code (``mv_mixedprior_vae.py:compute_loss``) computes
``R = (1/M) sum_m [alpha M KL(q_m || N(0, I)) + (1 - alpha) sum_m' KL(q_m || q_m')]``, i.e.
``R_m = alpha KL(q_m || N(0, I)) + (1 - alpha) (1/M) sum_m' KL(q_m || q_m')``. By convexity of
the KL in its second argument this is an upper bound on ``KL(q_m || h)`` with exactly the
alpha-mixture ``h`` above, so the ``"mc"`` option estimates the KL to that ``h``: ``alpha = 0``
is the MMVM prior, ``alpha = 1`` the standard normal (independent VAEs) and
``alpha = 1/(M+1)`` the uniform mixture of the ``M`` experts and ``N(0, I)`` (the code's
"mixedpriorstdnorm").

**Missing modalities.** An optional ``(B, M)`` presence ``mask`` over the experts removes
absent experts from the mixture (``M`` becomes the number of present experts of each row), and
an absent ``q_m`` (``present[b] = False``) has ``R_m = 0``.

**No stop-gradient.** Gradients reach ``q_m`` and every "prior" component ``q_m'``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence

from repro.distributions import standard_normal

__all__ = ["MIXTURE_KL", "mixture_prior_kl", "mmvm_objective"]

MIXTURE_KL = ("pairwise_bound", "mc")


def _check_mask(mask: Tensor | None, n_experts: int) -> Tensor | None:
    if mask is None:
        return None
    if mask.dim() != 2 or mask.shape[1] != n_experts:
        raise ValueError(
            f"mask must be (B, {n_experts}) (one column per expert), got {tuple(mask.shape)}"
        )
    return mask.bool()


def mixture_prior_kl(
    q_m: Distribution,
    experts: Sequence[Distribution],
    mixture_kl: str = "pairwise_bound",
    alpha: float = 0.0,
    z: Tensor | None = None,
    mask: Tensor | None = None,
    present: Tensor | None = None,
) -> Tensor:
    """The regulariser ``R_m`` of modality ``m``: ``q_m`` against the MMVM mixture prior.

    With ``h = alpha N(0, I) + (1 - alpha) (1/M) sum_m' q_m'`` (``m'`` over every present
    expert, ``q_m`` included):

    * ``"pairwise_bound"`` (the public code):
      ``alpha KL(q_m || N(0, I)) + (1 - alpha) (1/M) sum_m' KL(q_m || q_m')`` in closed form,
      an upper bound on ``KL(q_m || h)`` (convexity); the self term is 0 but counts in ``M``;
    * ``"mc"``: the exact ``KL(q_m || h)`` estimated at ``S`` samples ``z^s ~ q_m``,
      ``mean_s [log q_m(z^s) - log h(z^s)]`` (unbiased; reparameterised if ``z`` is).

    Args:
        q_m: ``q(z|x_m)``, batch ``(B,)``, event ``(D,)`` (a diagonal Gaussian for the
            pairwise bound).
        experts: the ``M`` mixture components ``q(z|x_m')``, batch ``(B,)``, event ``(D,)``,
            including ``q_m`` itself.
        mixture_kl: ``"pairwise_bound"`` or ``"mc"``.
        alpha: weight of the ``N(0, I)`` component, in ``[0, 1]``.
        z: ``(S, B, D)`` samples from ``q_m``; required for ``"mc"``, ignored otherwise.
        mask: optional ``(B, M)`` presence of the experts (columns in ``experts`` order);
            absent experts leave the mixture.
        present: optional ``(B,)`` presence of ``q_m``; absent rows get ``R_m = 0``.

    Returns:
        ``(B,)`` values of ``R_m`` (to be **subtracted**, times ``beta``).

    Raises:
        ValueError: for an unknown ``mixture_kl``, ``alpha`` outside ``[0, 1]``, no experts,
            a mask of the wrong shape, ``"mc"`` without samples, or a present ``q_m`` whose
            mixture is empty (``alpha = 0`` and every expert absent).

    References:
        Sutter, Manduchi, Ryser & Vogt, "Unity by Diversity: Improved Representation Learning
        in Multimodal VAEs", NeurIPS 2024 (arXiv 2403.05300), the MMVM prior and objective
        (equation numbers unverified); code ``thomassutter/mmvmvae``
        ``mv_vaes/mv_mixedprior_vae.py:MVMixedPriorVAE.compute_loss`` (the pairwise form).
    """
    if mixture_kl not in MIXTURE_KL:
        raise ValueError(f"mixture_kl must be one of {MIXTURE_KL}, got {mixture_kl!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if len(experts) == 0:
        raise ValueError("mixture_prior_kl needs at least one expert (the mixture components)")
    mask = _check_mask(mask, len(experts))
    dim = q_m.event_shape[-1]
    like = q_m.mean
    pz = standard_normal(dim, like=like)
    if mask is None:
        count = torch.full(q_m.batch_shape, float(len(experts)), dtype=like.dtype)
        count = count.to(like.device)
    else:
        count = mask.sum(1).to(like.dtype)
    if mixture_kl == "pairwise_bound":
        kls = torch.stack([kl_divergence(q_m, q) for q in experts])  # (M, B)
        if mask is not None:
            kls = torch.where(mask.T, kls, torch.zeros_like(kls))
        pairwise = kls.sum(0) / count.clamp(min=1.0)
        value = alpha * kl_divergence(q_m, pz) + (1.0 - alpha) * pairwise
    else:
        if z is None:
            raise ValueError("mixture_kl='mc' needs samples z ~ q_m of shape (S, B, D)")
        if z.dim() != 3 or z.shape[1:] != like.shape:
            raise ValueError(
                f"z must be (S, B, D) = (S, {', '.join(map(str, like.shape))}), "
                f"got {tuple(z.shape)}"
            )
        value = _mc_mixture_kl(q_m, experts, alpha, z, mask, count, present, pz)
    if present is not None:
        value = torch.where(present.bool(), value, torch.zeros_like(value))
    return value


def _mc_mixture_kl(
    q_m: Distribution,
    experts: Sequence[Distribution],
    alpha: float,
    z: Tensor,
    mask: Tensor | None,
    count: Tensor,
    present: Tensor | None,
    pz: Distribution,
) -> Tensor:
    """``mean_s [log q_m(z^s) - log h(z^s)]`` with ``log h`` by a masked logsumexp."""
    terms, log_weights = [], []
    if alpha > 0.0:
        terms.append(pz.log_prob(z))  # (S, B)
        log_weights.append(torch.full_like(count, math.log(alpha)))
    if alpha < 1.0:
        share = torch.log((1.0 - alpha) / count.clamp(min=1.0))  # (B,)
        for i, q in enumerate(experts):
            terms.append(q.log_prob(z))
            weight = share if mask is None else torch.where(mask[:, i], share, -math.inf)
            log_weights.append(weight)
    logits = torch.stack(log_weights, -1)  # (B, C)
    empty = torch.isinf(logits).all(-1)
    if bool(empty.any()):
        own = torch.ones_like(empty) if present is None else present.bool()
        if bool((empty & own).any()):
            raise ValueError(
                "empty mixture: alpha = 0 and every expert is absent for a row whose q_m is present"
            )
        logits = torch.where(empty.unsqueeze(-1), torch.zeros_like(logits), logits)
    log_h = torch.logsumexp(torch.stack(terms, -1) + logits, -1)  # (S, B)
    return (q_m.log_prob(z) - log_h).mean(0)


def mmvm_objective(log_px: Tensor, regulariser: Tensor, beta: float = 1.0) -> Tensor:
    """``sum_m E_{q_m} log p(x_m|z_m) - beta sum_m R_m`` per sample.

    Args:
        log_px: ``(M, B)`` per-modality reconstruction terms (or ``(..., B)``: every leading
            dim is summed).
        regulariser: ``(M, B)`` values of :func:`mixture_prior_kl` (leading dims summed).
        beta: weight of the regulariser (``>= 0``; the public code's default is 1.0).

    Returns:
        ``(B,)`` values to maximise; with ``beta = 1`` and ``alpha = 1`` the sum of the ``M``
        unimodal ELBOs.

    Raises:
        ValueError: for a negative ``beta`` or terms with different batch sizes.

    References:
        Sutter et al., arXiv 2403.05300, the MMVM objective (equation number unverified).
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if log_px.dim() == 0 or regulariser.dim() == 0 or log_px.shape[-1] != regulariser.shape[-1]:
        raise ValueError(
            "log_px and regulariser must end in the same batch size B, got "
            f"{tuple(log_px.shape)} and {tuple(regulariser.shape)}"
        )
    rec = log_px.reshape(-1, log_px.shape[-1]).sum(0)
    reg = regulariser.reshape(-1, regulariser.shape[-1]).sum(0)
    return rec - beta * reg
