"""JMVAE-KL: a joint encoder ``q(z|X)`` with unimodal encoders pulled towards it by KL terms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn
from torch.distributions import Distribution

from repro.distributions import product_of_experts
from repro.losses.coordination import jmvae_kl
from repro.models.base import Batch, split_batch
from repro.models.joint import JointVAE

__all__ = ["SUBSET_POSTERIORS", "JMVAE"]

SUBSET_POSTERIORS = ("poe", "hmc")  # partial subsets: MultiVae's PoE, or PoE over prior + HMC


class JMVAE(JointVAE):
    """Joint Multimodal VAE trained with the JMVAE-KL objective and a KL warm-up.

    Objective (:func:`repro.losses.coordination.jmvae_kl`), one reparameterised sample:
    ``E_{q(z|X)}[sum_m lambda_m log p(x_m|z)]
    - w(epoch) [beta KL(q(z|X)||p) + alpha sum_m KL(q(z|X)||q(z|x_m))]``.

    **Warm-up** (MultiVae ``jmvae_model.py:177-183``): the annealing factor multiplies both KL
    terms (not the reconstruction), ``w = epoch / warmup`` while ``epoch < warmup`` and 1 from
    then on, with MultiVae's 1-based epochs (``trainers/base/base_trainer.py:488-489``); so
    ``w = 1/warmup`` during the first training epoch. Here ``epoch`` is :attr:`epoch`, which
    :func:`repro.train.fit` sets through :meth:`set_epoch`; before any training it is 0, and so
    is ``w``. The validation bound is annealed the same way (MultiVae passes the epoch to its
    evaluation step too).

    **Subsets.** All modalities: the joint encoder; one: its encoder; a partial subset ``S``
    (``M >= 3``): with ``subset_posterior="poe"`` (default, MultiVae
    ``jmvae_model.py:97-100, 194-208``) the product of the subset's unimodal experts, without
    prior expert or prior correction (a Gaussian, sampled directly); with ``"hmc"`` the
    :class:`repro.models.joint.SubsetPosterior` ``prod_j q_j / p(z)^(|S|-1)`` (exact when each
    ``q_j = p(z|x_j)``), sampled by HMC as in JNF.

    The joint encoder needs every modality: batches must be complete (a presence mask, if
    given, must be all true).

    Args:
        joint_encoder: ``X -> q(z|X)`` (e.g. :class:`repro.models.encoders.JointMLPEncoder`).
        encoders: ``{m: x_m -> q(z|x_m)}``, diagonal-Gaussian encoders.
        decoders: ``{m: z -> p(x_m|z)}``.
        latent_dim: ``D``.
        alpha: weight of the KLs to the unimodal posteriors (MultiVae default 0.1,
            ``jmvae_config.py:38``).
        warmup: warm-up epochs (MultiVae default 10, ``jmvae_config.py:39``); 0 disables it.
        beta: weight of the KL to the prior (MultiVae add-on, default 1,
            ``jmvae_config.py:40``).
        weights: likelihood rescaling ``lambda_m`` (default 1).
        subset_posterior: ``"poe"`` (default) or ``"hmc"``, see above.
        prior_exponent: exponent of ``p(z)`` for ``"hmc"`` subsets (``None``: ``|S| - 1``).
        hmc_kwargs: HMC settings for ``"hmc"`` subsets.

    Raises:
        ValueError: for a negative ``alpha`` or ``warmup``, or an unknown ``subset_posterior``.

    References:
        Suzuki, Nakayama & Matsuo, "Joint Multimodal Learning with Deep Generative Models",
        arXiv 1611.01891 (JMVAE-kl); MultiVae ``models/jmvae/`` (AgatheSenellart/MultiVae
        @ 2822b3b).
    """

    def __init__(
        self,
        joint_encoder: nn.Module,
        encoders: Mapping[str, nn.Module],
        decoders: Mapping[str, nn.Module],
        latent_dim: int,
        alpha: float = 0.1,
        warmup: int = 10,
        beta: float = 1.0,
        weights: Mapping[str, float] | None = None,
        subset_posterior: str = "poe",
        prior_exponent: float | None = None,
        hmc_kwargs: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(
            joint_encoder, encoders, decoders, latent_dim, beta, weights, prior_exponent, hmc_kwargs
        )
        if alpha < 0 or warmup < 0:
            raise ValueError(f"alpha and warmup must be >= 0, got alpha={alpha}, warmup={warmup}")
        if subset_posterior not in SUBSET_POSTERIORS:
            raise ValueError(
                f"subset_posterior must be one of {SUBSET_POSTERIORS}, got {subset_posterior!r}"
            )
        self.alpha, self.warmup = alpha, int(warmup)
        self.subset_posterior = subset_posterior

    def annealing_factor(self, epoch: int | None = None) -> float:
        """The warm-up weight ``w`` of both KL terms (MultiVae ``jmvae_model.py:178-181``).

        Args:
            epoch: 1-based training epoch (default: :attr:`epoch`).

        Returns:
            ``min(epoch / warmup, 1)``; 1 without warm-up.
        """
        epoch = self.epoch if epoch is None else epoch
        if self.warmup == 0 or epoch >= self.warmup:
            return 1.0
        return epoch / self.warmup

    def posterior(
        self,
        x: Mapping[str, Tensor],
        subset: Sequence[str] | None = None,
        mask: Tensor | None = None,
    ) -> Distribution:
        """``q(z|X)``, ``q(z|x_m)``, or the partial-subset posterior chosen at construction.

        Args:
            x: observations of the subset.
            subset: conditioning modalities (default: all).
            mask: optional ``(B, M)`` presence mask; must be all present.

        Returns:
            A distribution with batch ``(B,)`` and event ``(D,)``.
        """
        chosen = self.check_subset(subset)
        if self.subset_posterior == "poe" and 1 < len(chosen) < len(self.modalities):
            self._complete(mask, "posterior")
            return product_of_experts([self.encoders[m](x[m]) for m in chosen])
        return super().posterior(x, chosen, mask)

    def bound(self, batch: Batch) -> Tensor:
        """The annealed JMVAE-KL objective, one reparameterised sample, ``(B,)``.

        Args:
            batch: every modality's observations (complete samples).

        Returns:
            ``(B,)`` values to maximise.
        """
        x, mask = split_batch(batch, self.modalities)
        self._complete(mask, "bound")
        qz_x = self.joint_encoder(x)
        z = qz_x.rsample()
        log_px = {m: self.weights.get(m, 1.0) * p.log_prob(x[m]) for m, p in self.decode(z).items()}
        w = self.annealing_factor()
        return jmvae_kl(
            log_px,
            qz_x,
            self.encode(x),
            self.prior(),
            alpha=self.alpha * w,
            beta=self.beta * w,
            z=z,
        )
