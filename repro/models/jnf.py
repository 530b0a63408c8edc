"""JNF and JNF-Shared (JNF-DCCA): a joint VAE plus unimodal posteriors fitted to it in stages.

Training is staged; each stage is one call of :func:`repro.train.fit` on what
:meth:`JNF.prepare_stage` returns:

1. ``"projectors"`` (JNF-Shared only): DCCA projectors ``g_j``, :meth:`JNF.projector_bound`.
2. ``"joint"``: the joint encoder and decoders, :meth:`JNF.joint_bound` (multimodal ELBO).
3. ``"unimodal"``: the unimodal posteriors ``q_j(z|x_j)`` with the joint model frozen,
   :meth:`JNF.unimodal_bound` (``sum_j log q_j(z|x_j)`` at ``z ~ q(z|X)``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from repro.distributions import gaussian_params
from repro.losses import dcca, elbo, jnf_ljm
from repro.models.base import Batch, Stage, split_batch
from repro.models.joint import JointVAE

__all__ = ["JNF", "QZ_LOC", "QZ_SCALE"]

QZ_LOC, QZ_SCALE = "qz_x.loc", "qz_x.scale"  # batch keys of the frozen joint posterior (stage 2)


class JNF(JointVAE):
    """Joint Normalizing Flows, and its Gaussian baseline and JNF-Shared variants.

    The unimodal posteriors may be flows (JNF), plain Gaussians (the Gaussian baseline), or
    flows on frozen projections (JNF-Shared).

    Several ``JNF`` instances may share one joint encoder and decoder set (pass the same
    modules); training the ``"joint"`` stage of one of them then trains it for all.

    Args:
        joint_encoder: ``X -> q(z|X)``.
        encoders: one posterior module per modality, ``x_j -> q_j(z|x_j)``: a Gaussian encoder
            or a :class:`repro.flows.FlowPosterior` (JNF).
        decoders: ``z -> p(x_j|z)`` per modality.
        latent_dim: ``D``.
        projectors: optional ``g_j`` per modality (JNF-Shared); the unimodal posteriors are
            expected to consume them (:class:`repro.models.encoders.ProjectedEncoder`).
        beta: KL weight of the joint ELBO (``beta_prior``; JNF default 1).
        weights: likelihood rescaling ``lambda_j`` of the joint ELBO.
        prior_exponent: exponent of ``p(z)`` in subset posteriors (``None``: ``|S|-1``, exact;
            ``1.0``: the public implementations, exact only for ``|S| = 2``).
        hmc_kwargs: HMC settings for subset posteriors.
        dcca_top_k: correlations kept by the DCCA objective (JNF toy: 1).
        dcca_r: ridge of the DCCA objective (Andrew et al.: 1e-3).

    References:
        Senellart & Allassonniere, "Bridging the inference gap in Multimodal Variational
        Autoencoders", arXiv 2502.03952, Sec. 3 (JNF) and Sec. 4 (JNF-Shared).
    """

    def __init__(
        self,
        joint_encoder: nn.Module,
        encoders: Mapping[str, nn.Module],
        decoders: Mapping[str, nn.Module],
        latent_dim: int,
        projectors: Mapping[str, nn.Module] | None = None,
        beta: float = 1.0,
        weights: Mapping[str, float] | None = None,
        prior_exponent: float | None = None,
        hmc_kwargs: Mapping[str, float] | None = None,
        dcca_top_k: int | None = 1,
        dcca_r: float = 1e-3,
    ) -> None:
        super().__init__(
            joint_encoder, encoders, decoders, latent_dim, beta, weights, prior_exponent, hmc_kwargs
        )
        if projectors is not None and sorted(projectors) != self.modalities:
            raise ValueError(
                f"projectors {sorted(projectors)} must match modalities {self.modalities}"
            )
        self.projectors = nn.ModuleDict(dict(projectors)) if projectors is not None else None
        self.dcca_top_k, self.dcca_r = dcca_top_k, dcca_r

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
        self._check_stage(stage)
        self.requires_grad_(False)
        self._stage_module(stage).requires_grad_(True)
        if self.projectors is not None and stage != "projectors":
            self.projectors.requires_grad_(False)

    def _stage_module(self, stage: str) -> nn.Module:
        return {
            "projectors": self.projectors,
            "joint": self.joint_modules(),
            "unimodal": self.encoders,
        }[stage]

    def prepare_stage(self, stage: str) -> Stage:
        """Freeze all but ``stage`` and return what :func:`repro.train.fit` trains for it.

        Args:
            stage: one of :attr:`stages`.

        Returns:
            The :class:`repro.models.base.Stage`: the stage's module (its trainable
            parameters and state) and its objective.
        """
        self.set_stage(stage)
        bound = {
            "projectors": self.projector_bound,
            "joint": self.joint_bound,
            "unimodal": self.unimodal_bound,
        }[stage]
        if stage == "unimodal":
            return Stage(self._stage_module(stage), bound, self.with_joint_posterior)
        return Stage(self._stage_module(stage), bound)

    @torch.no_grad()
    def with_joint_posterior(
        self, data: Mapping[str, Tensor], batch_size: int = 4096
    ) -> dict[str, Tensor]:
        """Add the frozen joint posterior's parameters to ``data`` (stage ``"unimodal"``).

        The joint encoder is frozen in stage 2, so ``q(z|X)`` is computed once per sample here
        instead of at every training step; :meth:`unimodal_bound` then only draws from it.

        Args:
            data: observations per modality, ``(N, ...)`` each.
            batch_size: encoding batch size.

        Returns:
            ``data`` plus ``(N, D)`` tensors under :data:`QZ_LOC` and :data:`QZ_SCALE`.
        """
        x, _ = split_batch(data, self.modalities)
        n = len(next(iter(x.values())))
        locs, scales = [], []
        for start in range(0, n, batch_size):
            q = self.joint_encoder({m: x[m][start : start + batch_size] for m in self.modalities})
            loc, scale = gaussian_params(q)
            locs.append(loc)
            scales.append(scale)
        return {**data, QZ_LOC: torch.cat(locs), QZ_SCALE: torch.cat(scales)}

    def joint_bound(self, batch: Batch) -> Tensor:
        """Stage ``"joint"``: the multimodal ELBO per sample, ``(B,)``."""
        return JointVAE.bound(self, batch)

    def unimodal_bound(self, batch: Batch) -> Tensor:
        """Stage ``"unimodal"``: ``sum_j log q_j(z|x_j)`` at one ``z ~ q(z|X)``, ``(B,)``."""
        x, mask = split_batch(batch, self.modalities)
        self._complete(mask, "unimodal_bound")
        with torch.no_grad():
            if QZ_LOC in x:  # computed once per sample by with_joint_posterior
                z = torch.normal(x[QZ_LOC], x[QZ_SCALE])
            else:
                z = self.joint_encoder(x).sample()
        return jnf_ljm({m: self.encoders[m](x[m]) for m in self.modalities}, z)

    def projector_bound(self, batch: Batch) -> Tensor:
        """Stage ``"projectors"``: the DCCA objective of the batch (a scalar)."""
        if self.projectors is None:
            raise ValueError("this JNF has no projectors (JNF-Shared only)")
        x, _ = split_batch(batch, self.modalities)
        h = {m: self.projectors[m](x[m]) for m in self.modalities}
        return dcca(h, top_k=self.dcca_top_k, r=self.dcca_r)

    def bound(self, batch: Batch) -> Tensor:
        """The whole-model objective, JMVAE-KL with ``alpha = 1``, per sample ``(B,)``.

        ``ELBO(X) - sum_j KL(q(z|X) || q_j(z|x_j))``, the KLs estimated at the ELBO's single
        sample ``z ~ q(z|X)``. The stages optimise its parts in turn; this is for evaluation
        and comparison across models.
        """
        x, mask = split_batch(batch, self.modalities)
        self._complete(mask, "bound")
        qz_x = self.joint_encoder(x)
        z = qz_x.rsample()
        joint = elbo(x, qz_x, self.decode(z), self.prior(), z, beta=self.beta, weights=self.weights)
        log_q = qz_x.log_prob(z)
        gap = sum(log_q - self.encoders[m](x[m]).log_prob(z) for m in self.modalities)
        return joint - gap
