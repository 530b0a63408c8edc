r"""The bound hierarchy of coordination-based objectives, exactly, on a linear-Gaussian model.

papers/coordination.md §3 [derived]: with ``q = q(z|X)`` and ``q_m = q(z|x_m)`` diagonal
Gaussians, every term below is in closed form on :class:`LinearGaussianModel` (no Monte Carlo):

* the multimodal ELBO ``L(X) = E_q log p(X|z) - KL(q || p) <= log p(X)``, gap
  ``KL(q || p(z|X))``;
* the conditional ELBO ``L_{\m|m}(X) = E_q log p(X_{\m}|z) - KL(q || q_m)
  <= log p~(X_{\m}|x_m)``, where ``p~(X_{\m}|x_m) = int p(X_{\m}|z) q_m(z) dz`` is the evidence of
  the conditional model whose prior is ``q_m`` (:func:`conditional_evidence`; it is the exact
  ``p(X_{\m}|x_m) = p(X) / p(x_m)`` when ``q_m = p(z|x_m)``); gap ``KL(q || p~(z|X; q_m))``,
  with ``p~(z|X; q_m) ∝ q_m(z) p(X_{\m}|z)`` that model's posterior;
* MVTCAE at ``beta = 1``, ``(M-a)/M E_q log p(X|z) - (1-a) KL(q || p) - a/M sum_m KL(q || q_m)``
  ``= (1-a) L(X) + a/M sum_m L_{\m|m}(X) <= (1-a) log p(X) + a/M sum_m log p~(X_{\m}|x_m)``
  (:func:`mvtcae_target`); gap ``(1-a) KL(q || p(z|X)) + a/M sum_m KL(q || p~(z|X; q_m))``;
* JMVAE-KL, ``E_q log p(X|z) - KL(q || p) - a sum_m KL(q || q_m)``. Since
  ``sum_m L_{\m|m} = (M-1) E_q log p(X|z) - sum_m KL(q || q_m)``, for any ``M``

  ``JMVAE = (1 - a(M-1)) L(X) + a sum_m L_{\m|m}(X) - a(M-1) KL(q || p)``,

  coordination.md §3 item 2 for ``M = 2``. Its counterpart target
  (:func:`jmvae_target`) is ``(1 - a(M-1)) log p(X) + a sum_m log p~(X_{\m}|x_m)``, and its
  gap is ``(1 - a(M-1)) KL(q || p(z|X)) + a sum_m KL(q || p~(z|X; q_m))`` plus the **slack**
  ``a(M-1) KL(q || p)`` (:func:`jmvae_slack`). The target is an upper bound (every weight
  non-negative) only for ``a <= 1/(M-1)``: ``a`` in ``[0, 1]`` for ``M = 2``; the identity
  holds for every ``a``.

**Comparing the gaps.** The difference JMVAE gap minus MVTCAE gap is
``-a(M-2) KL(q || p(z|X)) + a(M-1)/M sum_m KL(q || p~(z|X; q_m)) + a(M-1) KL(q || p)``. For
``M = 2`` every term is non-negative: MVTCAE's gap is at most JMVAE's for every ``q``, ``q_m``
and ``a``, equal only at ``a = 0``. For ``M >= 3`` the first term is negative; the difference
is still ``>= 0`` when each ``q_m = p(z|x_m)`` is exact (then ``p~(z|X; q_m) = p(z|X)`` and it
is ``a KL(q || p(z|X)) + a(M-1) KL(q || p)``), but can be negative otherwise: for every sample
with ``q = p(z)`` and each ``q_m ∝ q / p(X_{\m}|z)`` (weak likelihoods), and for some samples
(not on the batch mean) when ``q(z|X)`` and every ``q_m`` are shifted by two posterior standard
deviations (``tests/test_coord_bounds.py``).

**Exact unimodal posteriors.** With ``q_m = p(z|x_m)``, ``p~(z|X; q_m) = p(z|X)``, so MVTCAE's
gap is ``KL(q || p(z|X))`` for every ``a`` (0 at the exact ``q``), while JMVAE-KL's is that
weighted by ``1 + a`` plus the slack (the slack alone, ``a(M-1) KL(p(z|X) || p)``, at the exact
``q``).

The objectives are computed from their definitions (not from the decompositions), so the
identities are checks. Every function returns per-sample values, shape ``(B,)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, kl_divergence

from repro.distributions import diag_gaussian, gaussian_params, product_of_experts

__all__ = [
    "FAMILIES",
    "LinearGaussianModel",
    "elbo",
    "conditional_elbo",
    "conditional_evidence",
    "conditional_posterior",
    "mvtcae",
    "mvtcae_target",
    "jmvae_kl",
    "jmvae_target",
    "jmvae_slack",
    "posteriors",
    "sweep",
]

FAMILIES = ("exact", "perturbed", "poe")  # the posteriors of :func:`posteriors`


@dataclass(frozen=True, eq=False)
class LinearGaussianModel:
    """``z ~ N(0, s0^2 I_D)``, ``x_m = a_m * z + b_m + eps_m``, ``eps_m ~ N(0, diag(psi_m))``.

    The loadings ``a_m`` act elementwise, so every latent dimension is an independent scalar
    linear-Gaussian model: posteriors are diagonal Gaussians and every evidence is Gaussian.

    Attributes:
        a: ``{m: (D,)}`` loadings (non-zero).
        b: ``{m: (D,)}`` offsets.
        psi: ``{m: (D,)}`` noise variances (positive).
        prior_var: ``s0^2``.
    """

    a: Mapping[str, Tensor]
    b: Mapping[str, Tensor]
    psi: Mapping[str, Tensor]
    prior_var: float = 1.0

    def __post_init__(self) -> None:
        """Check that ``a``, ``b`` and ``psi`` name the same modalities with ``(D,)`` shapes.

        Raises:
            ValueError: for mismatched modalities or shapes.
        """
        names = sorted(self.a)
        if not names or sorted(self.b) != names or sorted(self.psi) != names:
            raise ValueError(
                f"a, b and psi must name the same modalities, got {names}, {sorted(self.b)}, "
                f"{sorted(self.psi)}"
            )
        params = {"a": self.a, "b": self.b, "psi": self.psi}
        shapes = {f"{k}[{m!r}]": tuple(t[m].shape) for k, t in params.items() for m in names}
        if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 1:
            raise ValueError(f"every a_m, b_m, psi_m must have the same shape (D,), got {shapes}")

    @classmethod
    def random(
        cls,
        modalities: Sequence[str] = ("m0", "m1"),
        dim: int = 3,
        generator: torch.Generator | None = None,
        prior_var: float = 1.0,
    ) -> LinearGaussianModel:
        """A random model: ``a ~ U(0.5, 2)``, ``b ~ N(0, 1)``, ``psi ~ U(0.2, 1.2)`` per entry.

        Args:
            modalities: modality names.
            dim: ``D``.
            generator: source of the parameters (default: seed 123).
            prior_var: ``s0^2``.

        Returns:
            The model (float in the default dtype).
        """
        g = generator or torch.Generator().manual_seed(123)
        a = {m: 0.5 + torch.rand(dim, generator=g) * 1.5 for m in modalities}
        b = {m: torch.randn(dim, generator=g) for m in modalities}
        psi = {m: 0.2 + torch.rand(dim, generator=g) for m in modalities}
        return cls(a, b, psi, prior_var)

    @property
    def modalities(self) -> list[str]:
        """Sorted modality names."""
        return sorted(self.a)

    @property
    def dim(self) -> int:
        """The latent dimension ``D``."""
        return int(next(iter(self.a.values())).shape[0])

    def _subset(self, subset: Sequence[str] | None) -> list[str]:
        if subset is None:
            return self.modalities
        chosen = sorted(set([subset] if isinstance(subset, str) else subset))
        unknown = [m for m in chosen if m not in self.a]
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; the model has {self.modalities}")
        return chosen

    def prior(self) -> Independent:
        """``p(z) = N(0, s0^2 I)``, event ``(D,)``."""
        loc = torch.zeros(self.dim)
        return diag_gaussian(loc, torch.full_like(loc, math.sqrt(self.prior_var)))

    def decoder(self, m: str, z: Tensor) -> Independent:
        """``p(x_m|z)`` for ``z`` ``(..., D)``: batch ``z.shape[:-1]``, event ``(D,)``."""
        return diag_gaussian(self.a[m] * z + self.b[m], self.psi[m].sqrt().expand_as(z))

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        """Draw ``n`` joint samples.

        Args:
            n: number of samples.
            generator: source of the noise.

        Returns:
            ``(z, x)``: ``(n, D)`` latents and ``{m: (n, D)}`` observations.
        """
        z = torch.randn(n, self.dim, generator=generator) * math.sqrt(self.prior_var)
        x = {
            m: self.a[m] * z
            + self.b[m]
            + torch.randn(n, self.dim, generator=generator) * self.psi[m].sqrt()
            for m in self.modalities
        }
        return z, x

    def posterior(
        self,
        x: Mapping[str, Tensor],
        subset: Sequence[str] | None = None,
        prior: Distribution | None = None,
    ) -> Independent:
        """The exact posterior ``∝ prior(z) prod_{m in S} p(x_m|z)``.

        Args:
            x: ``{m: (B, D)}`` observations (only the subset's are read).
            subset: the modalities ``S`` (default: all; empty: the prior itself).
            prior: a diagonal Gaussian in place of ``p(z)``, batch ``()`` or ``(B,)`` (e.g.
                ``q_m``: then ``p~(z|X_S; q_m)``).

        Returns:
            A diagonal Gaussian, batch ``(B,)``, event ``(D,)``.
        """
        chosen = self._subset(subset)
        loc0, scale0 = gaussian_params(self.prior() if prior is None else prior)
        batch = next(iter(x.values())).shape[:-1]
        precision = scale0.pow(-2).expand(*batch, self.dim)
        weighted = (loc0 * scale0.pow(-2)).expand(*batch, self.dim)
        for m in chosen:
            gain = self.a[m] ** 2 / self.psi[m]
            precision = precision + gain
            weighted = weighted + gain * (x[m] - self.b[m]) / self.a[m]
        var = precision.reciprocal()
        return diag_gaussian(weighted * var, var.sqrt())

    def log_evidence(
        self,
        x: Mapping[str, Tensor],
        subset: Sequence[str] | None = None,
        prior: Distribution | None = None,
    ) -> Tensor:
        """The exact ``log int prod_{m in S} p(x_m|z) prior(z) dz``, ``(B,)``.

        Computed from ``log p(x_S|z) + log prior(z) - log p(z|x_S)``, which is the same at
        every ``z``, at the posterior mean.

        Args:
            x: ``{m: (B, D)}`` observations.
            subset: the modalities ``S`` (default: all; empty: 0).
            prior: a diagonal Gaussian in place of ``p(z)`` (``q_m`` for ``log p~``).

        Returns:
            ``(B,)`` log-evidences.
        """
        chosen = self._subset(subset)
        prior = self.prior() if prior is None else prior
        post = self.posterior(x, chosen, prior)
        z = post.mean
        joint = sum((self.decoder(m, z).log_prob(x[m]) for m in chosen), prior.log_prob(z))
        return joint - post.log_prob(z)

    def expected_log_likelihood(
        self, x: Mapping[str, Tensor], q: Distribution, subset: Sequence[str] | None = None
    ) -> Tensor:
        """``E_q[sum_{m in S} log p(x_m|z)]`` in closed form for a diagonal Gaussian ``q``.

        ``E_q log N(x; a z + b, psi) = log N(x; a mu + b, psi) - sum_d a^2 s^2 / (2 psi)``.

        Args:
            x: ``{m: (B, D)}`` observations.
            q: a diagonal Gaussian, batch ``(B,)``, event ``(D,)``.
            subset: the modalities ``S`` (default: all).

        Returns:
            ``(B,)`` expectations.
        """
        loc, scale = gaussian_params(q)
        total = torch.zeros(loc.shape[:-1], dtype=loc.dtype)
        for m in self._subset(subset):
            spread = (self.a[m] ** 2 * scale**2 / (2 * self.psi[m])).sum(-1)
            total = total + self.decoder(m, loc).log_prob(x[m]) - spread
        return total


def _others(model: LinearGaussianModel, m: str) -> list[str]:
    if m not in model.modalities:
        raise ValueError(f"conditioning modality m={m!r} is not one of {model.modalities}")
    if len(model.modalities) < 2:
        raise ValueError("conditional bounds need at least two modalities")
    return [j for j in model.modalities if j != m]


def _check_unimodal(model: LinearGaussianModel, qz_xm: Mapping[str, Distribution]) -> None:
    if sorted(qz_xm) != model.modalities:
        raise ValueError(f"qz_xm names {sorted(qz_xm)}, the model {model.modalities}")


def elbo(model: LinearGaussianModel, x: Mapping[str, Tensor], qz_x: Distribution) -> Tensor:
    """The multimodal ELBO ``L(X) = E_q log p(X|z) - KL(q(z|X) || p(z))``, ``(B,)``.

    Args:
        model: the linear-Gaussian model.
        x: ``{m: (B, D)}`` observations.
        qz_x: ``q(z|X)``, a diagonal Gaussian, batch ``(B,)``.

    Returns:
        ``(B,)`` values; ``<= log p(X)``, with equality at ``q = p(z|X)``.
    """
    return model.expected_log_likelihood(x, qz_x) - kl_divergence(qz_x, model.prior())


def conditional_posterior(
    model: LinearGaussianModel, x: Mapping[str, Tensor], qz_xm: Distribution, m: str
) -> Independent:
    r"""``p~(z|X; q_m) ∝ q_m(z) p(X_{\m}|z)``, the posterior of the conditional model.

    Args:
        model: the linear-Gaussian model.
        x: ``{j: (B, D)}`` observations.
        qz_xm: ``q_m``, a diagonal Gaussian, batch ``(B,)``.
        m: the conditioning modality.

    Returns:
        A diagonal Gaussian, batch ``(B,)``; ``p(z|X)`` when ``q_m = p(z|x_m)``.
    """
    return model.posterior(x, _others(model, m), prior=qz_xm)


def conditional_evidence(
    model: LinearGaussianModel, x: Mapping[str, Tensor], qz_xm: Distribution, m: str
) -> Tensor:
    r"""``log p~(X_{\m}|x_m) = log int p(X_{\m}|z) q_m(z) dz``, ``(B,)``.

    The evidence of the conditional model with prior ``q_m``; the exact conditional evidence
    ``log p(X_{\m}|x_m) = log p(X) - log p(x_m)`` when ``q_m = p(z|x_m)``.

    Args:
        model: the linear-Gaussian model.
        x: ``{j: (B, D)}`` observations.
        qz_xm: ``q_m``, a diagonal Gaussian, batch ``(B,)``.
        m: the conditioning modality.

    Returns:
        ``(B,)`` log-evidences.
    """
    return model.log_evidence(x, _others(model, m), prior=qz_xm)


def conditional_elbo(
    model: LinearGaussianModel,
    x: Mapping[str, Tensor],
    qz_x: Distribution,
    qz_xm: Distribution,
    m: str,
) -> Tensor:
    r"""``L_{\m|m}(X) = E_q log p(X_{\m}|z) - KL(q(z|X) || q_m)``, ``(B,)``.

    Args:
        model: the linear-Gaussian model.
        x: ``{j: (B, D)}`` observations.
        qz_x: ``q(z|X)``, a diagonal Gaussian, batch ``(B,)``.
        qz_xm: ``q_m``, a diagonal Gaussian, batch ``(B,)``.
        m: the conditioning modality.

    Returns:
        ``(B,)`` values; ``<=`` :func:`conditional_evidence`, with equality at
        ``q = p~(z|X; q_m)`` (at ``q = p(z|X)`` when ``q_m = p(z|x_m)``).

    References:
        papers/coordination.md §3 [derived].
    """
    rec = model.expected_log_likelihood(x, qz_x, _others(model, m))
    return rec - kl_divergence(qz_x, qz_xm)


def _kl_to_unimodal(qz_x: Distribution, qz_xm: Mapping[str, Distribution]) -> Tensor:
    return sum(kl_divergence(qz_x, q) for q in qz_xm.values())


def _check_alpha(alpha: float, upper: float | None) -> None:
    if alpha < 0 or (upper is not None and alpha > upper):
        bounds = "[0, 1]" if upper is not None else ">= 0"
        raise ValueError(f"alpha must be in {bounds}, got alpha={alpha}")


def mvtcae(
    model: LinearGaussianModel,
    x: Mapping[str, Tensor],
    qz_x: Distribution,
    qz_xm: Mapping[str, Distribution],
    alpha: float,
) -> Tensor:
    r"""MVTCAE at ``beta = 1``: ``(M-a)/M E_q log p(X|z) - (1-a) KL(q||p) - a/M sum KL(q||q_m)``.

    Args:
        model: the linear-Gaussian model.
        x: ``{m: (B, D)}`` observations.
        qz_x: ``q(z|X)``, a diagonal Gaussian, batch ``(B,)``.
        qz_xm: ``{m: q_m}``, diagonal Gaussians, batch ``(B,)``.
        alpha: ``a`` in ``[0, 1]``.

    Returns:
        ``(B,)`` values, ``(1-a) L(X) + a/M sum_m L_{\m|m}(X)``.

    Raises:
        ValueError: for ``alpha`` outside ``[0, 1]`` or mismatched modalities.

    References:
        Hwang et al., NeurIPS 2021 (MVTCAE); papers/coordination.md §2-3.
    """
    _check_alpha(alpha, 1.0)
    _check_unimodal(model, qz_xm)
    big_m = len(model.modalities)
    rec = model.expected_log_likelihood(x, qz_x)
    divergence = (1 - alpha) * kl_divergence(qz_x, model.prior())
    return (big_m - alpha) / big_m * rec - divergence - alpha / big_m * _kl_to_unimodal(qz_x, qz_xm)


def mvtcae_target(
    model: LinearGaussianModel,
    x: Mapping[str, Tensor],
    qz_xm: Mapping[str, Distribution],
    alpha: float,
) -> Tensor:
    r"""``(1-a) log p(X) + a/M sum_m log p~(X_{\m}|x_m)``, what MVTCAE bounds, ``(B,)``.

    Args:
        model: the linear-Gaussian model.
        x: ``{m: (B, D)}`` observations.
        qz_xm: ``{m: q_m}``, the priors of the conditional evidences.
        alpha: ``a`` in ``[0, 1]``.

    Returns:
        ``(B,)`` values.

    Raises:
        ValueError: for ``alpha`` outside ``[0, 1]`` or mismatched modalities.
    """
    _check_alpha(alpha, 1.0)
    _check_unimodal(model, qz_xm)
    big_m = len(model.modalities)
    cond = sum(conditional_evidence(model, x, q, m) for m, q in qz_xm.items())
    return (1 - alpha) * model.log_evidence(x) + alpha / big_m * cond


def jmvae_kl(
    model: LinearGaussianModel,
    x: Mapping[str, Tensor],
    qz_x: Distribution,
    qz_xm: Mapping[str, Distribution],
    alpha: float,
) -> Tensor:
    r"""JMVAE-KL: ``E_q log p(X|z) - KL(q(z|X) || p) - a sum_m KL(q(z|X) || q_m)``, ``(B,)``.

    Args:
        model: the linear-Gaussian model.
        x: ``{m: (B, D)}`` observations.
        qz_x: ``q(z|X)``, a diagonal Gaussian, batch ``(B,)``.
        qz_xm: ``{m: q_m}``, diagonal Gaussians, batch ``(B,)``.
        alpha: ``a >= 0``.

    Returns:
        ``(B,)`` values, ``(1-a(M-1)) L(X) + a sum_m L_{\m|m}(X) - a(M-1) KL(q || p)``.

    Raises:
        ValueError: for a negative ``alpha`` or mismatched modalities.

    References:
        Suzuki, Nakayama & Matsuo, arXiv 1611.01891 (JMVAE-kl); papers/coordination.md §2-3.
    """
    _check_alpha(alpha, None)
    _check_unimodal(model, qz_xm)
    rec = model.expected_log_likelihood(x, qz_x)
    return rec - kl_divergence(qz_x, model.prior()) - alpha * _kl_to_unimodal(qz_x, qz_xm)


def jmvae_target(
    model: LinearGaussianModel,
    x: Mapping[str, Tensor],
    qz_xm: Mapping[str, Distribution],
    alpha: float,
) -> Tensor:
    r"""JMVAE-KL's counterpart target ``(1 - a(M-1)) log p(X) + a sum_m log p~(X_{\m}|x_m)``.

    For ``M = 2``, ``(1-a) log p(X) + a sum_m log p~(X_{\m}|x_m)`` (coordination.md §3 item 2).
    An upper bound of :func:`jmvae_kl` plus :func:`jmvae_slack` for ``a <= 1/(M-1)``.

    Args:
        model: the linear-Gaussian model.
        x: ``{m: (B, D)}`` observations.
        qz_xm: ``{m: q_m}``, the priors of the conditional evidences.
        alpha: ``a >= 0``.

    Returns:
        ``(B,)`` values.

    Raises:
        ValueError: for a negative ``alpha`` or mismatched modalities.
    """
    _check_alpha(alpha, None)
    _check_unimodal(model, qz_xm)
    c = alpha * (len(model.modalities) - 1)
    cond = sum(conditional_evidence(model, x, q, m) for m, q in qz_xm.items())
    return (1 - c) * model.log_evidence(x) + alpha * cond


def jmvae_slack(model: LinearGaussianModel, qz_x: Distribution, alpha: float) -> Tensor:
    """JMVAE-KL's extra slack ``a(M-1) KL(q(z|X) || p(z)) >= 0`` (``a KL`` for ``M = 2``).

    Args:
        model: the linear-Gaussian model.
        qz_x: ``q(z|X)``, a diagonal Gaussian, batch ``(B,)``.
        alpha: ``a >= 0``.

    Returns:
        ``(B,)`` values.

    Raises:
        ValueError: for a negative ``alpha``.
    """
    _check_alpha(alpha, None)
    return alpha * (len(model.modalities) - 1) * kl_divergence(qz_x, model.prior())


def posteriors(
    model: LinearGaussianModel,
    x: Mapping[str, Tensor],
    family: str = "exact",
    shift: float = 0.5,
    scale: float = 1.5,
) -> tuple[Independent, dict[str, Independent]]:
    """``(q(z|X), {m: q_m})`` of one family of diagonal-Gaussian posteriors.

    * ``"exact"``: ``q(z|X) = p(z|X)`` and ``q_m = p(z|x_m)``;
    * ``"perturbed"``: each of those with its mean moved by ``+shift`` of its own standard
      deviation in every dimension and its standard deviation multiplied by ``scale`` (a
      miscalibrated amortised encoder);
    * ``"poe"``: exact ``q_m = p(z|x_m)`` and ``q(z|X)`` their product **without** a prior
      expert, MVTCAE's own joint posterior (it counts the prior ``M`` times: too narrow).

    Args:
        model: the linear-Gaussian model.
        x: ``{m: (B, D)}`` observations.
        family: one of :data:`FAMILIES`.
        shift: ``"perturbed"``: mean shift in posterior standard deviations.
        scale: ``"perturbed"``: standard-deviation factor (positive).

    Returns:
        ``(qz_x, qz_xm)``, batch ``(B,)`` each.

    Raises:
        ValueError: for an unknown family or a non-positive ``scale``.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got scale={scale}")
    exact = model.posterior(x)
    unimodal = {m: model.posterior(x, [m]) for m in model.modalities}
    if family == "exact":
        return exact, unimodal
    if family == "poe":
        return product_of_experts(list(unimodal.values())), unimodal

    def perturb(q: Independent) -> Independent:
        loc, std = gaussian_params(q)
        return diag_gaussian(loc + shift * std, std * scale)

    return perturb(exact), {m: perturb(q) for m, q in unimodal.items()}


def sweep(
    model: LinearGaussianModel,
    x: Mapping[str, Tensor],
    alphas: Sequence[float] | Tensor,
    family: str = "exact",
    shift: float = 0.5,
    scale: float = 1.5,
) -> dict[str, Tensor]:
    """MVTCAE and JMVAE-KL against their targets over ``alpha``, means over the batch.

    For each ``a`` the batch means of: MVTCAE (``beta = 1``), its target and gap
    (target - objective, ``>= 0``); JMVAE-KL, its counterpart target, its gap (which includes
    the slack) and the slack ``a(M-1) KL(q(z|X) || p)``; and, the same for every ``a``, the
    ELBO and ``log p(X)``.

    Args:
        model: the linear-Gaussian model.
        x: ``{m: (B, D)}`` observations.
        alphas: the ``a`` values, in ``[0, 1]`` (JMVAE's target bounds it for
            ``a <= 1/(M-1)`` only; its values are reported for every ``a``).
        family: the posteriors, see :func:`posteriors`.
        shift: see :func:`posteriors`.
        scale: see :func:`posteriors`.

    Returns:
        ``{name: (A,)}`` for ``"alpha"``, ``"elbo"``, ``"log_evidence"``, ``"mvtcae"``,
        ``"mvtcae_target"``, ``"mvtcae_gap"``, ``"jmvae"``, ``"jmvae_target"``,
        ``"jmvae_gap"``, ``"jmvae_slack"``.

    Raises:
        ValueError: for an ``alpha`` outside ``[0, 1]``, and see :func:`posteriors`.
    """
    qz_x, qz_xm = posteriors(model, x, family, shift, scale)
    values = torch.as_tensor(alphas, dtype=torch.get_default_dtype()).flatten()
    rows: dict[str, list[Tensor]] = {}
    for alpha in values.tolist():
        row = {
            "mvtcae": mvtcae(model, x, qz_x, qz_xm, alpha),
            "mvtcae_target": mvtcae_target(model, x, qz_xm, alpha),
            "jmvae": jmvae_kl(model, x, qz_x, qz_xm, alpha),
            "jmvae_target": jmvae_target(model, x, qz_xm, alpha),
            "jmvae_slack": jmvae_slack(model, qz_x, alpha),
        }
        row["mvtcae_gap"] = row["mvtcae_target"] - row["mvtcae"]
        row["jmvae_gap"] = row["jmvae_target"] - row["jmvae"]
        for name, value in row.items():
            rows.setdefault(name, []).append(value.mean())
    out = {"alpha": values}
    count = len(values)
    out["elbo"] = elbo(model, x, qz_x).mean().expand(count).clone()
    out["log_evidence"] = model.log_evidence(x).mean().expand(count).clone()
    out.update({name: torch.stack(v) for name, v in rows.items()})
    return out
