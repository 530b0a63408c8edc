"""MVAE: a product-of-experts posterior with a prior expert, trained on sub-sampled ELBOs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from repro.distributions import diag_gaussian, gaussian_params, product_of_experts, rsample
from repro.losses.aggregate import aggregate_elbo, mvae_elbo, presence
from repro.models.base import Batch, MultimodalVAE, subsets

__all__ = ["MVAE", "detach_expert"]


def detach_expert(expert: Distribution) -> Distribution:
    """The same diagonal Gaussian with its parameters cut from the graph (stop-gradient)."""
    loc, scale = gaussian_params(expert)
    return diag_gaussian(loc.detach(), scale.detach())


class MVAE(MultimodalVAE):
    """Multimodal VAE (MVAE): PoE posterior with a prior expert, sub-sampled training.

    ``q(z|x_S) ∝ p(z) prod_{m in S} q(z|x_m)`` (:func:`repro.distributions.product_of_experts`
    with the prior expert). The objective (:func:`repro.losses.aggregate.mvae_elbo`) sums the
    ELBO of all modalities, the ``M`` unimodal ELBOs and, in training mode, the ELBOs of
    ``k_subsets`` subsets drawn uniformly without replacement among those of sizes ``2..M-1``
    (none for ``M = 2``). Each subset's ELBO reconstructs the subset's modalities only.

    Missing modalities: an absent expert drops out of every product and its reconstruction
    terms drop out of every ELBO; a subset with no present member contributes 0.

    Args:
        encoders: ``{m: module}`` returning diagonal Gaussians ``q(z|x_m)``.
        decoders: ``{m: module}`` returning ``p(x_m|z)``.
        latent_dim: ``D``.
        k_subsets: number of random subset ELBOs per step (``--approx-m``, default 1, in the
            original code ``mhw32/multimodal-vae-public``; MultiVae ``MVAEConfig.k``).
        beta: KL weight after warm-up (1 in the paper).
        warmup: epochs of KL annealing, ramped per training step (0: none; the original code
            anneals over experiment-specific spans, e.g. 20 epochs on CelebA, 200 on MNIST);
            see :meth:`kl_weight`.
        likelihood_weights: optional per-modality likelihood rescaling (the original code's
            ``lambda_image`` / ``lambda_text``); ``None`` for the plain ELBO.
        steps_per_epoch: ``N``, training steps per epoch (``ceil(n_train / batch_size)`` with
            :func:`repro.train.fit`); needed with ``warmup``.

    Raises:
        ValueError: for negative ``k_subsets`` or ``warmup``, or ``warmup`` without a positive
            ``steps_per_epoch``.

    References:
        Wu & Goodman, "Multimodal Generative Models for Scalable Weakly-Supervised Learning",
        NeurIPS 2018 (arXiv 1802.05335): the PoE with a prior expert and the sub-sampled
        training objective (equation numbers unverified).
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        decoders: Mapping[str, nn.Module],
        latent_dim: int,
        k_subsets: int = 1,
        beta: float = 1.0,
        warmup: int = 0,
        likelihood_weights: Mapping[str, float] | None = None,
        steps_per_epoch: int | None = None,
    ) -> None:
        super().__init__(encoders, decoders, latent_dim)
        if k_subsets < 0 or warmup < 0:
            raise ValueError(
                f"k_subsets and warmup must be >= 0, got k_subsets={k_subsets}, warmup={warmup}"
            )
        if warmup > 0 and (steps_per_epoch is None or steps_per_epoch < 1):
            raise ValueError(
                f"warmup={warmup} anneals per training step and needs steps_per_epoch >= 1 "
                f"(batches per epoch), got steps_per_epoch={steps_per_epoch}"
            )
        self.k_subsets, self.beta, self.warmup = k_subsets, beta, warmup
        self.steps_per_epoch = steps_per_epoch
        self.step = 0  # training-mode bound() calls since the last set_epoch (batch index)
        self.likelihood_weights = dict(likelihood_weights) if likelihood_weights else None

    def aggregate(
        self, experts: Mapping[str, Distribution], mask: Tensor | None = None
    ) -> Distribution:
        """PoE of the experts and the prior expert; ``mask`` ``(B, |S|)`` drops absent ones."""
        return product_of_experts(list(experts.values()), prior=self.prior(), mask=mask)

    def set_epoch(self, epoch: int) -> None:
        """Called by :func:`repro.train.fit` with the 1-based epoch; restarts the batch count."""
        super().set_epoch(epoch)
        self.step = 0

    def kl_weight(self) -> float:
        """The KL weight of the current step: the original code's per-batch linear warm-up.

        With ``A = warmup``, ``N = steps_per_epoch`` and the 0-based global step
        ``t = (epoch - 1) N + step`` (``step``: training-mode :meth:`bound` calls since the last
        :meth:`set_epoch`; without one, since construction, ``epoch`` counting as 1), the
        weight is ``beta (t + 1) / (A N)`` while ``floor(t / N) + 1 < A`` and ``beta`` from
        epoch ``A`` on: ``annealing_factor = (batch_idx + (epoch - 1) * N_mini_batches + 1) /
        (annealing_epochs * N_mini_batches)`` for ``epoch < annealing_epochs``, else 1, in
        ``mhw32/multimodal-vae-public`` (``mnist/train.py:train``, likewise celeba, multimnist,
        vision). MultiVae (``mvae_model.py:forward``) ramps ``(epoch - 1 + batch_idx / N) / A``,
        one step behind. Evaluation mode uses ``beta``, as the original ``test`` loop
        (MultiVae evaluates at ``(epoch - 1) / A``).

        Returns:
            The weight (``beta`` without warm-up).
        """
        if self.warmup == 0 or not self.training:
            return self.beta
        n = self.steps_per_epoch
        t = (max(self.epoch, 1) - 1) * n + self.step
        if t // n + 1 >= self.warmup:
            return self.beta
        return self.beta * (t + 1) / (self.warmup * n)

    def random_subsets(self, generator: torch.Generator | None = None) -> list[tuple[str, ...]]:
        """``k_subsets`` distinct subsets of sizes ``2..M-1``, drawn uniformly.

        Args:
            generator: source of the choice (``None``: the global RNG).

        Returns:
            The subsets (fewer when there are fewer candidates; none for ``M <= 2``).
        """
        pool = [s for s in subsets(self.modalities, 2) if len(s) < len(self.modalities)]
        k = min(self.k_subsets, len(pool))
        if k == 0:
            return []
        order = torch.randperm(len(pool), generator=generator)[:k]
        return [pool[i] for i in sorted(order.tolist())]

    def subset_elbo(
        self,
        x: Mapping[str, Tensor],
        experts: Mapping[str, Distribution],
        subset: Sequence[str],
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """ELBO of ``q(z|x_S)`` reconstructing the modalities of ``S``, ``(B,)``.

        Args:
            x: observations.
            experts: unimodal posteriors of every modality.
            subset: the subset ``S``.
            mask: optional ``(B, M)`` presence mask over all modalities.
            generator: source of the sampling noise.

        Returns:
            ``(B,)`` single-sample ELBOs.
        """
        subset = list(subset)
        sub_mask = self.column_mask(mask, subset)
        q = self.aggregate({m: experts[m] for m in subset}, sub_mask)
        z = rsample(q, (1,), generator)
        px_z = {m: self.decoders[m](z) for m in subset}
        weights = None
        if self.likelihood_weights is not None:
            weights = {m: w for m, w in self.likelihood_weights.items() if m in subset}
        return aggregate_elbo(
            {m: x[m] for m in subset},
            q,
            px_z,
            self.prior(),
            z,
            presence(sub_mask, subset),
            beta=self.kl_weight(),
            weights=weights,
        )

    def bound(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """The sub-sampled MVAE objective per sample, ``(B,)``.

        Args:
            batch: observations of every modality, optionally with a :data:`MASK`.
            generator: source of the sampling noise and of the random subsets.

        Returns:
            ``(B,)`` values (random subsets only in training mode). A training-mode call counts
            as one step of the KL warm-up (:meth:`kl_weight`).
        """
        x, mask, experts = self.encode_batch(batch)
        joint = self.subset_elbo(x, experts, self.modalities, mask, generator)
        unimodal = [self.subset_elbo(x, experts, [m], mask, generator) for m in self.modalities]
        drawn = self.random_subsets(generator) if self.training else []
        sampled = [self.subset_elbo(x, experts, s, mask, generator) for s in drawn]
        if self.training:
            self.step += 1
        return mvae_elbo(joint, unimodal, sampled)
