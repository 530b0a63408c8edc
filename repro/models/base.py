"""The multimodal-VAE interface that every model in ``repro`` implements.

A model has one encoder and one decoder per modality (modalities are the keys of a
``dict[str, Tensor]``), a prior ``p(z)``, and its own way of aggregating the unimodal posteriors
``q(z|x_m)`` into ``q(z|x_S)`` for a subset ``S``. Subclasses implement :meth:`aggregate` (or
override :meth:`posterior`) and :meth:`bound`; everything else has a default:

* :meth:`encode`: ``{m: q(z|x_m)}`` for the modalities present in ``x``;
* :meth:`posterior`: ``q(z|x_S)`` by the model's aggregation;
* :meth:`decode`: ``{m: p(x_m|z)}``;
* :meth:`sample_posterior` / :meth:`generate`: seeded conditional sampling and generation;
* :meth:`bound`: the per-sample training objective, shape ``(B,)``, to maximise;
* :attr:`stages` / :meth:`prepare_stage`: staged training (a single stage ``"train"`` by default).

**Missing modalities.** A batch may carry a ``(B, M)`` boolean tensor under the key
:data:`MASK` (columns in :attr:`MultimodalVAE.modalities` order); ``mask[b, m] = False`` marks
modality ``m`` as absent for sample ``b``: its expert contributes nothing to the aggregation and
its terms drop out of the bound. The values stored for an absent modality are never read by an
aggregation, but must be finite (any placeholder, e.g. zeros).

**Sharing networks.** Encoders and decoders are plain modules passed in: the same modules can be
given to several models in a comparison, so that only the aggregation and the objective differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from repro.distributions import rsample, standard_normal

__all__ = [
    "MASK",
    "Batch",
    "Stage",
    "MultimodalVAE",
    "require_complete",
    "split_batch",
    "subsets",
]

MASK = "mask"  # batch key of the (B, M) presence mask; not a valid modality name

Batch = Mapping[str, Tensor]


def _identity(data: object) -> object:
    return data


@dataclass(frozen=True)
class Stage:
    """What :func:`repro.train.fit` trains in one stage.

    Attributes:
        module: the module whose trainable parameters (``requires_grad``) and state are
            optimised, checkpointed and restored.
        bound: ``batch -> (B,)`` per-sample bound (or a batch-level scalar) to maximise.
        prepare: maps the stage's data (a dict of tensors) to what ``bound`` reads, e.g. adding
            the outputs of frozen networks computed once per sample instead of once per step.
    """

    module: nn.Module
    bound: Callable[[Batch], Tensor]
    prepare: Callable[[Mapping[str, Tensor]], Mapping[str, Tensor]] = field(default=_identity)

    def __iter__(self):
        """Unpack as ``module, bound = stage``."""
        return iter((self.module, self.bound))


def subsets(modalities: Sequence[str], min_size: int = 1) -> list[tuple[str, ...]]:
    """All subsets of ``modalities`` with at least ``min_size`` elements, smallest first.

    Args:
        modalities: the modality names (kept in the given order inside each subset).
        min_size: smallest subset size.

    Returns:
        Tuples of modality names, ordered by size, then lexicographically by position.
    """
    import itertools

    names = list(modalities)
    return [
        combo
        for k in range(max(min_size, 0), len(names) + 1)
        for combo in itertools.combinations(names, k)
        if combo
    ]


def split_batch(batch: Batch, modalities: Sequence[str]) -> tuple[dict[str, Tensor], Tensor | None]:
    """Separate the observations from the optional presence mask.

    Args:
        batch: observations per modality, plus optionally :data:`MASK`, a ``(B, M)`` bool tensor.
        modalities: the model's modalities (the mask's column order).

    Returns:
        ``(x, mask)``; ``mask`` is ``None`` when the batch has none.

    Raises:
        ValueError: for a mask of the wrong shape.
    """
    x = {k: v for k, v in batch.items() if k != MASK}
    mask = batch.get(MASK)
    if mask is not None:
        first = next(iter(x.values()))
        if mask.dim() != 2 or mask.shape != (first.shape[0], len(modalities)):
            raise ValueError(
                f"batch[{MASK!r}] must be (B, M) = ({first.shape[0]}, {len(modalities)}) with "
                f"columns {list(modalities)}, got {tuple(mask.shape)}"
            )
        mask = mask.bool()
    return x, mask


def require_complete(mask: Tensor | None, reason: str) -> None:
    """Refuse a presence mask with absent entries, for objectives that need every modality.

    Args:
        mask: ``(B, M)`` presence mask or ``None`` (complete).
        reason: the error message: who needs complete samples and what to do instead.

    Raises:
        ValueError: with ``reason`` when some ``mask[b, m]`` is False.
    """
    if mask is not None and not bool(mask.all()):
        raise ValueError(reason)


class MultimodalVAE(nn.Module):
    """Base class: per-modality encoders and decoders, a standard prior, an aggregation.

    Args:
        encoders: ``{m: module}``, each mapping ``x_m`` ``(B, ...)`` to a distribution
            ``q(z|x_m)`` with batch ``(B,)`` and event ``(D,)`` (diagonal Gaussians for the
            aggregations of :mod:`repro.distributions`).
        decoders: ``{m: module}``, each mapping ``z`` ``(..., D)`` to ``p(x_m|z)``.
        latent_dim: ``D``.

    Raises:
        ValueError: when encoders and decoders name different modalities, or a modality is
            called :data:`MASK`.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        decoders: Mapping[str, nn.Module],
        latent_dim: int,
    ) -> None:
        super().__init__()
        if sorted(encoders) != sorted(decoders):
            raise ValueError(
                f"encoders {sorted(encoders)} and decoders {sorted(decoders)} must name the same "
                "modalities"
            )
        if MASK in decoders:
            raise ValueError(f"{MASK!r} is reserved for the presence mask; rename that modality")
        self.encoders = nn.ModuleDict(dict(encoders))
        self.decoders = nn.ModuleDict(dict(decoders))
        self.latent_dim = latent_dim
        self.epoch = 0  # set by repro.train.fit at the start of every epoch (warm-ups)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    # -- structure -------------------------------------------------------------------------
    @property
    def modalities(self) -> list[str]:
        """Sorted modality names (the column order of a presence mask)."""
        return sorted(self.decoders)

    @property
    def stages(self) -> tuple[str, ...]:
        """The training stages, in order (one stage, ``"train"``, unless overridden)."""
        return ("train",)

    def prepare_stage(self, stage: str) -> Stage:
        """Freeze all but ``stage``'s parameters and return what :func:`repro.train.fit` trains.

        Args:
            stage: one of :attr:`stages`.

        Returns:
            The :class:`Stage` (module, bound, data preparation).

        Raises:
            ValueError: for an unknown stage.
        """
        self._check_stage(stage)
        self.requires_grad_(True)
        return Stage(self, self.bound)

    def _check_stage(self, stage: str) -> None:
        if stage not in self.stages:
            raise ValueError(f"unknown stage {stage!r}; this model has stages {self.stages}")

    def set_epoch(self, epoch: int) -> None:
        """Called by :func:`repro.train.fit` with the 1-based epoch (for warm-up schedules)."""
        self.epoch = epoch

    def prior(self) -> Distribution:
        """``p(z) = N(0, I)`` on the model's device and dtype."""
        return standard_normal(self.latent_dim, like=self._anchor)

    def check_subset(self, subset: Sequence[str] | None) -> list[str]:
        """Validate a subset of modalities; ``None`` means all of them.

        Args:
            subset: modality names.

        Returns:
            The subset, sorted.

        Raises:
            ValueError: for an empty subset or an unknown modality.
        """
        if subset is None:
            return self.modalities
        if isinstance(subset, str):
            subset = [subset]
        chosen = sorted(set(subset))
        unknown = [m for m in chosen if m not in self.decoders]
        if not chosen or unknown:
            raise ValueError(
                f"subset must be a non-empty list of modalities from {self.modalities}; "
                f"got {list(subset)}"
            )
        return chosen

    def column_mask(self, mask: Tensor | None, subset: Sequence[str]) -> Tensor | None:
        """The ``(B, |S|)`` columns of a ``(B, M)`` presence mask for ``subset`` (or ``None``)."""
        if mask is None:
            return None
        index = [self.modalities.index(m) for m in subset]
        return mask[:, index]

    # -- inference -------------------------------------------------------------------------
    def encode(self, x: Mapping[str, Tensor]) -> dict[str, Distribution]:
        """Unimodal posteriors ``{m: q(z|x_m)}`` for every modality present in ``x``.

        Args:
            x: observations per modality (keys outside :attr:`modalities` are ignored).

        Returns:
            Distributions with batch ``(B,)`` and event ``(D,)``.
        """
        return {m: self.encoders[m](x[m]) for m in self.modalities if m in x}

    def encode_batch(
        self, batch: Batch
    ) -> tuple[dict[str, Tensor], Tensor | None, dict[str, Distribution]]:
        """Split a training batch and encode every modality.

        Args:
            batch: observations of **every** modality (absent ones as finite placeholders),
                plus optionally a :data:`MASK`.

        Returns:
            ``(x, mask, experts)``: observations, the ``(B, M)`` mask or ``None``, and
            ``{m: q(z|x_m)}`` in :attr:`modalities` order.

        Raises:
            ValueError: when a modality is missing from the batch.
        """
        x, mask = split_batch(batch, self.modalities)
        missing = [m for m in self.modalities if m not in x]
        if missing:
            raise ValueError(
                f"batch lacks modalities {missing}; pass placeholders and mark them absent in "
                f"batch[{MASK!r}]"
            )
        return x, mask, self.encode(x)

    def aggregate(
        self, experts: Mapping[str, Distribution], mask: Tensor | None = None
    ) -> Distribution:
        """Combine unimodal posteriors into ``q(z|x_S)`` (the model's aggregation).

        Args:
            experts: ``{m: q(z|x_m)}`` for the modalities of ``S``, in sorted order.
            mask: optional ``(B, |S|)`` presence mask, columns in the order of ``experts``.

        Returns:
            ``q(z|x_S)``, batch ``(B,)``, event ``(D,)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement aggregate()")

    def posterior(
        self,
        x: Mapping[str, Tensor],
        subset: Sequence[str] | None = None,
        mask: Tensor | None = None,
    ) -> Distribution:
        """``q(z|x_S)`` by the model's aggregation.

        Args:
            x: observations; only the subset's modalities are read.
            subset: the conditioning modalities (default: all).
            mask: optional ``(B, M)`` presence mask over all modalities.

        Returns:
            A distribution with batch ``(B,)`` and event ``(D,)``.
        """
        subset = self.check_subset(subset)
        missing = [m for m in subset if m not in x]
        if missing:
            raise ValueError(f"posterior over {subset} needs observations of {missing}")
        experts = {m: self.encoders[m](x[m]) for m in subset}
        return self.aggregate(experts, self.column_mask(mask, subset))

    def decode(self, z: Tensor) -> dict[str, Distribution]:
        """``{m: p(x_m|z)}`` for every modality; ``z`` is ``(..., D)``."""
        return {m: dec(z) for m, dec in self.decoders.items()}

    def bound(self, batch: Batch) -> Tensor:
        """The training objective per sample, ``(B,)``, to maximise.

        Args:
            batch: observations per modality, optionally with a :data:`MASK`.

        Returns:
            ``(B,)`` values.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement bound()")

    # -- sampling --------------------------------------------------------------------------
    @torch.no_grad()
    def sample_posterior(
        self,
        x: Mapping[str, Tensor],
        subset: Sequence[str] | None = None,
        n: int = 1,
        generator: torch.Generator | None = None,
        **sampler_kwargs: float,
    ) -> Tensor:
        """Draw ``z ~ q(z|x_S)``.

        Args:
            x: observations of the subset.
            subset: conditioning modalities (default: all).
            n: samples per data point.
            generator: source of the sampling noise (``None``: the global RNG).
            **sampler_kwargs: settings of a model's sampler (e.g. HMC); none by default.

        Returns:
            ``(n, B, D)`` latent samples.

        Raises:
            ValueError: for sampler settings this model does not have.
        """
        if sampler_kwargs:
            raise ValueError(
                f"{type(self).__name__} samples its posteriors exactly; it takes no sampler "
                f"settings, got {sorted(sampler_kwargs)}"
            )
        q = self.posterior(x, subset)
        if generator is None:
            return q.sample((n,))
        return rsample(q, (n,), generator)

    @torch.no_grad()
    def generate(
        self,
        x: Mapping[str, Tensor],
        subset: Sequence[str] | None = None,
        n: int = 1,
        generator: torch.Generator | None = None,
        **sampler_kwargs: float,
    ) -> dict[str, Tensor]:
        """Conditional generation: decode ``z ~ q(z|x_S)`` into every modality.

        Args:
            x: observations of the subset.
            subset: conditioning modalities (default: all).
            n: samples per data point.
            generator: source of the sampling noise.
            **sampler_kwargs: passed to :meth:`sample_posterior` (e.g. HMC settings).

        Returns:
            Per modality, ``(n, B, ...)`` decoder means.
        """
        z = self.sample_posterior(x, subset, n, generator, **sampler_kwargs)
        return {m: p.mean for m, p in self.decode(z).items()}

    @torch.no_grad()
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Unconditional generation: decode ``z ~ p(z)``.

        Args:
            n: number of samples.
            generator: source of the sampling noise.

        Returns:
            Per modality, ``(n, ...)`` decoder means.
        """
        pz = self.prior()
        z = pz.sample((n,)) if generator is None else rsample(pz, (n,), generator)
        return {m: p.mean for m, p in self.decode(z).items()}
