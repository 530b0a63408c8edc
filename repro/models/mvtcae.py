"""MVTCAE: a product of unimodal experts (no prior expert) trained with a total-correlation bound.

:class:`PoEVAEBase` holds what MVTCAE and CRMVAE share: the aggregation ``q(z|x_S) ∝
prod_{m in S} q(z|x_m)`` (optionally times the prior expert), the presence mask (an absent
expert contributes no precision) and the per-modality reconstruction terms of a batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn
from torch.distributions import Distribution

from repro.distributions import product_of_experts
from repro.losses.coordination import mvtcae
from repro.models.base import Batch, MultimodalVAE

__all__ = ["MODALITY_COUNTS", "PoEVAEBase", "JointTerms", "MVTCAE"]

MODALITY_COUNTS = ("present", "all")  # the M of the weights under a mask


@dataclass
class JointTerms:
    """The pieces of a batch's bound computed from the joint PoE posterior.

    Attributes:
        x: observations per modality, ``(B, ...)``.
        mask: the ``(B, M)`` presence mask, or ``None``.
        qz_xm: ``{m: q(z|x_m)}``, batch ``(B,)``.
        qz_x: ``q(z|X)``, the PoE of the present experts, batch ``(B,)``.
        z: ``(B, D)``, one reparameterised sample of ``q(z|X)``.
        log_px: ``{m: lambda_m log p(x_m|z)}``, each ``(B,)``.
    """

    x: dict[str, Tensor]
    mask: Tensor | None
    qz_xm: dict[str, Distribution]
    qz_x: Distribution
    z: Tensor
    log_px: dict[str, Tensor]


class PoEVAEBase(MultimodalVAE):
    """Shared base of MVTCAE and CRMVAE: PoE aggregation, masks, likelihood rescaling.

    Args:
        encoders: ``{m: x_m -> q(z|x_m)}``, diagonal-Gaussian encoders.
        decoders: ``{m: z -> p(x_m|z)}``.
        latent_dim: ``D``.
        weights: likelihood rescaling ``lambda_m`` per modality (default 1; MultiVae
            ``rescale_factors``).
        modality_count: the ``M`` of the objective's weights under a mask: ``"present"``
            (default; per sample, so a masked bound is the bound of the sub-model of present
            modalities) or ``"all"`` (MultiVae: always the total number of modalities).
        poe_prior_expert: include ``p(z)`` as an expert (MVAE convention); ``False`` (default)
            is the MVTCAE/CRMVAE convention.

    Raises:
        ValueError: for an unknown ``modality_count`` or weights naming unknown modalities.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        decoders: Mapping[str, nn.Module],
        latent_dim: int,
        weights: Mapping[str, float] | None = None,
        modality_count: str = "present",
        poe_prior_expert: bool = False,
    ) -> None:
        super().__init__(encoders, decoders, latent_dim)
        if modality_count not in MODALITY_COUNTS:
            raise ValueError(
                f"modality_count must be one of {MODALITY_COUNTS}, got {modality_count!r}"
            )
        self.weights = dict(weights or {})
        unknown = sorted(set(self.weights) - set(self.modalities))
        if unknown:
            raise ValueError(f"weights name unknown modalities {unknown}; have {self.modalities}")
        self.modality_count = modality_count
        self.poe_prior_expert = poe_prior_expert

    @property
    def n_modalities(self) -> int | None:
        """``M`` passed to the objective: ``None`` (count present) or the total number."""
        return None if self.modality_count == "present" else len(self.modalities)

    def aggregate(
        self, experts: Mapping[str, Distribution], mask: Tensor | None = None
    ) -> Distribution:
        """``q(z|x_S) ∝ prod_{m in S} q(z|x_m)`` over the present experts (times ``p(z)``).

        Args:
            experts: ``{m: q(z|x_m)}`` in sorted order, batch ``(B,)``, event ``(D,)``.
            mask: optional ``(B, |S|)`` presence mask; an absent expert has zero precision.

        Returns:
            The product, a diagonal Gaussian with batch ``(B,)`` and event ``(D,)``.
        """
        prior = self.prior() if self.poe_prior_expert else None
        return product_of_experts(list(experts.values()), prior=prior, mask=mask)

    def log_likelihoods(self, x: Mapping[str, Tensor], z: Tensor) -> dict[str, Tensor]:
        """``{m: lambda_m log p(x_m|z)}`` for every modality.

        Args:
            x: observations per modality, ``(B, ...)``.
            z: ``(..., B, D)`` latents.

        Returns:
            ``(..., B)`` log-likelihoods per modality.
        """
        return {m: self.weights.get(m, 1.0) * p.log_prob(x[m]) for m, p in self.decode(z).items()}

    def joint_terms(self, batch: Batch) -> JointTerms:
        """Encode a batch, aggregate the present experts, sample and decode once.

        Args:
            batch: observations of every modality (placeholders where absent), optionally
                with a :data:`repro.models.base.MASK`.

        Returns:
            The :class:`JointTerms`.

        Raises:
            ValueError: when a modality is missing from the batch.
        """
        x, mask, qz_xm = self.encode_batch(batch)
        qz_x = self.aggregate(qz_xm, mask)
        z = qz_x.rsample()
        return JointTerms(x, mask, qz_xm, qz_x, z, self.log_likelihoods(x, z))


class MVTCAE(PoEVAEBase):
    """Multi-View Total Correlation Auto-Encoder.

    ``q(z|X) ∝ prod_m q(z|x_m)`` (no prior expert); the objective is
    ``(M-a)/M E[log p(X|z)] - beta[(1-a) KL(q(z|X)||p) + a/M sum_m KL(q(z|X)||q_m)]``
    (:func:`repro.losses.coordination.mvtcae`). Subsets ``S`` are encoded by the PoE of their
    experts (MultiVae ``mvtcae_model.py:171-211``).

    Args:
        encoders: ``{m: x_m -> q(z|x_m)}``, diagonal-Gaussian encoders.
        decoders: ``{m: z -> p(x_m|z)}``.
        latent_dim: ``D``.
        alpha: total-correlation ratio in ``[0, 1]`` (MultiVae default 0.1,
            ``mvtcae_config.py:35``).
        beta: weight of all KLs (MultiVae default 2.5, ``mvtcae_config.py:36``).
        weights: likelihood rescaling ``lambda_m`` (default 1).
        modality_count: ``"present"`` (default) or ``"all"`` (MultiVae), see
            :class:`PoEVAEBase`.
        poe_prior_expert: include ``p(z)`` in the product (default ``False``, as MVTCAE).

    Raises:
        ValueError: for ``alpha`` outside ``[0, 1]``, and see :class:`PoEVAEBase`.

    References:
        Hwang, Kim, Lee & Kim, "Multi-View Representation Learning via Total Correlation
        Objective", NeurIPS 2021; MultiVae ``models/mvtcae/`` (AgatheSenellart/MultiVae
        @ 2822b3b).
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        decoders: Mapping[str, nn.Module],
        latent_dim: int,
        alpha: float = 0.1,
        beta: float = 2.5,
        weights: Mapping[str, float] | None = None,
        modality_count: str = "present",
        poe_prior_expert: bool = False,
    ) -> None:
        super().__init__(encoders, decoders, latent_dim, weights, modality_count, poe_prior_expert)
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got alpha={alpha}")
        self.alpha, self.beta = alpha, beta

    def bound(self, batch: Batch) -> Tensor:
        """The MVTCAE objective, one reparameterised sample, ``(B,)``.

        Args:
            batch: observations per modality, optionally with a presence mask.

        Returns:
            ``(B,)`` values to maximise.
        """
        t = self.joint_terms(batch)
        return mvtcae(
            t.log_px,
            t.qz_x,
            t.qz_xm,
            self.prior(),
            alpha=self.alpha,
            beta=self.beta,
            z=t.z,
            mask=t.mask,
            n_modalities=self.n_modalities,
        )
