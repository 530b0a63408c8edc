"""JNF and JNF-Shared (JNF-DCCA): a joint VAE plus refined unimodal posteriors.

Training is staged; each stage is one call of :func:`repro.train.fit` with the stage's bound:

1. ``"projectors"`` (JNF-Shared only): DCCA projectors ``g_j``, :meth:`JNF.projector_bound`.
2. ``"joint"``: the joint VAE, :meth:`JNF.joint_bound` (multimodal ELBO).
3. ``"unimodal"``: the unimodal posteriors ``q_j(z|x_j)`` with the joint model frozen,
   :meth:`JNF.unimodal_bound` (``sum_j log q_j(z|x_j)`` at ``z ~ q(z|X)``).

:meth:`JNF.prepare_stage` freezes everything but the stage's parameters and returns the module
and bound to train.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from repro.distributions import rsample
from repro.losses import dcca, jnf_ljm, subset_log_density
from repro.models.joint import JointVAE
from repro.samplers import hmc

__all__ = ["JNF"]


class JNF(nn.Module):
    """Joint Normalizing Flows model (unimodal posteriors may also be plain Gaussians).

    Args:
        joint: the joint VAE (may be shared between several ``JNF`` instances).
        unimodal: one posterior module per modality, ``x_j -> q_j(z|x_j)``: a Gaussian encoder
            (the JMVAE-style baseline) or a :class:`repro.flows.FlowPosterior` (JNF).
        projectors: optional ``g_j`` per modality (JNF-Shared); the unimodal posteriors are
            expected to consume them (:class:`repro.models.encoders.ProjectedEncoder`).
        beta: KL weight of the joint ELBO (``beta_prior``).
        weights: likelihood rescaling ``lambda_j`` of the joint ELBO.
        prior_exponent: exponent ``e`` of ``p(z)`` in subset posteriors; ``None`` = ``|S|-1``
            (exact), ``1.0`` reproduces the public implementations.
        dcca_top_k: correlations kept by the DCCA objective.
        dcca_r: ridge of the DCCA objective.

    References:
        Senellart & Allassonniere, "Bridging the inference gap in Multimodal Variational
        Autoencoders", arXiv 2502.03952.
    """

    def __init__(
        self,
        joint: JointVAE,
        unimodal: Mapping[str, nn.Module],
        projectors: Mapping[str, nn.Module] | None = None,
        beta: float = 1.0,
        weights: Mapping[str, float] | None = None,
        prior_exponent: float | None = None,
        dcca_top_k: int | None = 1,
        dcca_r: float = 1e-3,
    ) -> None:
        super().__init__()
        if sorted(unimodal) != joint.modalities:
            raise ValueError(
                f"unimodal posteriors {sorted(unimodal)} must match the joint model's "
                f"modalities {joint.modalities}"
            )
        if projectors is not None and sorted(projectors) != joint.modalities:
            raise ValueError(
                f"projectors {sorted(projectors)} must match modalities {joint.modalities}"
            )
        self.joint = joint
        self.unimodal = nn.ModuleDict(dict(unimodal))
        self.projectors = nn.ModuleDict(dict(projectors)) if projectors is not None else None
        self.beta, self.weights = beta, dict(weights or {})
        self.prior_exponent = prior_exponent
        self.dcca_top_k, self.dcca_r = dcca_top_k, dcca_r

    @property
    def modalities(self) -> list[str]:
        """Sorted modality names."""
        return self.joint.modalities

    @property
    def stages(self) -> tuple[str, ...]:
        """The training stages, in order."""
        return (("projectors",) if self.projectors is not None else ()) + ("joint", "unimodal")

    def set_stage(self, stage: str) -> None:
        """Make only ``stage``'s parameters trainable (``requires_grad``); freeze the rest.

        Args:
            stage: one of :attr:`stages`.

        Raises:
            ValueError: for an unknown stage.
        """
        if stage not in self.stages:
            raise ValueError(f"unknown stage {stage!r}; this model has stages {self.stages}")
        self.requires_grad_(False)
        trained = {"projectors": self.projectors, "joint": self.joint, "unimodal": self.unimodal}
        trained[stage].requires_grad_(True)
        if self.projectors is not None and stage != "projectors":
            self.projectors.requires_grad_(False)

    def prepare_stage(
        self, stage: str
    ) -> tuple[nn.Module, Callable[[Mapping[str, Tensor]], Tensor]]:
        """Freeze all but ``stage`` and return what :func:`repro.train.fit` trains for it.

        Args:
            stage: one of :attr:`stages`.

        Returns:
            ``(module, bound)``: the stage's module (its trainable parameters and state) and
            its objective.
        """
        self.set_stage(stage)
        return {
            "projectors": (self.projectors, self.projector_bound),
            "joint": (self.joint, self.joint_bound),
            "unimodal": (self.unimodal, self.unimodal_bound),
        }[stage]

    def joint_bound(self, x: Mapping[str, Tensor]) -> Tensor:
        """Stage ``"joint"``: the multimodal ELBO per sample, ``(B,)``."""
        return self.joint.bound(x, beta=self.beta, weights=self.weights)

    def unimodal_bound(self, x: Mapping[str, Tensor]) -> Tensor:
        """Stage ``"unimodal"``: ``sum_j log q_j(z|x_j)`` at one ``z ~ q(z|X)``, ``(B,)``."""
        with torch.no_grad():
            z = self.joint.encode(x).sample()
        return jnf_ljm({m: self.posterior(x, m) for m in self.modalities}, z)

    def projector_bound(self, x: Mapping[str, Tensor]) -> Tensor:
        """Stage ``"projectors"``: the DCCA objective of the batch (a scalar)."""
        if self.projectors is None:
            raise ValueError("this JNF has no projectors (JNF-Shared only)")
        h = {m: self.projectors[m](x[m]) for m in self.modalities}
        return dcca(h, top_k=self.dcca_top_k, r=self.dcca_r)

    def posterior(self, x: Mapping[str, Tensor], modality: str) -> Distribution:
        """``q_j(z|x_j)`` for one modality, batch ``(B,)``, event ``(D,)``."""
        if modality not in self.unimodal:
            raise ValueError(f"unknown modality {modality!r}; choose from {self.modalities}")
        return self.unimodal[modality](x[modality])

    def _check_subset(self, subset: Sequence[str]) -> list[str]:
        subset = sorted(set(subset))
        unknown = [m for m in subset if m not in self.unimodal]
        if not subset or unknown:
            raise ValueError(
                f"subset must be a non-empty list of modalities from {self.modalities}; "
                f"got {list(subset)}"
            )
        return subset

    def subset_log_density(
        self, x: Mapping[str, Tensor], subset: Sequence[str], z: Tensor
    ) -> Tensor:
        """Unnormalised ``log p(z|x_S)`` from the unimodal posteriors (PoE over the prior)."""
        subset = self._check_subset(subset)
        posteriors = [self.posterior(x, m) for m in subset]
        return subset_log_density(z, posteriors, self.joint.prior(), self.prior_exponent)

    @torch.no_grad()
    def sample_posterior(
        self,
        x: Mapping[str, Tensor],
        subset: Sequence[str],
        n: int = 1,
        generator: torch.Generator | None = None,
        hmc_steps: int = 100,
        n_leapfrog: int = 10,
        step_size: float = 0.01,
    ) -> Tensor:
        """Draw ``z ~ p(z|x_S)``.

        All modalities: the joint posterior. One modality: ``q_j``. Otherwise HMC on
        :meth:`subset_log_density`, initialised by a mixture-of-experts draw (a uniformly chosen
        ``q_j``, flow included).

        Args:
            x: observations; only the subset's modalities are read (all for the joint case).
            subset: the conditioning modalities.
            n: samples per data point.
            generator: source of all sampling noise.
            hmc_steps: MCMC steps (JNF default 100).
            n_leapfrog: leapfrog steps per MCMC step (default 10).
            step_size: leapfrog step size (default 0.01).

        Returns:
            ``(n, B, D)`` latent samples.
        """
        subset = self._check_subset(subset)
        if subset == self.modalities:
            return rsample(self.joint.encode(x), (n,), generator)
        posteriors = [self.posterior(x, m) for m in subset]  # encoded once, reused by HMC
        draws = torch.stack([rsample(q, (n,), generator) for q in posteriors])
        if len(subset) == 1:
            return draws[0]
        pick = torch.randint(len(subset), draws.shape[1:3], generator=generator)
        pick = pick.to(draws.device)
        z0 = torch.gather(draws, 0, pick[None, ..., None].expand(1, *draws.shape[1:])).squeeze(0)
        prior = self.joint.prior()
        result = hmc(
            lambda z: subset_log_density(z, posteriors, prior, self.prior_exponent),
            z0,
            n_steps=hmc_steps,
            n_leapfrog=n_leapfrog,
            step_size=step_size,
            generator=generator,
        )
        return result.samples[-1]

    @torch.no_grad()
    def generate(
        self,
        x: Mapping[str, Tensor],
        subset: Sequence[str],
        n: int = 1,
        generator: torch.Generator | None = None,
        **hmc_kwargs: float,
    ) -> dict[str, Tensor]:
        """Conditional generation: decode ``z ~ p(z|x_S)`` into every modality.

        Args:
            x: observations of the subset.
            subset: conditioning modalities.
            n: samples per data point.
            generator: source of sampling noise.
            **hmc_kwargs: passed to :meth:`sample_posterior`.

        Returns:
            Per modality, ``(n, B, ...)`` decoder means (images in ``[0, 1]``).
        """
        z = self.sample_posterior(x, subset, n, generator, **hmc_kwargs)
        return {m: p.mean for m, p in self.joint.decode(z).items()}
