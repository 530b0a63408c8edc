"""Diagonal-Gaussian utilities and aggregations of experts: PoE, MoE, MoPoE and AVG.

Every posterior in ``repro`` is a ``torch.distributions`` object. Diagonal Gaussians are
``Independent(Normal(loc, scale), 1)`` with event shape ``(D,)``; mixtures are
``MixtureSameFamily`` objects over diagonal Gaussians. Helpers here build, combine and sample
them with an explicit ``torch.Generator``. Every aggregation takes an optional ``(B, M)``
presence mask: an absent expert contributes nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
    TransformedDistribution,
)

__all__ = [
    "diag_gaussian",
    "gaussian_params",
    "standard_normal",
    "product_of_experts",
    "mixture_of_experts",
    "mixture_of_products",
    "average_of_experts",
    "rsample",
    "stratified_rsample",
    "select_components",
]


def diag_gaussian(loc: Tensor, scale: Tensor) -> Independent:
    """Build a diagonal Gaussian with event shape ``(D,)``.

    Args:
        loc: ``(..., D)`` means.
        scale: ``(..., D)`` positive standard deviations.

    Returns:
        ``Independent(Normal(loc, scale), 1)``.
    """
    return Independent(Normal(loc, scale), 1)


def gaussian_params(dist: Distribution) -> tuple[Tensor, Tensor]:
    """Return ``(loc, scale)`` of a diagonal Gaussian built by :func:`diag_gaussian`.

    Args:
        dist: an ``Independent(Normal, 1)``.

    Returns:
        ``(loc, scale)``, each ``(..., D)``.

    Raises:
        ValueError: for any other distribution.
    """
    if isinstance(dist, Independent) and isinstance(dist.base_dist, Normal):
        if dist.reinterpreted_batch_ndims == 1:
            return dist.base_dist.loc, dist.base_dist.scale
    raise ValueError(
        f"expected a diagonal Gaussian Independent(Normal(...), 1), got {type(dist).__name__}; "
        "build experts with repro.distributions.diag_gaussian"
    )


def standard_normal(dim: int, like: Tensor | None = None) -> Independent:
    """The prior ``N(0, I_dim)``, on the device and dtype of ``like`` when given.

    Args:
        dim: latent dimension ``D``.
        like: optional tensor whose device and dtype are used.

    Returns:
        A diagonal Gaussian with event shape ``(D,)`` and empty batch shape.
    """
    kwargs = {} if like is None else {"device": like.device, "dtype": like.dtype}
    return diag_gaussian(torch.zeros(dim, **kwargs), torch.ones(dim, **kwargs))


def _out_of_range(var: Tensor, loc: Tensor) -> bool:
    """True when a direct precision or variance formula under- or overflowed somewhere.

    ``1/s^2`` overflows and ``s^2`` underflows in float32 for scales below about 1e-19 (a
    posterior that has become nearly deterministic); the variance then comes out as 0, inf or
    a subnormal and the mean as inf or NaN.
    """
    return not (
        bool((var >= torch.finfo(var.dtype).tiny).all())
        and bool(torch.isfinite(var).all())
        and bool(torch.isfinite(loc).all())
    )


def _log_space_products(
    locs: Tensor, scales: Tensor, select: Tensor, prior: Distribution | None = None
) -> tuple[Tensor, Tensor]:
    """Products of Gaussian experts computed from log-precisions (no under- or overflow).

    Product ``c`` of the experts ``m`` with ``select[c, m]`` (and the prior expert in every
    product, when given): ``log(1/s^2) = logsumexp_m (-2 log s_m)`` and ``mu = sum_m
    softmax_m(-2 log s_m) mu_m``. Equal to the direct formulas; used only where those leave
    the floating-point range.

    Args:
        locs: ``(M, *batch, D)`` expert means.
        scales: ``(M, *batch, D)`` expert standard deviations.
        select: bool ``(C, M, ...)`` with ``locs.dim() + 1`` dimensions, broadcastable to
            ``(C, M, *batch, D)``; every product needs at least one member.
        prior: optional prior expert, a diagonal Gaussian broadcastable to ``(*batch, D)``.

    Returns:
        ``(loc, scale)``, each ``(C, *batch, D)``.
    """
    if prior is not None:
        p_loc, p_scale = (t.expand_as(locs[0]).unsqueeze(0) for t in gaussian_params(prior))
        locs, scales = torch.cat([locs, p_loc]), torch.cat([scales, p_scale])
        select = torch.cat([select, torch.ones_like(select[:, :1])], dim=1)
    log_prec = (-2.0 * scales.log()).unsqueeze(0)
    log_prec = torch.where(select, log_prec, torch.full_like(log_prec, -math.inf))
    log_precision = torch.logsumexp(log_prec, dim=1)  # (C, *batch, D)
    weights = torch.exp(log_prec - log_precision.unsqueeze(1))
    return (weights * locs.unsqueeze(0)).sum(1), torch.exp(-0.5 * log_precision)


def product_of_experts(
    experts: Sequence[Distribution],
    prior: Distribution | None = None,
    mask: Tensor | None = None,
) -> Independent:
    """Product of diagonal-Gaussian experts, renormalised (a Gaussian again).

    Precision and mean: ``1/s^2 = sum_m 1/s_m^2`` and ``mu = s^2 sum_m mu_m / s_m^2``, where the
    sum runs over the experts and, when given, the prior expert (MVAE convention; without it,
    the MVTCAE/CRMVAE convention).

    Args:
        experts: diagonal Gaussians with broadcastable batch shapes ``(B,)`` and event ``(D,)``.
        prior: optional prior expert, e.g. :func:`standard_normal`.
        mask: optional ``(B, M)`` bool/0-1 tensor; ``mask[b, m] == 0`` drops expert ``m`` for
            sample ``b`` (a missing modality). Rows with every expert masked need a prior.

    Returns:
        The product as a diagonal Gaussian with batch shape ``(B,)``.

    Raises:
        ValueError: with no experts, a mask of the wrong shape, or an empty product.

    References:
        Wu & Goodman, "Multimodal Generative Models for Scalable Weakly-Supervised Learning",
        NeurIPS 2018 (arXiv 1802.05335), Eq. 3.
    """
    if len(experts) == 0:
        raise ValueError("product_of_experts needs at least one expert")
    params = [gaussian_params(e) for e in experts]
    locs = torch.stack(torch.broadcast_tensors(*[p[0] for p in params]))  # (M, B, D)
    scales = torch.stack(torch.broadcast_tensors(*[p[1] for p in params]))  # (M, B, D)
    precisions = scales.pow(-2)
    mask = _check_mask(mask, len(experts))
    if mask is not None:
        keep = mask.T.unsqueeze(-1)  # (M, B, 1)
        precisions = torch.where(keep, precisions, torch.zeros_like(precisions))
    precision = precisions.sum(0)
    weighted = (precisions * locs).sum(0)
    if prior is not None:
        p_loc, p_scale = gaussian_params(prior)
        precision = precision + p_scale.pow(-2)
        weighted = weighted + p_loc * p_scale.pow(-2)
    if bool((precision <= 0).any()):
        raise ValueError("empty product: every expert is masked for some sample and no prior")
    var = precision.reciprocal()
    loc = weighted * var
    if _out_of_range(var, loc):  # nearly deterministic experts: redo it in log space
        every = torch.ones(locs.shape[:1] + (1,) * (locs.dim() - 1), dtype=torch.bool)
        select = every.to(locs.device) if mask is None else keep  # (M, B or 1, 1)
        loc, scale = _log_space_products(locs, scales, select.unsqueeze(0), prior)
        return diag_gaussian(loc[0], scale[0])
    return diag_gaussian(loc, var.sqrt())


def _check_mask(mask: Tensor | None, n_experts: int) -> Tensor | None:
    """Validate a ``(B, M)`` presence mask and return it as bool (or ``None``)."""
    if mask is None:
        return None
    if mask.dim() != 2 or mask.shape[1] != n_experts:
        raise ValueError(
            f"mask must have shape (B, {n_experts}) (one column per expert), "
            f"got {tuple(mask.shape)}"
        )
    return mask.bool()


def _stacked_params(experts: Sequence[Distribution], dim: int) -> tuple[Tensor, Tensor]:
    """``(loc, scale)`` of the experts, broadcast to one batch shape and stacked at ``dim``."""
    params = [gaussian_params(e) for e in experts]
    locs = torch.stack(torch.broadcast_tensors(*[p[0] for p in params]), dim=dim)
    scales = torch.stack(torch.broadcast_tensors(*[p[1] for p in params]), dim=dim)
    return locs, scales


def _mixture(locs: Tensor, scales: Tensor, logits: Tensor) -> MixtureSameFamily:
    """A mixture of diagonal Gaussians whose categorical has the components' batch shape.

    Args:
        locs: ``(*batch, C, D)`` component means.
        scales: ``(*batch, C, D)`` component standard deviations.
        logits: ``(..., C)`` unnormalised log-weights broadcastable to ``(*batch, C)``;
            ``-inf`` gives a component zero weight.

    Returns:
        The mixture, batch ``(*batch,)`` (after broadcasting with ``logits``), event ``(D,)``.
    """
    batch = torch.broadcast_shapes(locs.shape[:-2], logits.shape[:-1])
    n_comp, dim = locs.shape[-2], locs.shape[-1]
    locs = locs.expand(*batch, n_comp, dim)
    scales = scales.expand(*batch, n_comp, dim)
    logits = logits.expand(*batch, n_comp)
    norm = torch.logsumexp(logits, dim=-1, keepdim=True)
    if bool(torch.isinf(norm).any()):
        raise ValueError(
            "every mixture component has zero weight for some sample (all experts masked?)"
        )
    return MixtureSameFamily(Categorical(logits=logits - norm), diag_gaussian(locs, scales))


def _masked_logits(logits: Tensor, mask: Tensor | None) -> Tensor:
    """Set the log-weights of absent components (``mask == False``) to ``-inf``."""
    if mask is None:
        return logits
    return torch.where(mask, logits, torch.full_like(logits, -math.inf))


def mixture_of_experts(
    experts: Sequence[Distribution],
    weights: Tensor | None = None,
    mask: Tensor | None = None,
) -> MixtureSameFamily:
    """Mixture of diagonal-Gaussian experts with an exact ``log_prob`` (MoE).

    The mixing distribution is expanded to the components' batch shape, so ``sample``,
    ``log_prob``, ``mean`` and ``variance`` work for every combination of batch shapes; use
    :func:`rsample` for seeded or reparameterised draws and :func:`stratified_rsample` for one
    draw per component.

    Args:
        experts: ``M`` diagonal Gaussians with broadcastable batch shapes (``()`` or ``(B,)``),
            event ``(D,)``.
        weights: optional non-negative ``(M,)`` or ``(B, M)`` mixture weights (normalised
            here); uniform when ``None``.
        mask: optional ``(B, M)`` bool/0-1 presence mask; ``mask[b, m] == 0`` gives expert ``m``
            zero weight for sample ``b`` (the remaining weights are renormalised).

    Returns:
        A ``MixtureSameFamily`` with batch shape ``(B,)`` (the broadcast of the experts',
        weights' and mask's batch shapes) and event shape ``(D,)``.

    Raises:
        ValueError: with no experts, weights or a mask of the wrong shape, negative weights, or
            a sample whose weights are all zero.

    References:
        Shi, Siddharth, Paige & Torr, "Variational Mixture-of-Experts Autoencoders for
        Multi-Modal Deep Generative Models", NeurIPS 2019 (arXiv 1911.03393), Eq. 2.
    """
    if len(experts) == 0:
        raise ValueError("mixture_of_experts needs at least one expert")
    locs, scales = _stacked_params(experts, dim=-2)  # (*batch, M, D)
    if weights is None:
        logits = torch.zeros(len(experts), device=locs.device, dtype=locs.dtype)
    else:
        if weights.dim() == 0 or weights.shape[-1] != len(experts):
            raise ValueError(
                f"weights must end in {len(experts)} (one per expert), got {tuple(weights.shape)}"
            )
        if bool((weights < 0).any()):
            raise ValueError(f"weights must be non-negative, got {weights}")
        logits = torch.log(weights.to(locs.dtype))
    logits = _masked_logits(logits, _check_mask(mask, len(experts)))
    return _mixture(locs, scales, logits)


def _subset_membership(n_experts: int, like: Tensor) -> Tensor:
    """``(C, M)`` 0/1 membership of the ``C = 2^M - 1`` non-empty subsets, smallest first.

    The order is that of :func:`repro.models.base.subsets`: by size, then lexicographically
    by position.
    """
    rows = [
        [1.0 if m in combo else 0.0 for m in range(n_experts)]
        for k in range(1, n_experts + 1)
        for combo in itertools.combinations(range(n_experts), k)
    ]
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def mixture_of_products(
    experts: Sequence[Distribution],
    prior: Distribution | None = None,
    mask: Tensor | None = None,
) -> MixtureSameFamily:
    """Mixture of products of experts (MoPoE): a uniform mixture over the PoEs of all subsets.

    Component ``c`` is the product (:func:`product_of_experts`) of the experts of the ``c``-th
    non-empty subset, times the prior expert when given; components are ordered like
    :func:`repro.models.base.subsets` (by size, then by position), so component ``m`` for
    ``m < M`` is expert ``m`` alone and the last one is the product of all experts.

    Args:
        experts: ``M`` diagonal Gaussians with broadcastable batch shapes ``(B,)``, event
            ``(D,)``.
        prior: optional prior expert in every product (the official MoPoE code adds one to the
            full-set product only; that asymmetry is not reproduced).
        mask: optional ``(B, M)`` presence mask; only subsets all of whose members are present
            get (equal) weight for a sample.

    Returns:
        A ``MixtureSameFamily`` over ``2^M - 1`` components, batch ``(B,)``, event ``(D,)``.

    Raises:
        ValueError: with no experts, a mask of the wrong shape, or a sample with no expert
            present.

    References:
        Sutter, Daunhawer & Vogt, "Generalized Multimodal ELBO", ICLR 2021 (arXiv 2105.02470),
        Eq. 8.
    """
    if len(experts) == 0:
        raise ValueError("mixture_of_products needs at least one expert")
    locs, scales = _stacked_params(experts, dim=0)  # (M, *batch, D)
    membership = _subset_membership(len(experts), locs)  # (C, M)
    precisions = scales.pow(-2)
    precision = torch.einsum("cm,m...->c...", membership, precisions)  # (C, *batch, D)
    weighted = torch.einsum("cm,m...->c...", membership, precisions * locs)
    if prior is not None:
        p_loc, p_scale = gaussian_params(prior)
        precision = precision + p_scale.pow(-2)
        weighted = weighted + p_loc * p_scale.pow(-2)
    var = precision.reciprocal()
    loc, scale = weighted * var, var.sqrt()
    if _out_of_range(var, loc):  # nearly deterministic experts: redo it in log space
        select = membership.bool().reshape(*membership.shape, *([1] * (locs.dim() - 1)))
        loc, scale = _log_space_products(locs, scales, select, prior)
    sub_locs = loc.movedim(0, -2)  # (*batch, C, D)
    sub_scales = scale.movedim(0, -2)
    logits = torch.zeros(membership.shape[0], device=locs.device, dtype=locs.dtype)
    mask = _check_mask(mask, len(experts))
    if mask is not None:
        missing = (~mask).to(locs.dtype) @ membership.T  # (B, C): absent members per subset
        logits = _masked_logits(logits, missing == 0)
    return _mixture(sub_locs, sub_scales, logits)


def average_of_experts(experts: Sequence[Distribution], mask: Tensor | None = None) -> Independent:
    """Parameter average of diagonal-Gaussian experts (AVG, as in the MMVM VAE code).

    ``mu = mean_m mu_m`` and ``sigma^2 = mean_m sigma_m^2`` over the present experts: a plain
    average of the parameters, not the moment match of the mixture (which would add the
    spread of the means to the variance).

    Args:
        experts: ``M`` diagonal Gaussians with broadcastable batch shapes ``(B,)``, event
            ``(D,)``.
        mask: optional ``(B, M)`` presence mask; absent experts are left out of both averages.

    Returns:
        A diagonal Gaussian with batch shape ``(B,)``.

    Raises:
        ValueError: with no experts, a mask of the wrong shape, or a sample with no expert
            present.

    References:
        Sutter, Manduchi, Ryser & Vogt, "Unity by Diversity: Improved Representation Learning
        in Multimodal VAEs", NeurIPS 2024 (arXiv 2403.05300), baselines; code
        ``thomassutter/mmvmvae`` ``mv_vae.py:aggregate_latents_avg``.
    """
    if len(experts) == 0:
        raise ValueError("average_of_experts needs at least one expert")
    locs, scales = _stacked_params(experts, dim=0)  # (M, *batch, D)
    mask = _check_mask(mask, len(experts))
    if mask is None:
        weight = torch.full((len(experts), 1, 1), 1.0 / len(experts), dtype=locs.dtype)
        weight = weight.to(locs.device)
    else:
        count = mask.sum(1)
        if bool((count == 0).any()):
            raise ValueError(
                f"average_of_experts: no expert present for samples "
                f"{torch.nonzero(count == 0).flatten().tolist()}"
            )
        weight = (mask.to(locs.dtype) / count.unsqueeze(1).to(locs.dtype)).T.unsqueeze(-1)
    loc = (weight * locs).sum(0)
    var = (weight * scales.pow(2)).sum(0)
    if _out_of_range(var, loc):  # s^2 underflows for nearly deterministic experts
        return diag_gaussian(
            loc, torch.exp(0.5 * torch.logsumexp(weight.log() + 2 * scales.log(), 0))
        )
    return diag_gaussian(loc, var.sqrt())


def _noise(shape: torch.Size, generator: torch.Generator, like: Tensor) -> Tensor:
    """Standard normal noise drawn on the generator's device, moved to ``like``'s."""
    eps = torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return eps.to(like.device)


def _uniform(shape: torch.Size, generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Uniform ``[0, 1)`` noise from ``generator`` (or the global RNG) on ``like``'s device."""
    if generator is None:
        return torch.rand(shape, device=like.device, dtype=like.dtype)
    u = torch.rand(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return u.to(like.device)


def _is_gaussian_mixture(dist: Distribution) -> bool:
    comp = getattr(dist, "component_distribution", None)
    return (
        isinstance(dist, MixtureSameFamily)
        and isinstance(comp, Independent)
        and isinstance(comp.base_dist, Normal)
        and comp.reinterpreted_batch_ndims == 1
    )


def _rsample_mixture(
    dist: MixtureSameFamily, sample_shape: torch.Size, generator: torch.Generator | None
) -> Tensor:
    """Choose a component by inverse-CDF from ``generator``, then reparameterise within it."""
    probs = dist.mixture_distribution.probs  # (*batch, C)
    loc = dist.component_distribution.base_dist.loc  # (*batch, C, D)
    scale = dist.component_distribution.base_dist.scale
    shape = sample_shape + probs.shape[:-1]
    u = _uniform(shape + (1,), generator, probs)
    cdf = probs.detach().cumsum(-1)
    index = (cdf <= u).sum(-1, keepdim=True)  # (*S, *batch, 1)
    n_comp = probs.shape[-1]
    positions = torch.arange(n_comp, device=probs.device).expand_as(probs)
    last = torch.where(probs > 0, positions, torch.zeros_like(positions)).amax(-1, keepdim=True)
    index = torch.minimum(index, last.expand_as(index))  # guards rounding of the last cdf value
    gather = index.unsqueeze(-1).expand(*shape, 1, loc.shape[-1])
    chosen_loc = loc.expand(*sample_shape, *loc.shape).gather(-2, gather).squeeze(-2)
    chosen_scale = scale.expand(*sample_shape, *scale.shape).gather(-2, gather).squeeze(-2)
    if generator is None:
        eps = torch.randn_like(chosen_loc)
    else:
        eps = _noise(chosen_loc.shape, generator, chosen_loc)
    return chosen_loc + chosen_scale * eps


def rsample(
    dist: Distribution,
    sample_shape: torch.Size | tuple[int, ...] = (),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Reparameterised sample that draws its noise from ``generator``.

    ``torch.distributions`` samplers use the global RNG; this helper supports the families used
    in ``repro`` so that samplers can be seeded explicitly: diagonal Gaussians, normalizing
    flows whose base is one (zuko's ``NormalizingFlow`` or torch's ``TransformedDistribution``),
    and mixtures of diagonal Gaussians (from :func:`mixture_of_experts` or
    :func:`mixture_of_products`). For a mixture, the component is chosen by inverse CDF from a
    uniform draw of ``generator`` (not differentiable: no gradient reaches the weights) and the
    sample is reparameterised within the chosen component (gradients reach its mean and scale).

    Args:
        dist: the distribution.
        sample_shape: leading sample shape.
        generator: a ``torch.Generator`` (its noise is moved to the distribution's device), or
            ``None`` for the global RNG (then ``dist.rsample`` is used for any family but
            mixtures, which use the scheme above).

    Returns:
        ``(*sample_shape, *batch_shape, *event_shape)`` samples, differentiable in the parameters.

    Raises:
        ValueError: for an unsupported family when a generator is given.
    """
    sample_shape = torch.Size(sample_shape)
    if _is_gaussian_mixture(dist):
        return _rsample_mixture(dist, sample_shape, generator)
    if generator is None:
        return dist.rsample(sample_shape)
    if isinstance(dist, Independent) and isinstance(dist.base_dist, Normal):
        loc, scale = dist.base_dist.loc, dist.base_dist.scale
        shape = sample_shape + loc.shape
        return loc + scale * _noise(shape, generator, loc)
    if isinstance(dist, Normal):
        shape = sample_shape + dist.loc.shape
        return dist.loc + dist.scale * _noise(shape, generator, dist.loc)
    base = getattr(dist, "base", None) or getattr(dist, "base_dist", None)
    if base is not None and hasattr(dist, "transform"):  # zuko NormalizingFlow: x = f^{-1}(u)
        return dist.transform.inv(rsample(base, sample_shape, generator))
    if isinstance(dist, TransformedDistribution):
        u = rsample(dist.base_dist, sample_shape, generator)
        for t in dist.transforms:
            u = t(u)
        return u
    raise ValueError(
        f"rsample with a generator does not support {type(dist).__name__}; pass generator=None"
    )


def select_components(mixture: MixtureSameFamily, index: Tensor) -> Independent:
    """The component ``index[b]`` of a diagonal-Gaussian mixture for every batch row ``b``.

    Args:
        mixture: a mixture of diagonal Gaussians with batch ``(B,)`` and ``C`` components.
        index: ``(B,)`` long component indices.

    Returns:
        A diagonal Gaussian with batch ``(B,)`` and event ``(D,)``.

    Raises:
        ValueError: for an index of the wrong shape.
    """
    loc, scale = gaussian_params(mixture.component_distribution)  # (B, C, D)
    if index.shape != loc.shape[:1]:
        raise ValueError(f"index must be ({loc.shape[0]},), got {tuple(index.shape)}")
    pick = index.to(loc.device).view(-1, 1, 1).expand(-1, 1, loc.shape[-1])
    return diag_gaussian(loc.gather(1, pick).squeeze(1), scale.gather(1, pick).squeeze(1))


def stratified_rsample(
    dist: MixtureSameFamily,
    sample_shape: torch.Size | tuple[int, ...] = (),
    generator: torch.Generator | None = None,
) -> Tensor:
    """One reparameterised draw from **every** component of a mixture (stratified sampling).

    Used by the stratified mixture objectives (MMVAE, MoPoE): instead of choosing a component
    at random, each of the ``C`` components contributes its own samples, and the objective
    weights them by the mixture weights.

    Args:
        dist: a mixture of diagonal Gaussians, batch ``(*batch,)``, ``C`` components.
        sample_shape: leading sample shape ``(K,)`` (per component).
        generator: source of the noise (``None``: the global RNG).

    Returns:
        ``(*sample_shape, C, *batch, D)`` samples; ``[..., c, :, :]`` are draws from component
        ``c``, so ``dist.log_prob`` of the result has shape ``(*sample_shape, C, *batch)``.

    Raises:
        ValueError: when ``dist`` is not a mixture of diagonal Gaussians.
    """
    if not _is_gaussian_mixture(dist):
        raise ValueError(
            f"stratified_rsample needs a mixture of diagonal Gaussians, got {type(dist).__name__}"
        )
    sample_shape = torch.Size(sample_shape)
    z = rsample(dist.component_distribution, sample_shape, generator)  # (*S, *batch, C, D)
    return z.movedim(-2, len(sample_shape))
