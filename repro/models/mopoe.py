"""MoPoE-VAE: a mixture over the products of experts of all subsets of modalities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, MixtureSameFamily, kl_divergence

from repro.distributions import (
    diag_gaussian,
    gaussian_params,
    mixture_of_products,
    product_of_experts,
    rsample,
    select_components,
    stratified_rsample,
)
from repro.losses.aggregate import (
    CHUNK_KL,
    REMAINDERS,
    STRATIFIED,
    chunk_components,
    presence,
    stratified_elbo,
)
from repro.losses.bounds import log_likelihood
from repro.models.base import Batch, MultimodalVAE, require_complete

__all__ = ["MoPoE", "chunked_elbo", "PRIOR_EXPERT"]

PRIOR_EXPERT = (False, True, "full")  # N(0, I) in no product, in every one, in the full set's


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
    *,
    kl: str = "chosen",
    remainder: str = "last",
) -> Tensor:
    """The ``stratified="chunks"`` objective, decoding only each row's own component.

    Row ``b`` uses component ``c_b`` = :func:`repro.losses.aggregate.chunk_components`
    ``(B, C, remainder, generator)[b]``: its ``K`` samples are drawn from that component alone
    and decoded once, so a step decodes ``K * B`` latents instead of ``K * C * B``. The value
    is ``mean_k log p(X_b|z_k) - beta * KL_b`` with ``KL_b = KL(q_{c_b} || p)`` for
    ``kl="chosen"`` (mmvmvae's MoE/MoPoE baselines, the defaults here being those of
    :class:`repro.models.mmvae.MMVAE`'s chunk quirk) or ``KL_b = 1/C sum_c KL(q_c || p)`` for
    ``kl="mean"`` (the official MoPoE code and MultiVae), i.e.
    :func:`repro.losses.aggregate.stratified_elbo` with ``stratified="chunks"``, the same
    ``chunk_kl`` and ``index``.

    The component index is drawn before the latent noise, both from ``generator``.

    Args:
        model: the model (its decoders, prior and modalities).
        x: observations per modality.
        mask: ``(B, M)`` presence mask or ``None``; chunks need complete rows.
        q: the mixture posterior, batch ``(B,)``, ``C`` components.
        K: samples per row.
        beta: KL weight.
        kl_per_modality: the ``M * KL`` quirk.
        generator: source of the leftover rows' components (``remainder="random"``) and of the
            sampling noise.
        likelihood_weights: per-modality likelihood rescaling.
        kl: ``"chosen"`` or ``"mean"`` (see above).
        remainder: who takes the ``B mod C`` leftover rows: ``"last"`` or ``"random"``.

    Returns:
        ``(B,)`` values.

    Raises:
        ValueError: with missing modalities (the chunks need uniform mixture weights), or for
            an unknown ``kl`` or ``remainder``.
    """
    if kl not in CHUNK_KL:
        raise ValueError(f"kl must be one of {CHUNK_KL}, got {kl!r}")
    require_complete(
        mask, "stratified='chunks' needs uniform mixture weights (no missing modalities)"
    )
    batch, n_comp = q.mixture_distribution.probs.shape
    index = chunk_components(batch, n_comp, remainder, generator)
    chosen = select_components(q, index.to(q.mixture_distribution.probs.device))
    z = rsample(chosen, (K,), generator)  # (K, B, D)
    log_px_z = log_likelihood(
        model.decode(z), x, present=presence(mask, model.modalities), weights=likelihood_weights
    )
    if kl == "chosen":
        kls = kl_divergence(chosen, model.prior())  # (B,)
    else:
        kls = kl_divergence(q.component_distribution, model.prior()).mean(-1)  # (B, C) -> (B,)
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

    **Training posterior.** ``q(z|X) = 1/(2^M - 1) sum_S q_S(z|X_S)``, with ``q_S`` the product of
    the experts of the non-empty subset ``S`` (:func:`repro.distributions.mixture_of_products`;
    :meth:`aggregate`). The objective averages over subsets ``E_{q_S} log p(X|z) - beta
    KL(q_S || p)`` (:func:`repro.losses.aggregate.stratified_elbo`), a lower bound on the
    mixture ELBO for ``beta = 1``:

    * ``stratified="all"`` (default): every subset evaluated for every sample;
    * ``stratified="chunks"``: the official code's estimator (:func:`chunked_elbo` with
      ``kl=chunk_kl``): row ``b`` reconstructs from one draw of the subset of its chunk of the
      batch, and with ``chunk_kl="mean"`` (default) its KL term is the KL averaged over
      **all** subsets, ``beta * 1/C sum_S KL(q_S || p)``, as in the official MoPoE
      (``utils/BaseMMVae.py:forward``: ``mixture_component_selection`` for the latent,
      ``divergence_static_prior`` -> ``mm_div.py:calc_group_divergence_moe``, uniform weights
      ``1/C``) and MultiVae (``mopoe_model.py:forward``, ``calc_joint_divergence``).
      ``chunk_kl="chosen"`` takes each row's own subset's KL instead (the MoPoE baseline of
      ``thomassutter/mmvmvae``, ``mv_joint_vae.py:compute_loss``).

    The chunks are ``floor(B / C)`` contiguous rows per subset. The reference codes (official
    ``utils/utils.py:mixture_component_selection``, MultiVae
    ``deterministic_mixture_component_selection``, mmvmvae ``aggregate_latents_moe``) give the
    ``B mod C`` leftover rows to the last subset (the full set), which then weighs more than
    the others (0.4 instead of 1/3 at ``B = 10``, ``M = 2``) and takes the whole batch when
    ``B < C``. Here (``chunk_remainder="random"``, default) the leftover rows go to distinct
    subsets drawn uniformly from the ``generator``, so every subset has exactly ``B / C`` rows
    in expectation, for any batch size; ``chunk_remainder="last"`` is the reference rule. Both
    rules give the same rows when ``C`` divides ``B``.

    **Inference and generation from a subset.** :meth:`posterior` ``(x, S)`` (and so
    :meth:`sample_posterior` and :meth:`generate`) is ``q_S(z|X_S)``, the product of the experts
    of ``S``: the unimodal expert for ``|S| = 1``, the product of all experts for the full set,
    i.e. the training mixture's component of ``S`` (with the prior expert where
    ``poe_prior_expert`` puts one). This is the paper's ``q(z|X_S)`` and what both codes
    condition on: the official ``cond_generation(inference(x)['subsets'])`` samples each
    subset's PoE (the full set's included, with its ``N(0, I)`` expert), and MultiVae's
    ``encode(cond_mod)`` samples ``inference(x)['subsets'][S]`` for every ``S``, also the full
    set (only ``return_mean=True`` on the full set returns the mean of the subset means, the
    mixture's mean). The mixture ``q(z|X)`` itself is ``model.aggregate(model.encode(x))``.

    Missing modalities: only subsets all of whose members are present get weight, and absent
    modalities' reconstruction terms drop out; :meth:`posterior` drops absent experts from
    the product.

    Args:
        encoders: ``{m: module}`` returning diagonal Gaussians ``q(z|x_m)``.
        decoders: ``{m: module}`` returning ``p(x_m|z)``.
        latent_dim: ``D`` (PolyMNIST: 512; MNIST-SVHN-Text: 20).
        beta: KL weight; 2.5 in the official run scripts (``job_polymnist``,
            ``job_mnistsvhntext``), 1 for the bound.
        K: samples per subset.
        poe_prior_expert: ``N(0, I)`` as an extra expert: ``False`` (default) in no product,
            ``True`` in every product, ``"full"`` in the product of all ``M`` modalities only, as
            the official ``BaseMMVae.py:poe_fusion`` and MultiVae ``_poe_fusion`` (which add it
            when the subset has all modalities, in training and in generation).
        stratified: ``"all"`` or ``"chunks"`` (the official estimator; no missing modalities).
        kl_per_modality: the ``M * KL`` quirk of mmvmvae's joint models.
        likelihood_weights: per-modality likelihood rescaling (``None``: the ELBO).
        chunk_kl: KL term of ``"chunks"``: ``"mean"`` (official MoPoE, MultiVae) or
            ``"chosen"`` (mmvmvae).
        chunk_remainder: leftover rows of ``"chunks"``: ``"random"`` (equal weight per subset
            in expectation) or ``"last"`` (the reference codes).

    Raises:
        ValueError: for an unknown ``stratified``, ``chunk_kl``, ``chunk_remainder`` or
            ``poe_prior_expert``, or ``K < 1``.

    References:
        Sutter, Daunhawer & Vogt, "Generalized Multimodal ELBO", ICLR 2021 (arXiv 2105.02470),
        the MoPoE posterior and objective (equation numbers unverified); code
        ``thomassutter/MoPoE``; MultiVae ``src/multivae/models/mopoe/mopoe_model.py``.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        decoders: Mapping[str, nn.Module],
        latent_dim: int,
        beta: float = 2.5,
        K: int = 1,
        poe_prior_expert: bool | str = False,
        stratified: str = "all",
        kl_per_modality: bool = False,
        likelihood_weights: Mapping[str, float] | None = None,
        chunk_kl: str = "mean",
        chunk_remainder: str = "random",
    ) -> None:
        super().__init__(encoders, decoders, latent_dim)
        if stratified not in STRATIFIED:
            raise ValueError(f"stratified must be one of {STRATIFIED}, got {stratified!r}")
        if chunk_kl not in CHUNK_KL:
            raise ValueError(f"chunk_kl must be one of {CHUNK_KL}, got {chunk_kl!r}")
        if chunk_remainder not in REMAINDERS:
            raise ValueError(
                f"chunk_remainder must be one of {REMAINDERS}, got {chunk_remainder!r}"
            )
        if not (isinstance(poe_prior_expert, bool) or poe_prior_expert == "full"):
            raise ValueError(
                f"poe_prior_expert must be one of {PRIOR_EXPERT}, got {poe_prior_expert!r}"
            )
        if K < 1:
            raise ValueError(f"K must be >= 1, got {K}")
        self.beta, self.K, self.poe_prior_expert = beta, K, poe_prior_expert
        self.stratified, self.kl_per_modality = stratified, kl_per_modality
        self.chunk_kl, self.chunk_remainder = chunk_kl, chunk_remainder
        self.likelihood_weights = dict(likelihood_weights) if likelihood_weights else None

    def _prior_expert(self, subset: Sequence[str]) -> Distribution | None:
        """``p(z)`` if the product of ``subset`` takes the prior expert, else ``None``."""
        if self.poe_prior_expert is True:
            return self.prior()
        if self.poe_prior_expert == "full" and sorted(subset) == self.modalities:
            return self.prior()
        return None

    def aggregate(
        self, experts: Mapping[str, Distribution], mask: Tensor | None = None
    ) -> MixtureSameFamily:
        """MoPoE over the subsets of ``experts``; ``mask`` ``(B, |S|)`` drops incomplete ones.

        Args:
            experts: ``{m: q(z|x_m)}`` in sorted order.
            mask: optional ``(B, |S|)`` presence mask, columns in the order of ``experts``.

        Returns:
            The mixture, ``2^|S| - 1`` components ordered as
            :func:`repro.models.base.subsets` (the product of all experts last).
        """
        prior = self.prior() if self.poe_prior_expert is True else None
        q = mixture_of_products(list(experts.values()), prior=prior, mask=mask)
        if self.poe_prior_expert != "full" or sorted(experts) != self.modalities:
            return q
        # the official asymmetry: N(0, I) joins the product of all modalities only
        full = product_of_experts(list(experts.values()), prior=self.prior(), mask=mask)
        loc, scale = gaussian_params(q.component_distribution)  # (B, C, D)
        loc = torch.cat([loc[..., :-1, :], gaussian_params(full)[0].unsqueeze(-2)], -2)
        scale = torch.cat([scale[..., :-1, :], gaussian_params(full)[1].unsqueeze(-2)], -2)
        return MixtureSameFamily(q.mixture_distribution, diag_gaussian(loc, scale))

    def posterior(
        self,
        x: Mapping[str, Tensor],
        subset: Sequence[str] | None = None,
        mask: Tensor | None = None,
    ) -> Distribution:
        """``q_S(z|X_S)``: the product of the experts of ``S`` (see the class docstring).

        Args:
            x: observations; only the subset's modalities are read.
            subset: the conditioning modalities (default: all).
            mask: optional ``(B, M)`` presence mask over all modalities; absent experts drop
                out of the product.

        Returns:
            A diagonal Gaussian with batch ``(B,)`` and event ``(D,)``.

        Raises:
            ValueError: for an invalid subset, missing observations, or a row with no present
                expert and no prior expert.
        """
        subset = self.check_subset(subset)
        missing = [m for m in subset if m not in x]
        if missing:
            raise ValueError(f"posterior over {subset} needs observations of {missing}")
        experts = [self.encoders[m](x[m]) for m in subset]
        prior = self._prior_expert(subset)
        return product_of_experts(experts, prior=prior, mask=self.column_mask(mask, subset))

    def bound(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """The MoPoE objective per sample, ``(B,)``.

        Args:
            batch: observations of every modality, optionally with a presence mask.
            generator: source of the sampling noise (and of the leftover rows' subsets with
                ``stratified="chunks"``, ``chunk_remainder="random"``).

        Returns:
            ``(B,)`` values.
        """
        x, mask, experts = self.encode_batch(batch)
        q = self.aggregate(experts, mask)
        if self.stratified == "chunks":
            return chunked_elbo(
                self, x, mask, q, self.K, self.beta, self.kl_per_modality, generator,
                self.likelihood_weights, kl=self.chunk_kl, remainder=self.chunk_remainder,
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
