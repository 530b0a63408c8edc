"""CRMVAE: MVTCAE's PoE and KL terms plus unimodal self-reconstructions (Suzuki & Matsuo)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from repro.losses.coordination import RECON_WEIGHTS, crmvae
from repro.models.base import Batch
from repro.models.mvtcae import PoEVAEBase

__all__ = ["CRMVAE"]


class CRMVAE(PoEVAEBase):
    """The coordination-based model with unimodal reconstruction terms.

    ``q(z|X) ∝ prod_m q(z|x_m)`` (no prior expert, MultiVae ``base_utils.poe``), ``pi = 1/(M+1)``;
    the objective (:func:`repro.losses.coordination.crmvae`) is

    ``c sum_m (E_{q(z|X)} log p(x_m|z) + E_{q_m} log p(x_m|z))
    - beta pi (KL(q(z|X)||p) + sum_m KL(q(z|X)||q_m))``,

    with ``c = pi`` (``recon_weight="docstring"``, the MultiVae docstring) or ``c = pi/2``
    (``"half"``, what MultiVae's ``crmvae_model.py:106`` computes since commit 63c22eb). The
    unimodal term decodes ``x_m`` from ``z_m ~ q(z|x_m)`` (self-reconstruction,
    ``crmvae_model.py:84-101``). Subsets are encoded by the PoE of their experts.

    Args:
        encoders: ``{m: x_m -> q(z|x_m)}``, diagonal-Gaussian encoders.
        decoders: ``{m: z -> p(x_m|z)}``.
        latent_dim: ``D``.
        beta: weight of the KLs (MultiVae default 2.5, ``crmvae_config.py:31``; its translated
            PolyMNIST script uses 0.1).
        recon_weight: ``"docstring"`` (default) or ``"half"``; record which one a figure used.
        weights: likelihood rescaling ``lambda_m`` (default 1).
        modality_count: ``"present"`` (default) or ``"all"`` (MultiVae), see
            :class:`repro.models.mvtcae.PoEVAEBase`.
        poe_prior_expert: include ``p(z)`` in the product (default ``False``, as CRMVAE).

    Raises:
        ValueError: for an unknown ``recon_weight``, and see
            :class:`repro.models.mvtcae.PoEVAEBase`.

    References:
        Suzuki & Matsuo, "Mitigating the limitations of multimodal VAEs with coordination-based
        approach", ICLR 2023 submission, OpenReview Rn8u4MYgeNJ; MultiVae ``models/crmvae/``
        (AgatheSenellart/MultiVae @ 2822b3b).
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        decoders: Mapping[str, nn.Module],
        latent_dim: int,
        beta: float = 2.5,
        recon_weight: str = "docstring",
        weights: Mapping[str, float] | None = None,
        modality_count: str = "present",
        poe_prior_expert: bool = False,
    ) -> None:
        super().__init__(encoders, decoders, latent_dim, weights, modality_count, poe_prior_expert)
        if recon_weight not in RECON_WEIGHTS:
            raise ValueError(f"recon_weight must be one of {RECON_WEIGHTS}, got {recon_weight!r}")
        self.beta, self.recon_weight = beta, recon_weight

    def bound(self, batch: Batch) -> Tensor:
        """The CRMVAE objective, one reparameterised sample per posterior, ``(B,)``.

        Args:
            batch: observations per modality, optionally with a presence mask.

        Returns:
            ``(B,)`` values to maximise.
        """
        t = self.joint_terms(batch)
        log_px_uni = {
            m: self.weights.get(m, 1.0) * self.decoders[m](q.rsample()).log_prob(t.x[m])
            for m, q in t.qz_xm.items()
        }
        return crmvae(
            t.log_px,
            log_px_uni,
            t.qz_x,
            t.qz_xm,
            self.prior(),
            beta=self.beta,
            recon_weight=self.recon_weight,
            z=t.z,
            mask=t.mask,
            n_modalities=self.n_modalities,
        )
