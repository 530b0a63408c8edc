"""Diagonal-Gaussian utilities and aggregations of experts: product (PoE) and mixture (MoE).

Every posterior in ``repro`` is a ``torch.distributions`` object. Diagonal Gaussians are
``Independent(Normal(loc, scale), 1)`` with event shape ``(D,)``; helpers here build, combine and
sample them with an explicit ``torch.Generator``.
"""

from __future__ import annotations

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
    "rsample",
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
    if mask is not None:
        if mask.dim() != 2 or mask.shape[1] != len(experts):
            raise ValueError(
                f"mask must have shape (B, {len(experts)}) (one column per expert), "
                f"got {tuple(mask.shape)}"
            )
        weight = mask.to(precisions.dtype).T.unsqueeze(-1)  # (M, B, 1)
        precisions = precisions * weight
    precision = precisions.sum(0)
    weighted = (precisions * locs).sum(0)
    if prior is not None:
        p_loc, p_scale = gaussian_params(prior)
        precision = precision + p_scale.pow(-2)
        weighted = weighted + p_loc * p_scale.pow(-2)
    if bool((precision <= 0).any()):
        raise ValueError("empty product: every expert is masked for some sample and no prior")
    var = precision.reciprocal()
    return diag_gaussian(weighted * var, var.sqrt())


def mixture_of_experts(
    experts: Sequence[Distribution], weights: Tensor | None = None
) -> MixtureSameFamily:
    """Mixture of diagonal-Gaussian experts with an exact ``log_prob``.

    Args:
        experts: ``M`` diagonal Gaussians with broadcastable batch shapes ``(B,)``, event ``(D,)``.
        weights: optional ``(M,)`` or ``(B, M)`` mixture weights (normalised here); uniform when
            ``None``.

    Returns:
        A ``MixtureSameFamily`` with batch shape ``(B,)`` and event shape ``(D,)``. Its
        ``sample`` is not reparameterised through the component choice.

    Raises:
        ValueError: with no experts or weights of the wrong length.
    """
    if len(experts) == 0:
        raise ValueError("mixture_of_experts needs at least one expert")
    params = [gaussian_params(e) for e in experts]
    locs = torch.stack(torch.broadcast_tensors(*[p[0] for p in params]), dim=-2)  # (B, M, D)
    scales = torch.stack(torch.broadcast_tensors(*[p[1] for p in params]), dim=-2)  # (B, M, D)
    if weights is None:
        weights = torch.ones(len(experts), device=locs.device, dtype=locs.dtype)
    if weights.shape[-1] != len(experts):
        raise ValueError(
            f"weights must end in {len(experts)} (one per expert), got {weights.shape}"
        )
    components = diag_gaussian(locs, scales)
    return MixtureSameFamily(Categorical(probs=weights / weights.sum(-1, keepdim=True)), components)


def _noise(shape: torch.Size, generator: torch.Generator, like: Tensor) -> Tensor:
    """Standard normal noise drawn on the generator's device, moved to ``like``'s."""
    eps = torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return eps.to(like.device)


def rsample(
    dist: Distribution, sample_shape: torch.Size | tuple[int, ...] = (), generator=None
) -> Tensor:
    """Reparameterised sample that draws its noise from ``generator``.

    ``torch.distributions`` samplers use the global RNG; this helper supports the families used
    in ``repro`` so that samplers can be seeded explicitly: diagonal Gaussians and normalizing
    flows whose base is one (zuko's ``NormalizingFlow`` or torch's ``TransformedDistribution``).

    Args:
        dist: the distribution.
        sample_shape: leading sample shape.
        generator: a ``torch.Generator`` on the distribution's device, or ``None`` for the
            global RNG (then ``dist.rsample`` is used for any family).

    Returns:
        ``(*sample_shape, *batch_shape, *event_shape)`` samples, differentiable in the parameters.

    Raises:
        ValueError: for an unsupported family when a generator is given.
    """
    if generator is None:
        return dist.rsample(torch.Size(sample_shape))
    if isinstance(dist, Independent) and isinstance(dist.base_dist, Normal):
        loc, scale = dist.base_dist.loc, dist.base_dist.scale
        shape = torch.Size(sample_shape) + loc.shape
        return loc + scale * _noise(shape, generator, loc)
    if isinstance(dist, Normal):
        shape = torch.Size(sample_shape) + dist.loc.shape
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
