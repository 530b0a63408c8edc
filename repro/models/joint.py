"""Joint-encoder models: an amortised ``q(z|X)`` network beside the unimodal encoders.

:class:`JointVAE` is the shared base of JMVAE and JNF: a joint encoder for the complete
observation, one unimodal posterior per modality, one decoder per modality and a standard prior.
Subsets are aggregated as the product of the unimodal posteriors over the prior,
``p(z|x_S) ∝ prod_{j in S} q_j(z|x_j) / p(z)^(|S|-1)`` (exact when modalities are conditionally
independent given ``z`` and each ``q_j = p(z|x_j)``), which has no closed form for flows and is
sampled with Hamiltonian Monte Carlo.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from repro.distributions import rsample
from repro.losses import elbo, subset_log_density
from repro.models.base import Batch, MultimodalVAE, require_complete, split_batch
from repro.samplers import JNF_REFERENCE, RECOMMENDED, hmc

__all__ = ["JointVAE", "SubsetPosterior"]

HMC_SETTINGS = frozenset(RECOMMENDED) | frozenset(JNF_REFERENCE)  # keywords of repro.samplers.hmc


class SubsetPosterior(Distribution):
    """``p(z|x_S) ∝ prod_j q_j(z|x_j) / p(z)^e``: an *unnormalised* ``log_prob``, HMC sampling.

    Args:
        posteriors: the unimodal posteriors of the subset, batch ``(B,)``, event ``(D,)``.
        prior: ``p(z)``.
        prior_exponent: ``e``; ``None`` means ``|S| - 1`` (exact).
        hmc_kwargs: keyword arguments of :func:`repro.samplers.hmc` for :meth:`sample`
            (default :data:`repro.samplers.RECOMMENDED`: step-size adaptation on discarded
            warm-up steps; :data:`repro.samplers.JNF_REFERENCE` is the public code's).
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(
        self,
        posteriors: Sequence[Distribution],
        prior: Distribution,
        prior_exponent: float | None = None,
        hmc_kwargs: Mapping[str, float] | None = None,
    ) -> None:
        self.posteriors, self.prior = list(posteriors), prior
        self.prior_exponent = prior_exponent
        self.hmc_kwargs = dict(RECOMMENDED if hmc_kwargs is None else hmc_kwargs)
        first = self.posteriors[0]
        super().__init__(first.batch_shape, first.event_shape, validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        """Unnormalised ``log p(z|x_S)`` at ``value`` ``(..., B, D)``; returns ``(..., B)``."""
        return subset_log_density(value, self.posteriors, self.prior, self.prior_exponent)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple[int, ...] = (), generator=None) -> Tensor:
        """HMC draws, initialised by a mixture-of-experts draw pushed through each expert.

        Args:
            sample_shape: ``(n,)`` (one leading dimension at most).
            generator: source of all sampling noise (``None``: the global RNG).

        Returns:
            ``(n, B, D)`` samples (``(B, D)`` for an empty ``sample_shape``).
        """
        shape = torch.Size(sample_shape)
        if len(shape) > 1:
            raise ValueError(f"sample_shape must have at most one dimension, got {tuple(shape)}")
        n = shape[0] if shape else 1
        draws = torch.stack([rsample(q, (n,), generator) for q in self.posteriors])
        pick = torch.randint(len(self.posteriors), draws.shape[1:3], generator=generator)
        pick = pick.to(draws.device)
        z0 = torch.gather(draws, 0, pick[None, ..., None].expand(1, *draws.shape[1:])).squeeze(0)
        result = hmc(self.log_prob, z0, generator=generator, **self.hmc_kwargs)
        z = result.samples[-1]
        return z if shape else z[0]


class JointVAE(MultimodalVAE):
    """Joint generative model ``p(z) prod_j p(x_j|z)`` with a joint encoder ``q(z|X)``.

    ``posterior(x)`` over all modalities is the joint encoder; over one modality, that
    modality's encoder; over a partial subset, a :class:`SubsetPosterior`. :meth:`bound` is the
    multimodal ELBO of the joint encoder (the unimodal encoders are trained by subclasses).

    Args:
        joint_encoder: maps the dict of all modalities to ``q(z|X)`` (batch ``(B,)``).
        encoders: unimodal posteriors ``x_j -> q_j(z|x_j)`` (Gaussian encoders or flows).
        decoders: ``z -> p(x_j|z)`` per modality.
        latent_dim: ``D``.
        beta: KL weight of the joint ELBO.
        weights: likelihood rescaling ``lambda_j`` of the joint ELBO.
        prior_exponent: exponent ``e`` of ``p(z)`` in subset posteriors; ``None`` = ``|S|-1``
            (exact), ``1.0`` reproduces the public implementations.
        hmc_kwargs: keyword arguments of :func:`repro.samplers.hmc` for subset posteriors
            (default :data:`repro.samplers.RECOMMENDED`, chosen on linear-Gaussian subset
            posteriors where the reference settings, :data:`repro.samplers.JNF_REFERENCE`,
            are biased by up to 0.38 posterior standard deviations; see
            ``benchmarks/hmc_mixing.py``).

    References:
        Suzuki, Nakayama, Matsuo, "Joint Multimodal Learning with Deep Generative Models",
        arXiv 1611.01891 (the joint encoder of JMVAE); Senellart & Allassonniere,
        arXiv 2502.03952 (stage 1 of JNF; subset posteriors by PoE + HMC).
    """

    def __init__(
        self,
        joint_encoder: nn.Module,
        encoders: Mapping[str, nn.Module],
        decoders: Mapping[str, nn.Module],
        latent_dim: int,
        beta: float = 1.0,
        weights: Mapping[str, float] | None = None,
        prior_exponent: float | None = None,
        hmc_kwargs: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(encoders, decoders, latent_dim)
        self.joint_encoder = joint_encoder
        self.beta, self.weights = beta, dict(weights or {})
        self.prior_exponent = prior_exponent
        self.hmc_kwargs = dict(RECOMMENDED if hmc_kwargs is None else hmc_kwargs)
        self._check_hmc(self.hmc_kwargs)

    @staticmethod
    def _check_hmc(settings: Mapping[str, float]) -> None:
        unknown = sorted(set(settings) - HMC_SETTINGS)
        if unknown:
            raise ValueError(f"unknown HMC settings {unknown}; valid: {sorted(HMC_SETTINGS)}")

    def joint_modules(self) -> nn.ModuleDict:
        """The joint encoder and the decoders as one module: what the joint ELBO trains.

        Returns:
            A ``ModuleDict`` with state keys ``encoder.*`` and ``decoders.*``.
        """
        return nn.ModuleDict({"encoder": self.joint_encoder, "decoders": self.decoders})

    @staticmethod
    def _complete(mask: Tensor | None, what: str) -> None:
        require_complete(
            mask,
            f"{what}: the joint encoder needs every modality of every sample; this model "
            "trains on complete batches (drop the incomplete samples or use a PoE/MoE model)",
        )

    def posterior(
        self,
        x: Mapping[str, Tensor],
        subset: Sequence[str] | None = None,
        mask: Tensor | None = None,
    ) -> Distribution:
        """``q(z|X)``, ``q_j(z|x_j)`` or the unnormalised :class:`SubsetPosterior`.

        Args:
            x: observations of the subset.
            subset: conditioning modalities (default: all).
            mask: optional ``(B, M)`` presence mask; must be all present (complete batches).

        Returns:
            A distribution with batch ``(B,)`` and event ``(D,)``.
        """
        subset = self.check_subset(subset)
        self._complete(mask, "posterior")
        if subset == self.modalities:
            return self.joint_encoder(x)
        if len(subset) == 1:
            return self.encoders[subset[0]](x[subset[0]])
        return SubsetPosterior(
            [self.encoders[m](x[m]) for m in subset],
            self.prior(),
            self.prior_exponent,
            self.hmc_kwargs,
        )

    def bound(self, batch: Batch) -> Tensor:
        """The multimodal ELBO of the joint encoder, one reparameterised sample, ``(B,)``."""
        x, mask = split_batch(batch, self.modalities)
        self._complete(mask, "bound")
        qz_x = self.joint_encoder(x)
        z = qz_x.rsample()
        return elbo(x, qz_x, self.decode(z), self.prior(), z, beta=self.beta, weights=self.weights)

    def subset_log_density(
        self, x: Mapping[str, Tensor], subset: Sequence[str], z: Tensor
    ) -> Tensor:
        """Unnormalised ``log p(z|x_S)`` from the unimodal posteriors (PoE over the prior)."""
        subset = self.check_subset(subset)
        posteriors = [self.encoders[m](x[m]) for m in subset]
        return subset_log_density(z, posteriors, self.prior(), self.prior_exponent)

    @torch.no_grad()
    def sample_posterior(
        self,
        x: Mapping[str, Tensor],
        subset: Sequence[str] | None = None,
        n: int = 1,
        generator: torch.Generator | None = None,
        **hmc_kwargs: float,
    ) -> Tensor:
        """Draw ``z ~ p(z|x_S)``: the joint encoder, one unimodal posterior, or HMC.

        Args:
            x: observations; only the subset's modalities are read (all for the joint case).
            subset: the conditioning modalities (default: all).
            n: samples per data point.
            generator: source of all sampling noise.
            **hmc_kwargs: overrides of the HMC settings (keywords of :func:`repro.samplers.hmc`).

        Returns:
            ``(n, B, D)`` latent samples.
        """
        self._check_hmc(hmc_kwargs)
        q = self.posterior(x, subset)
        if isinstance(q, SubsetPosterior):
            q.hmc_kwargs.update(hmc_kwargs)
            return q.sample((n,), generator=generator)
        return rsample(q, (n,), generator)
