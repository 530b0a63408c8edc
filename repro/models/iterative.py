"""Multimodal iterative amortized inference: a refined PoE teacher distilled into unimodal students.

The source model is an MVAE (a product of experts with a prior expert, trained on the
sub-sampled MVAE objective). Its posterior ``lambda_0 = (mu_0, log sigma_0^2)`` over **all**
modalities is refined by a learned refiner that reads the ELBO gradient (Marino et al. 2018),

``lambda_{t+1} = refiner(lambda_t, nabla_lambda L(X; lambda_t))``, ``t = 0 .. T-1``,

and the refined ``q_{lambda_T}(z|X)`` is the teacher of one unimodal student encoder
``q_{phi_m}(z|x_m)`` per modality, used alone at test time.

Training is staged (:func:`repro.train.fit_stages`):

1. ``"source"``: the MVAE objective on the source encoders and the decoders.
2. ``"refine"``: the refiner on the mean refined ELBO, the students on the alignment KLs (and
   the decoders on the final ELBO when ``train_decoder``), the source encoders frozen; see
   :meth:`IterativeVAE.refine_bound`.

Every equation of the paper is inferred (see ``papers/iterative_amortized.md``); the choices are
constructor flags with documented defaults.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from repro.distributions import diag_gaussian, gaussian_params
from repro.losses.iterative import (
    ALIGN_DIRECTIONS,
    alignment_kl,
    elbo_gradients,
    elbo_of_params,
)
from repro.models.base import Batch, Stage, require_complete, split_batch
from repro.models.mvae import MVAE

__all__ = [
    "GRADIENT_ENCODINGS",
    "UPDATES",
    "LOGVAR_BOUNDS",
    "GradientStep",
    "Refiner",
    "refine",
    "IterativeVAE",
]

GRADIENT_ENCODINGS = ("layernorm", "log_sign")
UPDATES = ("gated", "replace", "residual")
LOGVAR_BOUNDS = (-15.0, 15.0)  # Marino's clamp of the refined log-variance

Decoders = Mapping[str, Callable[[Tensor], Distribution]]
Iterate = tuple[Tensor, Tensor]


class GradientStep(nn.Module):
    """Plain gradient ascent on the ELBO, ``lambda_{t+1} = lambda_t + eta g_t`` (no parameters).

    A baseline and a reference refiner: on a linear-Gaussian model with exact gradients it
    converges to the exact posterior for a small enough ``eta``. Same call signature as
    :class:`Refiner`.

    Args:
        eta: step size.

    Raises:
        ValueError: for ``eta <= 0``.
    """

    def __init__(self, eta: float) -> None:
        super().__init__()
        if eta <= 0:
            raise ValueError(f"eta must be > 0, got eta={eta}")
        self.eta = float(eta)

    def forward(
        self,
        loc: Tensor,
        logvar: Tensor,
        grad_loc: Tensor,
        grad_logvar: Tensor,
        features: Tensor | None = None,
    ) -> Iterate:
        """One gradient step.

        Args:
            loc: ``(B, D)`` current means.
            logvar: ``(B, D)`` current log-variances.
            grad_loc: ``(B, D)`` ``nabla_mu L``.
            grad_logvar: ``(B, D)`` ``nabla_{log sigma^2} L``.
            features: ignored (accepted for interchangeability with :class:`Refiner`).

        Returns:
            ``(loc, logvar)``, each ``(B, D)``.
        """
        return loc + self.eta * grad_loc, logvar + self.eta * grad_logvar


class Refiner(nn.Module):
    """Marino-style learned refiner: an MLP on the posterior parameters and their ELBO gradient.

    Input ``[mu_t, log sigma_t^2, enc(nabla_mu L), enc(nabla_{log sigma^2} L) (, features)]``,
    all detached (no backpropagation through the unrolled loop, as in Marino's code). Outputs a
    proposal ``(mu', log sigma'^2)`` and a gate ``gamma = sigmoid(.)`` per coordinate of
    ``lambda``; the update is

    * ``"gated"`` (default, Marino's ``highway`` update form):
      ``lambda_{t+1} = gamma * lambda_t + (1 - gamma) * proposal``;
    * ``"replace"``: ``lambda_{t+1} = proposal``;
    * ``"residual"``: ``lambda_{t+1} = lambda_t + proposal``,

    and the log-variance is clamped to :data:`LOGVAR_BOUNDS` (Marino's ``[-15, 15]``).

    Args:
        latent_dim: ``D``.
        hidden: MLP widths (Marino MNIST: two layers of 512, ELU; his highway connections inside
            the MLP are not reproduced).
        features: width ``F`` of optional data features fed to the refiner (0: none).
        gradient_encoding: ``"layernorm"`` (default: layer-norm of each gradient over its ``D``
            coordinates, the suggested ``repro`` refiner) or ``"log_sign"`` (Marino's
            ``log_gradient`` ``log(|g| + 1e-5)`` and ``sign_gradient`` ``sign(g)``).
        update: ``"gated"`` (default), ``"replace"`` or ``"residual"``.
        gate_bias: initial bias of the gate's logits (0: ``gamma = 1/2`` on average at
            initialisation, as with torch's default initialisation in Marino's code).

    Raises:
        ValueError: for an unknown ``gradient_encoding`` or ``update``, a negative
            ``features``, or ``latent_dim < 1``.

    References:
        Marino, Yue & Mandt, "Iterative Amortized Inference", ICML 2018 (arXiv 1807.09356),
        Sec. 3 and code ``joelouismarino/iterative_inference`` @ 536c2a0 (``lib/modules.py``:
        gradient encodings and gated update; ``cfg/mnist/.../iterative/config.py``: widths).
    """

    def __init__(
        self,
        latent_dim: int,
        hidden: Sequence[int] = (512, 512),
        features: int = 0,
        gradient_encoding: str = "layernorm",
        update: str = "gated",
        gate_bias: float = 0.0,
    ) -> None:
        super().__init__()
        if gradient_encoding not in GRADIENT_ENCODINGS:
            raise ValueError(
                f"gradient_encoding must be one of {GRADIENT_ENCODINGS}, got {gradient_encoding!r}"
            )
        if update not in UPDATES:
            raise ValueError(f"update must be one of {UPDATES}, got {update!r}")
        if features < 0 or latent_dim < 1:
            raise ValueError(
                f"need latent_dim >= 1 and features >= 0, got latent_dim={latent_dim}, "
                f"features={features}"
            )
        self.latent_dim, self.features = latent_dim, int(features)
        self.gradient_encoding, self.update = gradient_encoding, update
        if gradient_encoding == "layernorm":
            self.norm_loc, self.norm_logvar = nn.LayerNorm(latent_dim), nn.LayerNorm(latent_dim)
            grad_width = 2 * latent_dim
        else:
            grad_width = 4 * latent_dim
        width = 2 * latent_dim + grad_width + self.features
        layers: list[nn.Module] = []
        for w in hidden:
            layers += [nn.Linear(width, w), nn.ELU()]
            width = w
        self.body = nn.Sequential(*layers)
        self.proposal = nn.Linear(width, 2 * latent_dim)
        self.gate = nn.Linear(width, 2 * latent_dim) if update == "gated" else None
        if self.gate is not None:
            nn.init.constant_(self.gate.bias, gate_bias)

    def encode_gradients(self, grad_loc: Tensor, grad_logvar: Tensor) -> Tensor:
        """The gradient part of the input.

        Args:
            grad_loc: ``(B, D)`` ``nabla_mu L``.
            grad_logvar: ``(B, D)`` ``nabla_{log sigma^2} L``.

        Returns:
            ``(B, 2D)`` (layer-norm) or ``(B, 4D)`` (log and sign) features.
        """
        if self.gradient_encoding == "layernorm":
            return torch.cat([self.norm_loc(grad_loc), self.norm_logvar(grad_logvar)], -1)
        g = torch.cat([grad_loc, grad_logvar], -1)
        return torch.cat([torch.log(g.abs() + 1e-5), torch.sign(g)], -1)

    def forward(
        self,
        loc: Tensor,
        logvar: Tensor,
        grad_loc: Tensor,
        grad_logvar: Tensor,
        features: Tensor | None = None,
    ) -> Iterate:
        """One refinement step from detached inputs.

        Args:
            loc: ``(B, D)`` current means.
            logvar: ``(B, D)`` current log-variances.
            grad_loc: ``(B, D)`` ``nabla_mu L``.
            grad_logvar: ``(B, D)`` ``nabla_{log sigma^2} L``.
            features: ``(B, F)`` data features when built with ``features = F > 0``.

        Returns:
            ``(loc, logvar)``, each ``(B, D)``, differentiable in the refiner's parameters only.

        Raises:
            ValueError: when ``features`` is missing, unexpected or of the wrong width.
        """
        loc, logvar = loc.detach(), logvar.detach()
        parts = [loc, logvar, self.encode_gradients(grad_loc.detach(), grad_logvar.detach())]
        if self.features:
            if features is None or features.shape[-1] != self.features:
                width = None if features is None else features.shape[-1]
                raise ValueError(f"this refiner needs (B, {self.features}) features, got {width}")
            parts.append(features.detach())
        elif features is not None:
            raise ValueError("this refiner was built with features=0 but received features")
        h = self.body(torch.cat(parts, -1))
        new_loc, new_logvar = self.proposal(h).chunk(2, -1)
        if self.update == "gated":
            gate_loc, gate_logvar = torch.sigmoid(self.gate(h)).chunk(2, -1)
            new_loc = gate_loc * loc + (1 - gate_loc) * new_loc
            new_logvar = gate_logvar * logvar + (1 - gate_logvar) * new_logvar
        elif self.update == "residual":
            new_loc, new_logvar = loc + new_loc, logvar + new_logvar
        return new_loc, new_logvar.clamp(*LOGVAR_BOUNDS)


def refine(
    x: Mapping[str, Tensor],
    loc0: Tensor,
    logvar0: Tensor,
    T: int,
    refiner: Callable[..., Iterate],
    decoders: Decoders,
    K: int = 1,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
    features: Tensor | None = None,
    beta: float = 1.0,
    weights: Mapping[str, float] | None = None,
) -> list[Iterate]:
    """Refine ``lambda_0`` for ``T`` steps with the ELBO gradient; return every iterate.

    At each step ``g_t = nabla_lambda L(X; lambda_t)`` (:func:`repro.losses.iterative.
    elbo_gradients`, ``K`` samples) and ``lambda_{t+1} = refiner(lambda_t, g_t, features)``. The
    refiner's inputs are detached: no gradient flows through the unrolled loop (Marino's code),
    so ``lambda_{t+1}`` is differentiable in the refiner's parameters of step ``t`` only, and
    ``lambda_0`` (returned as given) never receives a gradient from later iterates.

    Args:
        x: observations of every decoded modality, ``(B, ...)``.
        loc0: ``(B, D)`` initial means (the source posterior).
        logvar0: ``(B, D)`` initial log-variances.
        T: number of refinement steps (0: ``[lambda_0]``).
        refiner: ``(loc, logvar, grad_loc, grad_logvar, features) -> (loc, logvar)``, e.g.
            :class:`Refiner` or :class:`GradientStep`.
        decoders: ``{m: z -> p(x_m|z)}`` of the ELBO.
        K: Monte-Carlo samples per gradient.
        generator: source of the gradient noise, fresh at every step (``None``: global RNG).
        noise: optional ``(K, B, D)`` noise used at **every** step (fixed-noise refinement).
        features: optional ``(B, F)`` data features passed (detached) to the refiner.
        beta: KL weight of the ELBO.
        weights: likelihood rescaling per modality.

    Returns:
        ``T + 1`` pairs ``(loc, logvar)``, ``lambda_0`` first.

    Raises:
        ValueError: for ``T < 0``.

    References:
        Marino, Yue & Mandt, arXiv 1807.09356, Sec. 3 (iterative amortized inference);
        Oshima, Suzuki & Matsuo, arXiv 2410.11403 (refinement of the multimodal posterior).
    """
    if T < 0:
        raise ValueError(f"T must be >= 0, got T={T}")
    feats = None if features is None else features.detach()
    iterates = [(loc0, logvar0)]
    loc, logvar = loc0, logvar0
    for _ in range(T):
        _, grad_loc, grad_logvar = elbo_gradients(
            x, loc, logvar, decoders, K, noise, generator, beta, weights
        )
        loc, logvar = refiner(loc.detach(), logvar.detach(), grad_loc, grad_logvar, feats)
        iterates.append((loc, logvar))
    return iterates


def _gaussian(loc: Tensor, logvar: Tensor) -> Distribution:
    return diag_gaussian(loc, torch.exp(0.5 * logvar))


class IterativeVAE(MVAE):
    """MVAE source model refined by iterative amortized inference, distilled into students.

    **Source model.** The MVAE of the same encoders and decoders: ``q(z|x_S) ∝ p(z) prod_m
    q(z|x_m)`` (PoE with a prior expert), trained on the sub-sampled MVAE objective (stage
    ``"source"``, :meth:`source_bound`).

    **Refinement.** ``lambda_0`` is the source PoE over all modalities; ``T`` steps of
    :func:`refine` with the ELBO gradient (``K`` samples, KL weight ``beta``, the likelihood
    weights) give ``q_{lambda_T}(z|X)``. The refinement uses the model's decoders. By default
    they stay fixed during the refine stage, so that the ELBO-vs-``t`` curve measures inference
    only and ``t = 0`` is exactly the source PoE; ``train_decoder`` trains them on the final
    ELBO (Marino).

    **Students.** One unimodal encoder ``q_{phi_m}(z|x_m)`` per modality, trained on
    ``alignment_kl(q_{lambda_T}, q_{phi_m})`` (direction and stop-gradient are flags).

    **Posteriors.** All modalities: the refined ``q_{lambda_T}`` (refinement needs every
    modality's likelihood), with the refinement noise drawn from a generator seeded with
    ``posterior_seed``, so that it is a deterministic function of ``X``; one modality: its
    student; partial subsets (``2 <= |S| < M``): ``ValueError``. :meth:`source_posterior` gives
    the source PoE of any subset.

    Args:
        encoders: ``{m: x_m -> q(z|x_m)}``, the source experts (diagonal Gaussians).
        decoders: ``{m: z -> p(x_m|z)}``.
        students: ``{m: x_m -> q_{phi_m}(z|x_m)}``, unimodal encoders separate from the source
            experts (same interface).
        latent_dim: ``D``.
        refiner: ``(loc, logvar, grad_loc, grad_logvar, features) -> (loc, logvar)`` module
            (default: ``Refiner(latent_dim)``, Marino's 512-512 ELU MLP with the gated update).
        T: refinement steps in training and in :meth:`posterior` (default 5, Marino MNIST
            ``n_iterations=5``; unverified for the paper). ``T = 0``: the students are aligned
            to the source PoE, the "alignment without refinement" baseline.
        K: Monte-Carlo samples per ELBO gradient and per ELBO estimate of the refine stage
            (default 1; Marino MNIST: 10).
        beta: KL weight of the source objective (after warm-up) and of the refinement ELBO.
        align_direction: ``"forward"`` (default, ``KL(teacher || student)``, JMVAE-KL) or
            ``"reverse"``.
        stop_grad_teacher: the alignment term trains the students only (default ``True``);
            ``False`` also sends it to the refiner through ``lambda_T``.
        align_weight: weight of the summed alignment KLs in the refine stage (default 1).
        train_decoder: also train the decoders in the refine stage on ``L(X; lambda_T)``
            (Marino's decoder update); default ``False`` (the source model is pretrained).
        data_features: feed the refiner the concatenated source-expert means, ``(B, M*D)``, as
            data features (default ``False``); the refiner must then be built with
            ``features = M * D`` (:attr:`feature_dim`).
        posterior_seed: seed of the refinement noise in :meth:`posterior` (default 0).
        k_subsets: MVAE random subsets per step (source stage).
        warmup: MVAE KL warm-up epochs (source stage only).
        likelihood_weights: optional per-modality likelihood rescaling (source objective and
            refinement ELBO).
        steps_per_epoch: training steps per epoch, needed by the per-step warm-up (``MVAE``).

    Raises:
        ValueError: for students that do not match the modalities, ``T < 0``, ``K < 1``, an
            unknown ``align_direction``, a negative ``align_weight``, or a refiner whose
            ``features`` width does not match ``data_features``.

    References:
        Oshima, Suzuki & Matsuo, "Enhancing Unimodal Latent Representations in Multimodal VAEs
        through Iterative Amortized Inference", arXiv 2410.11403 (2024): refinement of the
        multimodal posterior and alignment of unimodal encoders to it (every equation
        inferred); Marino, Yue & Mandt, "Iterative Amortized Inference", ICML 2018 (arXiv
        1807.09356): the refiner, its training (refiner on the mean ELBO over iterations,
        decoder on the final one); Wu & Goodman, arXiv 1802.05335: the PoE source model.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        decoders: Mapping[str, nn.Module],
        students: Mapping[str, nn.Module],
        latent_dim: int,
        refiner: nn.Module | None = None,
        T: int = 5,
        K: int = 1,
        beta: float = 1.0,
        align_direction: str = "forward",
        stop_grad_teacher: bool = True,
        align_weight: float = 1.0,
        train_decoder: bool = False,
        data_features: bool = False,
        posterior_seed: int = 0,
        k_subsets: int = 1,
        warmup: int = 0,
        likelihood_weights: Mapping[str, float] | None = None,
        steps_per_epoch: int | None = None,
    ) -> None:
        super().__init__(
            encoders, decoders, latent_dim, k_subsets, beta, warmup, likelihood_weights,
            steps_per_epoch,
        )  # fmt: skip
        if sorted(students) != self.modalities:
            raise ValueError(f"students {sorted(students)} must match modalities {self.modalities}")
        if T < 0 or K < 1:
            raise ValueError(f"need T >= 0 and K >= 1, got T={T}, K={K}")
        if align_direction not in ALIGN_DIRECTIONS:
            raise ValueError(
                f"align_direction must be one of {ALIGN_DIRECTIONS}, got {align_direction!r}"
            )
        if align_weight < 0:
            raise ValueError(f"align_weight must be >= 0, got {align_weight}")
        self.students = nn.ModuleDict(dict(students))
        self.data_features = bool(data_features)
        if refiner is None:
            refiner = Refiner(latent_dim, features=self.feature_dim)
        width = getattr(refiner, "features", None)
        if width is not None and width != self.feature_dim:
            raise ValueError(
                f"refiner.features={width} but data_features={data_features} needs "
                f"{self.feature_dim} (M * D with data features, else 0)"
            )
        self.refiner = refiner
        self.T, self.K = int(T), int(K)
        self.align_direction, self.stop_grad_teacher = align_direction, bool(stop_grad_teacher)
        self.align_weight = float(align_weight)
        self.train_decoder = bool(train_decoder)
        self.posterior_seed = int(posterior_seed)

    # -- structure -------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        """Width of the refiner's data features: ``M * D`` with ``data_features``, else 0."""
        return len(self.modalities) * self.latent_dim if self.data_features else 0

    @property
    def stages(self) -> tuple[str, ...]:
        """The training stages, in order: ``("source", "refine")``."""
        return ("source", "refine")

    def set_stage(self, stage: str) -> None:
        """Make only ``stage``'s parameters trainable (``requires_grad``); freeze the rest.

        ``"source"``: encoders and decoders. ``"refine"``: refiner and students, plus the
        decoders when ``train_decoder``.

        Args:
            stage: one of :attr:`stages`.

        Raises:
            ValueError: for an unknown stage.
        """
        self._check_stage(stage)
        self.requires_grad_(False)
        if stage == "source":
            self.encoders.requires_grad_(True)
            self.decoders.requires_grad_(True)
        else:
            self.refiner.requires_grad_(True)
            self.students.requires_grad_(True)
            self.decoders.requires_grad_(self.train_decoder)

    def prepare_stage(self, stage: str) -> Stage:
        """Freeze all but ``stage``'s parameters and return what :func:`repro.train.fit` trains.

        The stage's module is the whole model (its frozen parameters are not optimised), so
        that train/eval mode reaches the MVAE objective's random subsets.

        Args:
            stage: ``"source"`` or ``"refine"``.

        Returns:
            The :class:`repro.models.base.Stage` with :meth:`source_bound` or
            :meth:`refine_bound`.
        """
        self.set_stage(stage)
        bound = self.source_bound if stage == "source" else self.refine_bound
        return Stage(self, bound)

    # -- inference -------------------------------------------------------------------------
    def _complete(self, mask: Tensor | None, what: str) -> None:
        require_complete(
            mask,
            f"{type(self).__name__}.{what} needs every modality of every sample (refinement "
            "uses the multimodal ELBO); got a presence mask with absent entries",
        )

    def source_posterior(
        self,
        x: Mapping[str, Tensor],
        subset: Sequence[str] | None = None,
        mask: Tensor | None = None,
    ) -> Distribution:
        """The source PoE ``q(z|x_S) ∝ p(z) prod_{m in S} q(z|x_m)``.

        Args:
            x: observations of the subset.
            subset: conditioning modalities (default: all).
            mask: optional ``(B, M)`` presence mask.

        Returns:
            A diagonal Gaussian, batch ``(B,)``, event ``(D,)``.
        """
        return MVAE.posterior(self, x, subset, mask)

    def _initial(self, x: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(loc0, logvar0, features)`` from the source experts of every modality."""
        experts = self.encode(x)
        loc0, scale0 = gaussian_params(self.aggregate(experts))
        features = None
        if self.data_features:
            features = torch.cat([gaussian_params(experts[m])[0] for m in self.modalities], -1)
        return loc0, 2 * torch.log(scale0), features

    def _frozen_decoders(self) -> Decoders:
        """The decoders with detached parameters (``torch.func.functional_call``)."""
        if not any(p.requires_grad for p in self.decoders.parameters()):
            return dict(self.decoders.items())
        out = {}
        for m, dec in self.decoders.items():
            named = itertools.chain(dec.named_parameters(), dec.named_buffers())
            state = {n: t.detach() for n, t in named}
            out[m] = functools.partial(torch.func.functional_call, dec, state)
        return out

    def _iterates(
        self,
        x: Mapping[str, Tensor],
        T: int,
        generator: torch.Generator | None,
        noise: Tensor | None,
        detach_source: bool = False,
    ) -> list[Iterate]:
        missing = [m for m in self.modalities if m not in x]
        if missing:
            raise ValueError(f"refinement needs every modality; x lacks {missing}")
        loc0, logvar0, features = self._initial(x)
        if detach_source:
            loc0, logvar0 = loc0.detach(), logvar0.detach()
        K = self.K if noise is None else noise.shape[0]
        return refine(
            x,
            loc0,
            logvar0,
            T,
            self.refiner,
            self._frozen_decoders(),
            K,
            generator,
            noise,
            features,
            self.beta,
            self.likelihood_weights,
        )

    def refined(
        self,
        x: Mapping[str, Tensor],
        T: int | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> list[Distribution]:
        """Every iterate ``q_{lambda_t}(z|X)``, ``t = 0 .. T`` (``t = 0``: the source PoE).

        Works under ``torch.no_grad()`` (the ELBO gradients are taken under
        ``torch.enable_grad()``). The decoders' parameters receive no gradient from here.

        Args:
            x: observations of every modality, ``(B, ...)``.
            T: refinement steps (default :attr:`T`; larger values extrapolate).
            generator: source of the gradient noise (``None``: the global RNG).
            noise: optional ``(K', B, D)`` noise used at every step (then ``K = K'``).

        Returns:
            ``T + 1`` diagonal Gaussians with batch ``(B,)`` and event ``(D,)``.

        Raises:
            ValueError: when a modality is missing from ``x`` or ``T < 0``.
        """
        T = self.T if T is None else T
        return [_gaussian(*it) for it in self._iterates(x, T, generator, noise)]

    def elbo_per_iteration(
        self,
        x: Mapping[str, Tensor],
        T: int | None = None,
        K: int = 10,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """``L(X; lambda_t)`` for ``t = 0 .. T``, the ELBO-vs-iterations curve (Marino's protocol).

        Args:
            x: observations of every modality.
            T: refinement steps (default :attr:`T`).
            K: Monte-Carlo samples of each evaluation (fresh draws from ``generator``,
                independent of the refinement noise).
            generator: source of the refinement and evaluation noise.
            noise: optional fixed refinement noise, see :meth:`refined`.

        Returns:
            ``(T + 1, B)`` ELBO values (plain ELBO with the model's ``beta`` and likelihood
            weights), detached.
        """
        T = self.T if T is None else T
        with torch.no_grad():
            iterates = self._iterates(x, T, generator, noise)
            decoders = self._frozen_decoders()
            values = [
                elbo_of_params(
                    x, loc, logvar, decoders, K, None, generator, self.beta, self.likelihood_weights
                )
                for loc, logvar in iterates
            ]
        return torch.stack(values)

    def posterior(
        self,
        x: Mapping[str, Tensor],
        subset: Sequence[str] | None = None,
        mask: Tensor | None = None,
    ) -> Distribution:
        """All modalities: the refined ``q_{lambda_T}(z|X)``; one modality: its student.

        The refinement noise comes from a generator seeded with :attr:`posterior_seed`, so the
        refined posterior is a deterministic function of ``X`` (and seeded sampling through
        :meth:`sample_posterior` / :meth:`generate` is reproducible).

        Args:
            x: observations of the subset.
            subset: every modality (default) or exactly one.
            mask: optional ``(B, M)`` presence mask; must be all present.

        Returns:
            A diagonal Gaussian, batch ``(B,)``, event ``(D,)``.

        Raises:
            ValueError: for a partial subset (``2 <= |S| < M``), a mask with absent entries, or
                missing observations.
        """
        chosen = self.check_subset(subset)
        self._complete(mask, "posterior")
        missing = [m for m in chosen if m not in x]
        if missing:
            raise ValueError(f"posterior over {chosen} needs observations of {missing}")
        if len(chosen) == 1:
            return self.students[chosen[0]](x[chosen[0]])
        if len(chosen) < len(self.modalities):
            raise ValueError(
                f"{type(self).__name__} has no posterior for the partial subset {chosen}: "
                "refinement needs every modality and the students take one; use "
                "source_posterior for the source PoE of a subset"
            )
        device = next(iter(x.values())).device
        generator = torch.Generator(device=device).manual_seed(self.posterior_seed)
        return self.refined(x, generator=generator)[-1]

    # -- objectives ------------------------------------------------------------------------
    def source_bound(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """Stage ``"source"``: the sub-sampled MVAE objective per sample, ``(B,)``.

        Args:
            batch: observations of every modality, optionally with a :data:`MASK`.
            generator: source of the sampling noise and of the random subsets.

        Returns:
            ``(B,)`` values (see :meth:`repro.models.mvae.MVAE.bound`).
        """
        return MVAE.bound(self, batch, generator)

    def _alignment(self, x: Mapping[str, Tensor], teacher: Distribution) -> Tensor:
        return sum(
            alignment_kl(
                teacher, self.students[m](x[m]), self.align_direction, self.stop_grad_teacher
            )
            for m in self.modalities
        )

    def refine_bound(self, batch: Batch) -> Tensor:
        """Stage ``"refine"``: refined ELBO and alignment, with per-parameter-set gradients.

        Value (the logged "bound"), per sample:
        ``(1/T) sum_{t=1}^T L(X; lambda_t) - align_weight * sum_m KL_align(q_{lambda_T},
        q_{phi_m})`` (for ``T = 0``, ``L(X; lambda_0)`` in place of the mean, a constant).

        Gradient routing (each parameter set gets its own term only):

        * refiner ``psi``: ``(1/T) sum_t L(X; lambda_t)`` through ``lambda_t``, evaluated with
          **detached** decoder parameters (``torch.func.functional_call``), so no decoder
          gradient comes from it; each ``lambda_t`` depends on step ``t``'s refiner call only
          (detached inputs), as in Marino's code (``average_gradient``);
        * students ``phi_m``: the alignment KLs; with ``stop_grad_teacher=False`` they also
          reach the refiner through ``lambda_T``;
        * decoders ``theta`` (``train_decoder`` only): ``L(X; lambda_T)`` at a detached
          ``lambda_T``, added as ``L - L.detach()`` (zero in value, so the logged value is
          unchanged);
        * source encoders: nothing (``lambda_0`` is detached; they are frozen in this stage).

        Args:
            batch: observations of every modality (a presence mask, if any, all true).

        Returns:
            ``(B,)`` surrogate values to maximise.

        Raises:
            ValueError: for a mask with absent entries.
        """
        x, mask = split_batch(batch, self.modalities)
        self._complete(mask, "refine_bound")
        iterates = self._iterates(x, self.T, None, None, detach_source=True)
        decoders = self._frozen_decoders()
        weights = self.likelihood_weights
        if self.T > 0:
            values = [
                elbo_of_params(x, loc, logvar, decoders, self.K, None, None, self.beta, weights)
                for loc, logvar in iterates[1:]
            ]
            value = torch.stack(values).mean(0)
        else:
            loc0, logvar0 = iterates[0]
            with torch.no_grad():
                value = elbo_of_params(
                    x, loc0, logvar0, decoders, self.K, None, None, self.beta, weights
                )
        value = value - self.align_weight * self._alignment(x, _gaussian(*iterates[-1]))
        if self.train_decoder:
            loc_t, logvar_t = (p.detach() for p in iterates[-1])
            final = elbo_of_params(
                x, loc_t, logvar_t, self.decoders, self.K, None, None, self.beta, weights
            )
            value = value + (final - final.detach())
        return value

    def bound(self, batch: Batch) -> Tensor:
        """Whole-model evaluation value, the refined ELBO minus the alignment KLs, ``(B,)``.

        ``L(X; lambda_T) - sum_m KL_align(q_{lambda_T}, q_{phi_m})``: the JMVAE-KL form (ELBO of
        the teacher minus the alignment gaps) with the refined teacher; the stages optimise its
        parts (:meth:`source_bound`, :meth:`refine_bound`). ``align_weight`` is not applied.

        Args:
            batch: observations of every modality (complete samples).

        Returns:
            ``(B,)`` values.
        """
        x, mask = split_batch(batch, self.modalities)
        self._complete(mask, "bound")
        loc, logvar = self._iterates(x, self.T, None, None)[-1]
        value = elbo_of_params(
            x,
            loc,
            logvar,
            self._frozen_decoders(),
            self.K,
            None,
            None,
            self.beta,
            self.likelihood_weights,
        )
        return value - self._alignment(x, _gaussian(loc, logvar))
