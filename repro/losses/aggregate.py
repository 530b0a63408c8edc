"""Objectives of the aggregation-based multimodal VAEs: MVAE, MMVAE, MoPoE and AVG.

Pure per-sample functions: each returns a ``(B,)`` bound to **maximise** and takes the latent
samples (or the log-weights computed from them) as arguments instead of drawing them. The
aggregations themselves (PoE, MoE, MoPoE, AVG) live in :mod:`repro.distributions`; the models
that combine both live in :mod:`repro.models` (``mvae``, ``mmvae``, ``mopoe``, ``avg``).

**Missing modalities.** Reconstruction terms take an optional ``present`` mapping
``{m: (B,) bool}`` (see :func:`presence`); an absent modality's term is dropped for that
sample. Mixture objectives take the mixture weights ``(B, C)``; a component of weight zero (a
subset with an absent member) contributes nothing.

**Conventions.** Stratified mixture samples are laid out ``(K, C, B, D)``: ``K`` draws from
each of the ``C`` components (:func:`repro.distributions.stratified_rsample`), so decoders
evaluated at them have batch ``(K, C, B)``.

**Quirks of public implementations** are flags whose default is the correct form:

* ``kl_per_modality`` (mmvmvae ``mv_joint_vae.py:compute_loss``): the KL to the prior is
  computed once per modality against the same aggregate and summed, i.e. ``M * KL``;
* ``stratified="chunks"``: the batch is cut into ``C`` contiguous chunks and chunk ``c`` draws
  its latent from component ``c`` only, instead of evaluating every component for every
  sample (``stratified="all"``). Two reference codes differ in the KL term:
  ``chunk_kl="chosen"``, the KL of each row's own component (mmvmvae
  ``mv_vae.py:aggregate_latents_moe`` with ``mv_joint_vae.py:compute_loss``), and
  ``chunk_kl="mean"``, the KL averaged over all ``C`` components for every row (the official
  MoPoE ``utils/BaseMMVae.py:forward``, ``divergence_static_prior`` ->
  ``mm_div.py:calc_group_divergence_moe``; MultiVae ``mopoe_model.py:calc_joint_divergence``).
  Both codes give the ``B mod C`` leftover rows to the last component
  (:func:`chunk_components` ``remainder="last"``); ``remainder="random"`` spreads them so that
  every component gets ``B / C`` rows in expectation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution

from repro.losses.bounds import kl, log_likelihood

__all__ = [
    "presence",
    "aggregate_elbo",
    "mvae_elbo",
    "aggregate_log_weights",
    "mmvae_iwae",
    "mmvae_dreg",
    "stratified_elbo",
    "chunk_components",
    "STRATIFIED",
    "CHUNK_KL",
    "REMAINDERS",
]

STRATIFIED = ("all", "chunks")
CHUNK_KL = ("chosen", "mean")  # KL term of stratified="chunks": own component, or all averaged
REMAINDERS = ("last", "random")  # who takes the B mod C leftover rows of the chunks


def presence(mask: Tensor | None, modalities: Sequence[str]) -> dict[str, Tensor] | None:
    """Split a ``(B, M)`` presence mask into ``{m: (B,) bool}``.

    Args:
        mask: ``(B, M)`` bool/0-1 tensor (columns in ``modalities`` order) or ``None``.
        modalities: the column names.

    Returns:
        One ``(B,)`` bool tensor per modality, or ``None`` without a mask.

    Raises:
        ValueError: when the mask has not one column per modality.
    """
    if mask is None:
        return None
    if mask.dim() != 2 or mask.shape[1] != len(modalities):
        raise ValueError(
            f"mask must be (B, {len(modalities)}) with columns {list(modalities)}, "
            f"got {tuple(mask.shape)}"
        )
    return {m: mask[:, i].bool() for i, m in enumerate(modalities)}


def _check_present(present: Mapping[str, Tensor] | None, names: Sequence[str]) -> None:
    if present is not None:
        unknown = sorted(set(present) - set(names))
        if unknown:
            raise ValueError(f"present names unknown modalities {unknown}; decoders: {names}")


def _n_present(px_z: Mapping[str, Distribution], present: Mapping[str, Tensor] | None) -> Tensor:
    """Number of present decoded modalities per sample, ``(B,)`` (or a scalar without mask)."""
    if present is None:
        return torch.tensor(float(len(px_z)))
    counts = [present[m].double() if m in present else 1.0 for m in px_z]
    return sum(counts)


def aggregate_elbo(
    x: Mapping[str, Tensor],
    qz_x: Distribution,
    px_z: Mapping[str, Distribution],
    pz: Distribution,
    z: Tensor,
    present: Mapping[str, Tensor] | None = None,
    beta: float = 1.0,
    weights: Mapping[str, float] | None = None,
    kl_per_modality: bool = False,
) -> Tensor:
    """Joint ELBO with an aggregate posterior: ``E_q[log p(X|z)] - beta KL(q(z|X) || p(z))``.

    The objective of every joint model whose ``q(z|X)`` is one distribution built from the
    unimodal experts: AVG, PoE with or without a prior expert (MVAE's subset terms, MVTCAE-style
    PoE), or any other aggregate. The expectation uses the given samples; the KL is in closed
    form when torch has one (Gaussian aggregates), otherwise estimated at ``z``.

    Args:
        x: observations per modality, ``(B, ...)``.
        qz_x: the aggregate posterior, batch ``(B,)``, event ``(D,)``.
        px_z: decoders evaluated at ``z`` (only these modalities are reconstructed), batch
            ``(K, B)``.
        pz: prior ``p(z)``.
        z: ``(K, B, D)`` samples from ``qz_x``.
        present: optional ``{m: (B,) bool}``; absent modalities' reconstruction terms drop.
        beta: KL weight (``1`` for a bound on ``log p(X)``).
        weights: likelihood rescaling per modality.
        kl_per_modality: **quirk** of the mmvmvae joint models (``mv_joint_vae.py``): the KL is
            computed once per modality against the same aggregate and summed, giving
            ``M * KL(q_agg || p)`` (``M`` = number of present decoded modalities). ``False``
            (default) is the ELBO.

    Returns:
        ``(B,)`` values; with ``beta=1``, no weights and no quirk, a lower bound on
        ``log p(X)`` (``log p(x_S)`` for the decoded subset ``S``).

    References:
        Kingma & Welling, arXiv 1312.6114, Eq. 3 (the ELBO); Sutter et al., arXiv 2403.05300,
        baselines (AVG, PoE; code ``thomassutter/mmvmvae`` ``mv_joint_vae.py``).
    """
    _check_present(present, sorted(px_z))
    rec = log_likelihood(px_z, x, present=present, weights=weights)
    rec = rec.reshape(-1, rec.shape[-1]).mean(0)
    divergence = kl(qz_x, pz, z)
    if kl_per_modality:
        divergence = _n_present(px_z, present).to(divergence) * divergence
    return rec - beta * divergence


def mvae_elbo(joint: Tensor, unimodal: Sequence[Tensor], sampled: Sequence[Tensor] = ()) -> Tensor:
    """MVAE sub-sampled training objective: joint, unimodal and random-subset ELBOs summed.

    ``ELBO(X) + sum_m ELBO(x_m) + sum_{j=1}^k ELBO(X_{S_j})``, each term the ELBO of the PoE
    posterior of its subset reconstructing that subset's modalities only (see
    :func:`aggregate_elbo`); the ``k`` random subsets ``S_j`` (sizes ``2..M-1``) are drawn by
    the caller (:class:`repro.models.mvae.MVAE`).

    Args:
        joint: ``(B,)`` ELBO of all modalities.
        unimodal: ``M`` tensors ``(B,)``, the unimodal ELBOs.
        sampled: ``k`` tensors ``(B,)``, the ELBOs of the random subsets.

    Returns:
        ``(B,)`` objective; each term bounds its subset's evidence, so the sum bounds
        ``log p(X) + sum_m log p(x_m) + sum_j log p(X_{S_j})``.

    Raises:
        ValueError: when the terms have different shapes or are not ``(B,)``.

    References:
        Wu & Goodman, "Multimodal Generative Models for Scalable Weakly-Supervised Learning",
        NeurIPS 2018 (arXiv 1802.05335), the "sub-sampled training paradigm" (the sum of the
        joint, unimodal and ``k`` random-subset ELBOs; equation number unverified).
    """
    terms = [joint, *unimodal, *sampled]
    shapes = {tuple(t.shape) for t in terms}
    if len(shapes) != 1 or joint.dim() != 1:
        raise ValueError(f"mvae_elbo needs (B,) terms of one shape, got {sorted(shapes)}")
    return torch.stack(terms).sum(0)


def aggregate_log_weights(
    x: Mapping[str, Tensor],
    qz_x: Distribution,
    px_z: Mapping[str, Distribution],
    pz: Distribution,
    z: Tensor,
    present: Mapping[str, Tensor] | None = None,
    weights: Mapping[str, float] | None = None,
) -> Tensor:
    """``log w = log p(X|z) + log p(z) - log q(z|X)`` with masked reconstruction terms.

    For a mixture proposal ``q(z|X)`` (MoE, MoPoE) evaluated at stratified samples ``(K, C, B,
    D)``, the denominator is the **mixture** density at every sample, whatever component drew
    it.

    Args:
        x: observations per modality, ``(B, ...)``.
        qz_x: the proposal, batch ``(B,)``; for DReG, built from detached parameters.
        px_z: decoders evaluated at ``z``.
        pz: prior.
        z: ``(..., B, D)`` samples, e.g. ``(K, C, B, D)``.
        present: optional ``{m: (B,) bool}``.
        weights: likelihood rescaling per modality.

    Returns:
        ``(..., B)`` log importance weights.

    References:
        Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", arXiv 1509.00519
        (the weights); Shi et al., arXiv 1911.03393 (the mixture density as proposal).
    """
    rec = log_likelihood(px_z, x, present=present, weights=weights)
    return rec + pz.log_prob(z) - qz_x.log_prob(z)


def _component_weights(weights: Tensor | None, n_comp: int, like: Tensor) -> Tensor:
    """Mixture weights as ``(C, B)`` (uniform ``1/C`` when ``None``)."""
    if weights is None:
        return torch.full((n_comp, 1), 1.0 / n_comp, dtype=like.dtype, device=like.device)
    if weights.dim() != 2 or weights.shape[1] != n_comp:
        raise ValueError(
            f"weights must be the (B, {n_comp}) mixture weights, got {tuple(weights.shape)}"
        )
    return weights.detach().T.to(like.dtype)


def _weighted_sum(values: Tensor, weights: Tensor) -> Tensor:
    """``sum_c pi_c values_c`` over ``(C, B)``, skipping zero-weight components entirely."""
    keep = weights > 0
    terms = torch.where(keep, weights * values, torch.zeros_like(values))
    return terms.sum(0)


def mmvae_iwae(log_w: Tensor, weights: Tensor | None = None) -> Tensor:
    """Stratified importance-weighted bound of a mixture posterior (MMVAE).

    ``L = sum_m pi_m log (1/K sum_k w(z_m^k))`` with ``z_m^k ~ q_m`` and
    ``w = p(X, z) / q_mix(z|X)`` (the mixture density in the denominator). With uniform
    weights this is MMVAE's ``m_iwae_looser``, the paper's objective: the average over
    modalities is outside the log. By Jensen,
    ``L <= log sum_m pi_m E_{q_m}[1/K sum_k w] = log p(X)``; ``K = 1`` gives the stratified
    ELBO of the mixture.

    Args:
        log_w: ``(K, C, B)`` log-weights from :func:`aggregate_log_weights` at stratified
            samples.
        weights: optional ``(B, C)`` mixture weights (uniform when ``None``); zero-weight
            components (absent modalities) are left out.

    Returns:
        ``(B,)`` bounds.

    References:
        Shi, Siddharth, Paige & Torr, "Variational Mixture-of-Experts Autoencoders for
        Multi-Modal Deep Generative Models", NeurIPS 2019 (arXiv 1911.03393), the stratified
        IWAE of the MoE posterior (equation number unverified); code ``iffsid/mmvae``
        ``objectives.py:m_iwae_looser`` (``--obj iwae --looser``).
    """
    if log_w.dim() != 3:
        raise ValueError(f"log_w must be (K, C, B), got {tuple(log_w.shape)}")
    per_component = torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])  # (C, B)
    return _weighted_sum(per_component, _component_weights(weights, log_w.shape[1], log_w))


def mmvae_dreg(log_w: Tensor, z: Tensor, weights: Tensor | None = None) -> Tensor:
    """The MMVAE bound with the doubly-reparameterised (DReG) gradient.

    The value equals :func:`mmvae_iwae`; its gradient is the DReG estimator as in MMVAE's
    ``m_dreg_looser``: ``sum_m pi_m sum_k wt_mk^2 d log w_mk / dz dz/dphi`` for the encoder
    (through the samples, the score term removed) and ``sum_m pi_m sum_k wt_mk d log w_mk``
    for the decoder and prior, with ``wt`` the self-normalised weights within each component.

    Implementation: ``log_w`` must be computed with the **encoder parameters detached inside**
    ``log q`` (a proposal rebuilt from detached parameters) while ``z`` stays reparameterised;
    the surrogate ``s = sum_k wt_k log w_k`` is added as ``value.detach() + (s - s.detach())``
    (exactly the value, since ``s - s.detach()`` is exactly 0), and a
    hook on ``z`` multiplies the gradient reaching ``z`` by ``wt`` (MMVAE's
    ``zss.register_hook``). So ``z`` must feed no other term of the loss, and this function
    must be called once per ``z``.

    **Bias.** For a single component, and for ``K = 1``, the estimator is unbiased for the
    gradient of the bound. For a stratified mixture with ``K > 1`` it is not: the dropped
    score term is that of the mixture density ``q_mix``, not of the component that drew the
    sample, so the reparameterisation identity behind DReG does not apply (tested in
    ``tests/test_losses_aggregate.py``: on a linear-Gaussian model with two experts and
    ``K = 8`` its mean encoder gradient is about half the true one). This is the estimator of
    the reference code; :func:`mmvae_iwae` gives the unbiased (higher-variance) gradient.

    Args:
        log_w: ``(K, C, B)`` log-weights with a stop-gradient proposal (see above).
        z: ``(K, C, B, D)`` the reparameterised samples behind ``log_w``.
        weights: optional ``(B, C)`` mixture weights (uniform when ``None``).

    Returns:
        ``(B,)`` values equal to :func:`mmvae_iwae` of ``log_w``.

    Raises:
        ValueError: when ``z`` does not match ``log_w``.

    References:
        Tucker, Lawson, Gu & Maddison, "Doubly Reparameterized Gradient Estimators for Monte
        Carlo Objectives", ICLR 2019 (arXiv 1810.04152), the IWAE DReG estimator (equation
        number unverified); Shi et al., arXiv 1911.03393, and code ``iffsid/mmvae``
        ``objectives.py:m_dreg_looser`` (``--obj dreg --looser``, the paper's setting).
    """
    if z.shape[:-1] != log_w.shape:
        raise ValueError(
            f"z must be (K, C, B, D) matching log_w {tuple(log_w.shape)}, got {tuple(z.shape)}"
        )
    value = mmvae_iwae(log_w, weights)
    normalised = torch.softmax(log_w.detach(), dim=0)  # (K, C, B)
    if z.requires_grad:
        z.register_hook(lambda grad: grad * normalised.unsqueeze(-1))
    pi = _component_weights(weights, log_w.shape[1], log_w)
    surrogate = _weighted_sum((normalised * log_w).sum(0), pi)
    return value.detach() + (surrogate - surrogate.detach())


def chunk_components(
    batch_size: int,
    n_components: int,
    remainder: str = "last",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Component of every row under the contiguous-chunk stratification.

    Rows ``[c * n, (c + 1) * n)`` use component ``c``, with ``n = floor(B / C)``. The
    ``r = B mod C`` leftover rows (every row when ``B < C``) go:

    * ``remainder="last"``: to the last component, as in every reference code (the official
      MoPoE ``utils/utils.py:mixture_component_selection`` and MultiVae
      ``mopoe_model.py:deterministic_mixture_component_selection`` cut ``floor(B * 1/C)`` rows
      per component and give the rest to the last one; mmvmvae
      ``mv_vae.py:aggregate_latents_moe`` does the same). The last component then weighs
      ``(n + r) / B`` instead of ``1 / C`` (0.4 instead of 1/3 at ``B = 10, C = 3``), and with
      ``B < C`` it takes the whole batch.
    * ``remainder="random"``: row ``C n + j`` to the ``j``-th of ``r`` distinct components drawn
      uniformly without replacement (one ``torch.randperm(C)`` from ``generator``, sorted).
      Every component then has ``n`` or ``n + 1`` rows and exactly ``B / C`` rows in
      expectation, so over steps each component gets equal weight for any batch size. Nothing
      is drawn when ``C`` divides ``B``: both rules then give the same rows.

    Args:
        batch_size: ``B``.
        n_components: ``C``.
        remainder: ``"last"`` or ``"random"`` (see above).
        generator: source of the ``"random"`` draw (``None``: the global RNG).

    Returns:
        ``(B,)`` long component indices.

    Raises:
        ValueError: for ``batch_size`` or ``n_components`` below 1, or an unknown
            ``remainder``.

    References:
        Code ``thomassutter/MoPoE`` ``utils/utils.py:mixture_component_selection``;
        ``thomassutter/mmvmvae`` ``mv_vae.py:aggregate_latents_moe``.
    """
    if batch_size < 1 or n_components < 1:
        raise ValueError(
            f"chunk_components needs batch_size, n_components >= 1, got "
            f"{batch_size}, {n_components}"
        )
    if remainder not in REMAINDERS:
        raise ValueError(f"remainder must be one of {REMAINDERS}, got {remainder!r}")
    size, extra = divmod(batch_size, n_components)
    index = torch.arange(n_components).repeat_interleave(size)  # (C n,)
    if extra == 0:
        return index
    if remainder == "last":
        tail = torch.full((extra,), n_components - 1, dtype=torch.long)
    else:
        device = generator.device if generator is not None else None
        draw = torch.randperm(n_components, generator=generator, device=device)
        tail = draw[:extra].sort().values.cpu()
    return torch.cat([index, tail])


def stratified_elbo(
    log_px_z: Tensor,
    kl_divergence: Tensor,
    weights: Tensor | None = None,
    beta: float = 1.0,
    stratified: str = "all",
    kl_per_modality: bool = False,
    n_modalities: Tensor | int | None = None,
    chunk_kl: str = "chosen",
    index: Tensor | None = None,
) -> Tensor:
    """Stratified ELBO of a mixture: ``sum_c pi_c (E_{q_c}[log p(X|z)] - beta KL(q_c || p))``.

    * **MoPoE** (components = PoEs of the non-empty subsets, uniform weights): the objective of
      the official code, the average over subsets ``S`` of ``E_{q_S} log p(X|z) -
      KL(q_S || p)``. By convexity of the KL,
      ``KL(sum_S pi_S q_S || p) <= sum_S pi_S KL(q_S || p)``, so this lower-bounds the ELBO of
      the mixture posterior, itself a lower bound on ``log p(X)``.
    * **MMVAE** ``m_elbo``-style (components = unimodal experts): ``1/M sum_m ELBO(q_m)``, each
      unimodal posterior reconstructing every modality, the KL in closed form. The reference
      ``m_elbo`` estimates the cross-modal terms by importance-reweighting the self-decoded
      samples; here every component is decoded directly (same expectation).

    Args:
        log_px_z: ``(K, C, B)`` reconstruction log-likelihoods of all (present) modalities at
            ``K`` samples of each component (e.g. :func:`repro.losses.bounds.log_likelihood` at
            stratified samples).
        kl_divergence: ``(C, B)`` ``KL(q_c || p)``.
        weights: optional ``(B, C)`` mixture weights (uniform when ``None``); zero-weight
            components are left out.
        beta: KL weight.
        stratified: ``"all"`` (default) evaluates every component for every sample;
            ``"chunks"`` (the official MoPoE and mmvmvae samplers) takes row ``b``'s
            reconstruction from component ``index[b]`` only (needs uniform weights, i.e. no
            mask).
        kl_per_modality: **quirk** of mmvmvae's joint models: the KL is multiplied by the
            number of modalities ``n_modalities``.
        n_modalities: ``M`` per sample, ``(B,)`` or an int; needed with ``kl_per_modality``.
        chunk_kl: the KL term of ``"chunks"``: ``"chosen"`` (default), row ``b``'s own
            component ``KL(q_{index[b]} || p)`` (mmvmvae); ``"mean"``, ``1/C sum_c KL(q_c ||
            p)`` for every row (the official MoPoE and MultiVae). With ``"mean"`` the value
            averaged over a uniformly random assignment of components is the ``"all"`` value.
        index: ``(B,)`` component of every row for ``"chunks"`` (default
            :func:`chunk_components` ``(B, C)``, the leftover rows to the last component).

    Returns:
        ``(B,)`` values.

    Raises:
        ValueError: for bad shapes, an unknown ``stratified`` or ``chunk_kl``, chunks with
            non-uniform weights, or ``kl_per_modality`` without ``n_modalities``.

    References:
        Sutter, Daunhawer & Vogt, "Generalized Multimodal ELBO", ICLR 2021 (arXiv 2105.02470),
        the MoPoE ELBO (equation number unverified; code ``thomassutter/MoPoE``,
        ``utils/BaseMMVae.py:forward`` and ``run_epochs.py:basic_routine_epoch``: chunk-sampled
        reconstruction plus the subset-averaged KL); ``thomassutter/mmvmvae``
        ``mv_joint_vae.py:compute_loss`` (the chosen component's KL); Shi et al., arXiv
        1911.03393 (code ``iffsid/mmvae`` ``objectives.py:m_elbo``).
    """
    if stratified not in STRATIFIED:
        raise ValueError(f"stratified must be one of {STRATIFIED}, got {stratified!r}")
    if chunk_kl not in CHUNK_KL:
        raise ValueError(f"chunk_kl must be one of {CHUNK_KL}, got {chunk_kl!r}")
    if log_px_z.dim() != 3 or kl_divergence.shape != log_px_z.shape[1:]:
        raise ValueError(
            f"log_px_z must be (K, C, B) and kl_divergence (C, B); got "
            f"{tuple(log_px_z.shape)} and {tuple(kl_divergence.shape)}"
        )
    if kl_per_modality:
        if n_modalities is None:
            raise ValueError("kl_per_modality=True needs n_modalities")
        kl_divergence = torch.as_tensor(n_modalities).to(kl_divergence) * kl_divergence
    per_component = log_px_z.mean(0) - beta * kl_divergence  # (C, B)
    n_comp, batch = per_component.shape
    pi = _component_weights(weights, n_comp, per_component)
    if stratified == "all":
        return _weighted_sum(per_component, pi)
    if not torch.allclose(pi, torch.full_like(pi, 1.0 / n_comp)):
        raise ValueError(
            "stratified='chunks' needs uniform mixture weights (no missing modalities)"
        )
    if index is None:
        index = chunk_components(batch, n_comp)
    if index.shape != (batch,):
        raise ValueError(f"index must be ({batch},), got {tuple(index.shape)}")
    row = index.to(per_component.device).unsqueeze(0)  # (1, B)
    if chunk_kl == "chosen":
        return per_component.gather(0, row).squeeze(0)
    return log_px_z.mean(0).gather(0, row).squeeze(0) - beta * kl_divergence.mean(0)
