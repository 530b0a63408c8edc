"""AVG: the joint VAE whose posterior is the parameter average of the unimodal experts."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from repro.distributions import average_of_experts, rsample
from repro.losses.aggregate import aggregate_elbo, presence
from repro.models.base import Batch, MultimodalVAE

__all__ = ["AVG"]


class AVG(MultimodalVAE):
    """Joint VAE with the averaged posterior of the MMVM paper's baselines (AVG).

    ``q(z|X) = N(mean_m mu_m, diag(mean_m sigma_m^2))``
    (:func:`repro.distributions.average_of_experts`), one sample decoded into every modality,
    the ELBO with that aggregate (:func:`repro.losses.aggregate.aggregate_elbo`).

    Missing modalities: absent experts are left out of both averages and their reconstruction
    terms drop out.

    Args:
        encoders: ``{m: module}`` returning diagonal Gaussians ``q(z|x_m)``.
        decoders: ``{m: module}`` returning ``p(x_m|z)``.
        latent_dim: ``D``.
        beta: KL weight (mmvmvae default 1.0; the benchmarks sweep it).
        K: samples of ``z`` per data point (1 in the code).
        kl_per_modality: the **quirk** of the mmvmvae joint models, ``M * KL(q_agg || p)``
            (off by default: the ELBO).
        likelihood_weights: per-modality likelihood rescaling (``None``: the ELBO).

    Raises:
        ValueError: for ``K < 1``.

    References:
        Sutter, Manduchi, Ryser & Vogt, "Unity by Diversity: Improved Representation Learning
        in Multimodal VAEs", NeurIPS 2024 (arXiv 2403.05300), the AVG baseline; code
        ``thomassutter/mmvmvae`` ``mv_vae.py:aggregate_latents_avg``, ``mv_joint_vae.py``.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        decoders: Mapping[str, nn.Module],
        latent_dim: int,
        beta: float = 1.0,
        K: int = 1,
        kl_per_modality: bool = False,
        likelihood_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(encoders, decoders, latent_dim)
        if K < 1:
            raise ValueError(f"K must be >= 1, got {K}")
        self.beta, self.K, self.kl_per_modality = beta, K, kl_per_modality
        self.likelihood_weights = dict(likelihood_weights) if likelihood_weights else None

    def aggregate(
        self, experts: Mapping[str, Distribution], mask: Tensor | None = None
    ) -> Distribution:
        """Parameter average of the present experts (``mask`` ``(B, |S|)``)."""
        return average_of_experts(list(experts.values()), mask=mask)

    def bound(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """The AVG joint ELBO per sample, ``(B,)``.

        Args:
            batch: observations of every modality, optionally with a presence mask.
            generator: source of the sampling noise.

        Returns:
            ``(B,)`` values.
        """
        x, mask, experts = self.encode_batch(batch)
        q = self.aggregate(experts, mask)
        z = rsample(q, (self.K,), generator)  # (K, B, D)
        return aggregate_elbo(
            x,
            q,
            self.decode(z),
            self.prior(),
            z,
            presence(mask, self.modalities),
            beta=self.beta,
            weights=self.likelihood_weights,
            kl_per_modality=self.kl_per_modality,
        )
