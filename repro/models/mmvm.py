"""MMVM VAE: one latent per modality, softly aligned by a mixture-of-experts prior."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from repro.distributions import mixture_of_experts, rsample
from repro.losses.aggregate import presence
from repro.losses.bounds import log_likelihood
from repro.losses.mmvm import MIXTURE_KL, mixture_prior_kl, mmvm_objective
from repro.models.base import Batch, MultimodalVAE

__all__ = ["MMVMVAE", "independent_vaes"]


class MMVMVAE(MultimodalVAE):
    """Multimodal VAE with the data-dependent MMVM mixture prior ("soft sharing").

    Each modality has its own latent ``z_m ~ q(z_m|x_m)`` in a shared ``D``-dimensional space,
    decoded by its own decoder only. The objective (:func:`repro.losses.mmvm.mmvm_objective`)
    is ``sum_m E_{q_m} log p(x_m|z_m) - beta sum_m R_m`` with ``R_m`` the KL of ``q_m`` to
    ``h = alpha N(0, I) + (1 - alpha) (1/M) sum_m' q_m'``
    (:func:`repro.losses.mmvm.mixture_prior_kl`): the public code's pairwise upper bound
    (default) or the exact KL by Monte Carlo. One reparameterised ``z_m`` per modality and
    sample (as in the code); no stop-gradient on the prior components.

    Conditional generation (:meth:`posterior`, :meth:`generate`) uses the uniform mixture of
    the present experts of the subset, ``q(z|x_S) = 1/|S| sum_{m in S} q(z|x_m)``, decoded by
    every decoder.

    Missing modalities: an absent modality's reconstruction and regulariser terms drop, and
    its expert leaves every other modality's mixture prior.

    Published defaults: ``beta = 1.0`` (rats; PolyMNIST sweeps ``2^-7..2^3``, CelebA
    ``0.25..4``); ``alpha = 0`` (MMVM; the benchmarks anneal it from 1 to 0 over 150,000
    steps, not reproduced here: set :attr:`alpha` from a schedule); latent dimension 2 (rats),
    512 (PolyMNIST), 128 (CelebA).

    Args:
        encoders: ``{m: module}`` returning diagonal Gaussians ``q(z|x_m)``.
        decoders: ``{m: module}`` returning ``p(x_m|z)``.
        latent_dim: ``D``.
        beta: regulariser weight.
        alpha: weight of the ``N(0, I)`` component: 0 is MMVM, 1 is independent VAEs exactly,
            ``1/(M+1)`` the code's "mixedpriorstdnorm".
        mixture_kl: ``"pairwise_bound"`` (the public code, default) or ``"mc"`` (the exact
            mixture KL, a deviation offered as an ablation).
        mc_samples: samples of ``z ~ q_m`` for the ``"mc"`` KL (drawn apart from the decoded
            sample; never decoded, so cheap).
        likelihood_weights: per-modality likelihood rescaling (``None``: 1).

    Raises:
        ValueError: for an unknown ``mixture_kl``, ``alpha`` outside ``[0, 1]``, a negative
            ``beta`` or ``mc_samples < 1``.

    References:
        Sutter, Manduchi, Ryser & Vogt, "Unity by Diversity: Improved Representation Learning
        in Multimodal VAEs", NeurIPS 2024 (arXiv 2403.05300), the MMVM VAE (equation numbers
        unverified); code ``thomassutter/mmvmvae`` ``mv_vaes/mv_mixedprior_vae.py``.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        decoders: Mapping[str, nn.Module],
        latent_dim: int,
        beta: float = 1.0,
        alpha: float = 0.0,
        mixture_kl: str = "pairwise_bound",
        mc_samples: int = 8,
        likelihood_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(encoders, decoders, latent_dim)
        if mixture_kl not in MIXTURE_KL:
            raise ValueError(f"mixture_kl must be one of {MIXTURE_KL}, got {mixture_kl!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if mc_samples < 1:
            raise ValueError(f"mc_samples must be >= 1, got {mc_samples}")
        self.beta, self.alpha = beta, alpha
        self.mixture_kl, self.mc_samples = mixture_kl, mc_samples
        self.likelihood_weights = dict(likelihood_weights) if likelihood_weights else None

    def aggregate(
        self, experts: Mapping[str, Distribution], mask: Tensor | None = None
    ) -> Distribution:
        """Uniform mixture of the present experts (``mask`` ``(B, |S|)``)."""
        return mixture_of_experts(list(experts.values()), mask=mask)

    def regularisers(
        self,
        experts: Mapping[str, Distribution],
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``R_m`` of every modality (:func:`repro.losses.mmvm.mixture_prior_kl`).

        Args:
            experts: ``{m: q(z|x_m)}`` for every modality, in :attr:`modalities` order.
            mask: optional ``(B, M)`` presence mask.
            generator: source of the ``"mc"`` samples.

        Returns:
            ``(M, B)`` values (0 for absent modalities).
        """
        components = list(experts.values())
        values = []
        for i, q in enumerate(components):
            z = rsample(q, (self.mc_samples,), generator) if self.mixture_kl == "mc" else None
            own = None if mask is None else mask[:, i]
            values.append(
                mixture_prior_kl(q, components, self.mixture_kl, self.alpha, z, mask, own)
            )
        return torch.stack(values)

    def bound(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """The MMVM objective per sample, ``(B,)``.

        Args:
            batch: observations of every modality, optionally with a presence mask.
            generator: source of the sampling noise (the decoded sample of every modality in
                :attr:`modalities` order, then the ``"mc"`` samples).

        Returns:
            ``(B,)`` values.
        """
        x, mask, experts = self.encode_batch(batch)
        present = presence(mask, self.modalities)
        weights = self.likelihood_weights or {}
        log_px = []
        for m, q in experts.items():
            z = rsample(q, (1,), generator)  # (1, B, D)
            own = None if present is None else {m: present[m]}
            rec = log_likelihood({m: self.decoders[m](z)}, {m: x[m]}, {m: weights.get(m, 1.0)}, own)
            log_px.append(rec.mean(0))
        regs = self.regularisers(experts, mask, generator)  # (M, B)
        return mmvm_objective(torch.stack(log_px), regs, self.beta)


def independent_vaes(
    encoders: Mapping[str, nn.Module],
    decoders: Mapping[str, nn.Module],
    latent_dim: int,
    beta: float = 1.0,
) -> MMVMVAE:
    """The paper's "independent" baseline: ``M`` unimodal VAEs, :class:`MMVMVAE` with alpha 1.

    With ``alpha = 1`` the mixture prior is ``N(0, I)`` and the pairwise form is exactly
    ``KL(q_m || N(0, I))`` in closed form, so the bound is exactly the sum of the ``M``
    unimodal ELBOs (each ``beta``-weighted), as in the code (the same class with
    ``stdnormweight = 1.0``).

    Args:
        encoders: ``{m: module}`` returning diagonal Gaussians ``q(z|x_m)``.
        decoders: ``{m: module}`` returning ``p(x_m|z)``.
        latent_dim: ``D``.
        beta: KL weight.

    Returns:
        The model.

    References:
        Sutter et al., arXiv 2403.05300, the independent baseline; code
        ``thomassutter/mmvmvae`` ``mv_vaes/mv_mixedprior_vae.py`` (alpha = 1).
    """
    return MMVMVAE(encoders, decoders, latent_dim, beta=beta, alpha=1.0)
