"""MoPoE-VAE: a mixture over the products of experts of all subsets of modalities."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, MixtureSameFamily, kl_divergence

from repro.distributions import (
    mixture_of_products,
    rsample,
    select_components,
    stratified_rsample,
)
from repro.losses.aggregate import (
    STRATIFIED,
    chunk_components,
    presence,
    stratified_elbo,
)
from repro.losses.bounds import log_likelihood
from repro.models.base import Batch, MultimodalVAE, require_complete

__all__ = ["MoPoE", "chunked_elbo"]


def chunked_elbo(
    model: MultimodalVAE,
    x: Mapping[str, Tensor],
    mask: Tensor | None,
    q: MixtureSameFamily,
    K: int,
    beta: float,
    kl_per_modality: bool,
    generator: torch.Generator | None = None,
    likelihood_weights: Mapping[str, float] | None = None,
) -> Tensor:
    """The ``stratified="chunks"`` objective, decoding only each row's own component.

    Row ``b`` uses component :func:`repro.losses.aggregate.chunk_components` ``[b]``: its
    ``K`` samples are drawn from that component alone and decoded once, so a step decodes
    ``K * B`` latents instead of ``K * C * B``. The value is
    :func:`repro.losses.aggregate.stratified_elbo` with ``stratified="chunks"`` (same
    component, same terms).

    Args:
        model: the model (its decoders, prior and modalities).
        x: observations per modality.
        mask: ``(B, M)`` presence mask or ``None``; chunks need complete rows.
        q: the mixture posterior, batch ``(B,)``, ``C`` components.
        K: samples per row.
        beta: KL weight.
        kl_per_modality: the ``M * KL`` quirk.
        generator: source of the sampling noise.
        likelihood_weights: per-modality likelihood rescaling.

    Returns:
        ``(B,)`` values.

    Raises:
        ValueError: with missing modalities (the chunks need uniform mixture weights).
    """
    require_complete(
        mask, "stratified='chunks' needs uniform mixture weights (no missing modalities)"
    )
    batch, n_comp = q.mixture_distribution.probs.shape
    index = chunk_components(batch, n_comp).to(q.mixture_distribution.probs.device)
    chosen = select_components(q, index)
    z = rsample(chosen, (K,), generator)  # (K, B, D)
    log_px_z = log_likelihood(
        model.decode(z), x, present=presence(mask, model.modalities), weights=likelihood_weights
    )
    kls = kl_divergence(chosen, model.prior())  # (B,)
    return stratified_elbo(
        log_px_z.unsqueeze(1),
        kls.unsqueeze(0),
        None,
        beta,
        "all",
        kl_per_modality,
        len(model.modalities),
    )


class MoPoE(MultimodalVAE):
    """Mixture-of-products-of-experts VAE (MoPoE, the generalized multimodal ELBO).

    ``q(z|X) = 1/(2^M - 1) sum_S q_S(z)`` with ``q_S`` the product of the experts of the
    non-empty subset ``S`` (:func:`repro.distributions.mixture_of_products`). The objective is
    that of the official code (:func:`repro.losses.aggregate.stratified_elbo`): the average
    over subsets of ``E_{q_S} log p(X|z) - beta KL(q_S || p)``, every subset evaluated for
    every sample (``stratified="all"``), a lower bound on the mixture ELBO for ``beta = 1``.

    Missing modalities: only subsets all of whose members are present get weight, and absent
    modalities' reconstruction terms drop out.

    Args:
        encoders: ``{m: module}`` returning diagonal Gaussians ``q(z|x_m)``.
        decoders: ``{m: module}`` returning ``p(x_m|z)``.
        latent_dim: ``D`` (PolyMNIST: 512; MNIST-SVHN-Text: 20).
        beta: KL weight; 2.5 in the official run scripts (``job_polymnist``,
            ``job_mnistsvhntext``), 1 for the bound.
        K: samples per subset.
        poe_prior_expert: include ``N(0, I)`` in every product (default off; the official code
            adds it to the full-set product only, an asymmetry not reproduced).
        stratified: ``"all"`` or the ``"chunks"`` quirk (mmvmvae and the official MoPoE
            sampler: contiguous batch chunks, one subset each; no missing modalities).
        kl_per_modality: the ``M * KL`` quirk of mmvmvae's joint models.
        likelihood_weights: per-modality likelihood rescaling (``None``: the ELBO).

    Raises:
        ValueError: for an unknown stratification or ``K < 1``.

    References:
        Sutter, Daunhawer & Vogt, "Generalized Multimodal ELBO", ICLR 2021 (arXiv 2105.02470),
        the MoPoE posterior and objective (equation numbers unverified); code
        ``thomassutter/MoPoE``.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        decoders: Mapping[str, nn.Module],
        latent_dim: int,
        beta: float = 2.5,
        K: int = 1,
        poe_prior_expert: bool = False,
        stratified: str = "all",
        kl_per_modality: bool = False,
        likelihood_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(encoders, decoders, latent_dim)
        if stratified not in STRATIFIED:
            raise ValueError(f"stratified must be one of {STRATIFIED}, got {stratified!r}")
        if K < 1:
            raise ValueError(f"K must be >= 1, got {K}")
        self.beta, self.K, self.poe_prior_expert = beta, K, poe_prior_expert
        self.stratified, self.kl_per_modality = stratified, kl_per_modality
        self.likelihood_weights = dict(likelihood_weights) if likelihood_weights else None

    def aggregate(
        self, experts: Mapping[str, Distribution], mask: Tensor | None = None
    ) -> Distribution:
        """MoPoE over the subsets of ``experts``; ``mask`` ``(B, |S|)`` drops incomplete ones."""
        prior = self.prior() if self.poe_prior_expert else None
        return mixture_of_products(list(experts.values()), prior=prior, mask=mask)

    def bound(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """The MoPoE objective per sample, ``(B,)``.

        Args:
            batch: observations of every modality, optionally with a presence mask.
            generator: source of the sampling noise.

        Returns:
            ``(B,)`` values.
        """
        x, mask, experts = self.encode_batch(batch)
        q = self.aggregate(experts, mask)
        if self.stratified == "chunks":
            return chunked_elbo(
                self, x, mask, q, self.K, self.beta, self.kl_per_modality, generator,
                self.likelihood_weights,
            )  # fmt: skip
        z = stratified_rsample(q, (self.K,), generator)  # (K, C, B, D)
        log_px_z = log_likelihood(
            self.decode(z),
            x,
            present=presence(mask, self.modalities),
            weights=self.likelihood_weights,
        )
        kls = kl_divergence(q.component_distribution, self.prior()).T  # (C, B)
        count = len(self.modalities) if mask is None else mask.sum(1)
        return stratified_elbo(
            log_px_z,
            kls,
            q.mixture_distribution.probs,
            self.beta,
            self.stratified,
            self.kl_per_modality,
            count,
        )
