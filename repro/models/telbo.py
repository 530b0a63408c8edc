"""TELBO: a joint VAE whose unimodal encoders are fitted afterwards, on the decoders it learned.

Training is staged; each stage is one call of :func:`repro.train.fit` on what
:meth:`TELBO.prepare_stage` returns (or :func:`repro.train.fit_stages` over both):

1. ``"joint"``: the joint encoder and the decoders, :meth:`TELBO.joint_bound`, the multimodal
   ELBO ``E_{q(z|X)}[sum_m lambda_m log p(x_m|z)] - KL(q(z|X) || p)``;
2. ``"unimodal"``: the unimodal encoders, with the joint encoder and the decoders frozen,
   :meth:`TELBO.unimodal_bound`, ``sum_m [gamma_m E_{q_m} log p(x_m|z) - KL(q_m || p)]``.

:meth:`TELBO.bound` is the whole triple ELBO, the sum of the two stages' objectives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from repro.distributions import gaussian_params, product_of_experts
from repro.losses.bounds import elbo
from repro.losses.coordination import telbo
from repro.models.base import Batch, Stage, split_batch
from repro.models.joint import JointVAE

__all__ = ["SUBSET_POSTERIORS", "UNIMODAL_KLS", "TELBO"]

SUBSET_POSTERIORS = ("poe_prior", "hmc")  # partial subsets: PoE with p(z), or PoE over p + HMC
UNIMODAL_KLS = ("exact", "multivae")  # the stage-2 KL: KL(q_m || p), or MultiVae's expression


class TELBO(JointVAE):
    """The triple-ELBO model of Vedantam et al., trained in two stages as MultiVae's ``TELBO``.

    Generative model ``p(z) prod_m p(x_m|z)``; inference by a joint encoder ``q(z|X)`` and one
    unimodal encoder ``q_m = q(z|x_m)`` per modality. The objective
    (:func:`repro.losses.coordination.telbo`) is the sum of ``1 + M`` ELBOs,

    ``L(X) + sum_m [E_{q_m} gamma_m log p(x_m|z) - KL(q_m || p)]``, with
    ``L(X) = E_{q(z|X)}[sum_m lambda_m log p(x_m|z)] - KL(q(z|X) || p)``;

    with ``lambda = gamma = 1`` it lower-bounds ``log p(X) + sum_m log p(x_m)``.

    **Stages** (MultiVae ``telbo_model.py:58-124``, where one ``warmup`` epoch count switches
    from the first to the second and the optimiser is reset, ``reset_optimizer_epochs``):

    * ``"joint"`` trains the joint encoder and the decoders on ``L(X)``
      (:meth:`joint_bound`); the unimodal encoders do not enter it.
    * ``"unimodal"`` freezes the joint encoder **and** the decoders (``requires_grad_(False)``
      on both, ``telbo_model.py:58-63``) and trains the unimodal encoders on
      ``sum_m [gamma_m E_{q_m} log p(x_m|z) - KL(q_m || p)]`` (:meth:`unimodal_bound`). Each
      unimodal ELBO reconstructs **only its own modality** ``x_m`` from ``z_m ~ q_m``
      (``telbo_model.py:105-122``), not the others. The decoders still pass gradients to
      ``z_m``; they are not updated.

    MultiVae's ``warmup`` (default 10 epochs, ``telbo_config.py``, which recommends half of the
    training time) is here the number of epochs of the ``"joint"`` stage's config, and the
    rest of MultiVae's epochs those of the ``"unimodal"`` stage. Each stage starts with a fresh
    optimiser (as ``reset_optimizer_epochs`` does).

    **Weights.** ``weights`` (``lambda_m``, MultiVae ``lambda_factors``) rescale the joint
    ELBO's likelihoods and ``unimodal_weights`` (``gamma_m``, ``gamma_factors``) the unimodal
    ones; both default to 1 here. MultiVae defaults both to its ``rescale_factors``
    (``max_m dim(x_m) / dim(x_m)`` when likelihood rescaling is on, which ``TELBOConfig``
    turns on by default, else 1). There is no KL weight (MultiVae's ``TELBO`` has none).

    **The stage-2 KL.** MultiVae computes it as ``-1/2 sum(1 + log s_J^2 - mu_m^2 - s_m^2)``
    (``telbo_model.py:118-120``) with ``s_J`` the *joint* encoder's scale where the KL of
    ``q_m`` has ``log s_m^2``: ``KL(q_m || p) + sum(log s_m - log s_J)``. That drops the
    unimodal entropy from the gradient, so nothing in the loss keeps ``s_m`` from 0.
    ``unimodal_kl="exact"`` (default) uses ``KL(q_m || p)``; ``"multivae"`` reproduces
    MultiVae's expression in stage 2 (:meth:`bound` always reports the true triple ELBO).

    **Posteriors.** All modalities: the joint encoder; one modality: its unimodal encoder
    (MultiVae ``telbo_model.py:154-161``). A partial subset ``S`` (``1 < |S| < M``) is refused by
    MultiVae (``telbo_model.py:163-166``). Here, with ``subset_posterior="poe_prior"`` (default)
    it is the product of the subset's unimodal experts and the prior ``p(z) prod_{m in S} q_m``,
    a Gaussian sampled directly: the rule of the paper's product-of-experts inference network
    for partially specified concepts, with the prior as an expert (there the experts are the
    attribute-wise factors of ``q(z|y)``, not whole modalities; that the prior is one of them
    is from our reading, not checked against the paper's text). Applied to whole modalities
    whose ``q_m`` are posteriors, it counts the prior ``|S| + 1`` times where the exact
    combination counts it once. With ``"hmc"`` it is the
    :class:`repro.models.joint.SubsetPosterior` ``prod_m q_m / p(z)^(|S|-1)``, exact when each
    ``q_m = p(z|x_m)``, sampled by HMC as in JNF.

    The joint encoder needs every modality: batches must be complete (a presence mask, if
    given, must be all true), as in MultiVae.

    Args:
        joint_encoder: ``X -> q(z|X)`` (e.g. :class:`repro.models.encoders.JointMLPEncoder`).
        encoders: ``{m: x_m -> q(z|x_m)}``, diagonal-Gaussian encoders.
        decoders: ``{m: z -> p(x_m|z)}``.
        latent_dim: ``D``.
        weights: ``lambda_m`` of the joint ELBO (default 1).
        unimodal_weights: ``gamma_m`` of the unimodal ELBOs (default 1).
        subset_posterior: ``"poe_prior"`` (default) or ``"hmc"``, see above.
        unimodal_kl: ``"exact"`` (default) or ``"multivae"``, see above.
        prior_exponent: exponent of ``p(z)`` for ``"hmc"`` subsets (``None``: ``|S| - 1``).
        hmc_kwargs: HMC settings for ``"hmc"`` subsets.

    Raises:
        ValueError: for an unknown ``subset_posterior`` or ``unimodal_kl``, or weights naming
            unknown modalities.

    References:
        Vedantam, Fischer, Huang & Murphy, "Generative Models of Visually Grounded
        Imagination", ICLR 2018, arXiv 1705.10762 (the triple ELBO and the product-of-experts
        inference network, from the abstract and MultiVae's docstring; the two-stage fit and
        the equation numbers not checked against the paper's text); MultiVae
        ``models/telbo/telbo_model.py`` and ``telbo_config.py`` (AgatheSenellart/MultiVae
        @ 2822b3b).
    """

    def __init__(
        self,
        joint_encoder: nn.Module,
        encoders: Mapping[str, nn.Module],
        decoders: Mapping[str, nn.Module],
        latent_dim: int,
        weights: Mapping[str, float] | None = None,
        unimodal_weights: Mapping[str, float] | None = None,
        subset_posterior: str = "poe_prior",
        unimodal_kl: str = "exact",
        prior_exponent: float | None = None,
        hmc_kwargs: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(
            joint_encoder, encoders, decoders, latent_dim, 1.0, weights, prior_exponent, hmc_kwargs
        )
        if subset_posterior not in SUBSET_POSTERIORS:
            raise ValueError(
                f"subset_posterior must be one of {SUBSET_POSTERIORS}, got {subset_posterior!r}"
            )
        if unimodal_kl not in UNIMODAL_KLS:
            raise ValueError(f"unimodal_kl must be one of {UNIMODAL_KLS}, got {unimodal_kl!r}")
        self.unimodal_weights = dict(unimodal_weights or {})
        for what, given in (("weights", self.weights), ("unimodal_weights", self.unimodal_weights)):
            unknown = sorted(set(given) - set(self.modalities))
            if unknown:
                raise ValueError(
                    f"{what} name unknown modalities {unknown}; have {self.modalities}"
                )
        self.subset_posterior, self.unimodal_kl = subset_posterior, unimodal_kl

    # -- stages ----------------------------------------------------------------------------
    @property
    def stages(self) -> tuple[str, ...]:
        """The training stages, in order: ``("joint", "unimodal")``."""
        return ("joint", "unimodal")

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

    def _stage_module(self, stage: str) -> nn.Module:
        return self.joint_modules() if stage == "joint" else self.encoders

    def prepare_stage(self, stage: str) -> Stage:
        """Freeze all but ``stage`` and return what :func:`repro.train.fit` trains for it.

        Args:
            stage: ``"joint"`` (joint encoder and decoders) or ``"unimodal"`` (the unimodal
                encoders).

        Returns:
            The :class:`repro.models.base.Stage`: the stage's module and its objective.

        Raises:
            ValueError: for an unknown stage.
        """
        self.set_stage(stage)
        bound = self.joint_bound if stage == "joint" else self.unimodal_bound
        return Stage(self._stage_module(stage), bound)

    def joint_bound(self, batch: Batch) -> Tensor:
        """Stage ``"joint"``: the multimodal ELBO of the joint encoder, one sample, ``(B,)``."""
        return JointVAE.bound(self, batch)

    def unimodal_elbos(self, x: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``{m: gamma_m log p(x_m|z_m) - KL(q_m || p)}`` at one ``z_m ~ q_m`` each, ``(B,)``.

        The KL is the stage's (``unimodal_kl``): exact, or MultiVae's expression.

        Args:
            x: observations of every modality, ``(B, ...)`` each.

        Returns:
            Per modality, ``(B,)`` unimodal ELBOs (self-reconstruction only).
        """
        pz = self.prior()
        if self.unimodal_kl == "multivae":
            with torch.no_grad():
                _, joint_scale = gaussian_params(self.joint_encoder(x))
        out = {}
        for m in self.modalities:
            q_m = self.encoders[m](x[m])
            z_m = q_m.rsample()
            weights = {m: self.unimodal_weights.get(m, 1.0)}
            value = elbo({m: x[m]}, q_m, {m: self.decoders[m](z_m)}, pz, z_m, weights=weights)
            if self.unimodal_kl == "multivae":  # -1/2 sum(1 + log s_J^2 - ...), l. 118-120
                _, scale = gaussian_params(q_m)
                value = value - (scale.log() - joint_scale.log()).sum(-1)
            out[m] = value
        return out

    def unimodal_bound(self, batch: Batch) -> Tensor:
        """Stage ``"unimodal"``: ``sum_m [gamma_m E_{q_m} log p(x_m|z) - KL(q_m || p)]``, ``(B,)``.

        One reparameterised sample per modality; see :meth:`unimodal_elbos`.

        Args:
            batch: every modality's observations (complete samples).

        Returns:
            ``(B,)`` values to maximise.
        """
        x, mask = split_batch(batch, self.modalities)
        self._complete(mask, "unimodal_bound")
        return sum(self.unimodal_elbos(x).values())

    def bound(self, batch: Batch) -> Tensor:
        """The triple ELBO per sample, ``(B,)``: the sum of both stages' objectives.

        One reparameterised sample of ``q(z|X)`` and of each ``q_m``; the KLs in closed form
        where torch has one, else estimated at those samples. The KL of each ``q_m`` is always
        ``KL(q_m || p)`` (also with ``unimodal_kl="multivae"``). Each stage trains its part.

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
        qz_xm = self.encode(x)
        z_uni = {m: q.rsample() for m, q in qz_xm.items()}
        log_px_uni = {
            m: self.unimodal_weights.get(m, 1.0) * self.decoders[m](z_uni[m]).log_prob(x[m])
            for m in self.modalities
        }
        return telbo(log_px, log_px_uni, qz_x, qz_xm, self.prior(), z=z, z_uni=z_uni)

    # -- inference -------------------------------------------------------------------------
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
        if self.subset_posterior == "poe_prior" and 1 < len(chosen) < len(self.modalities):
            self._complete(mask, "posterior")
            experts = [self.encoders[m](x[m]) for m in chosen]
            return product_of_experts(experts, prior=self.prior())
        return super().posterior(x, chosen, mask)
