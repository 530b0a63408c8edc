"""Objectives of multimodal iterative amortized inference: the ELBO of Gaussian parameters.

Pure per-sample functions for refining a diagonal-Gaussian posterior
``q_lambda(z) = N(mu, diag(exp(logvar)))`` with the gradient of the multimodal ELBO
``L(X; lambda)`` (Marino et al. 2018), and for distilling the refined posterior into unimodal
encoders (Oshima et al. 2024). The refinement loop and the model live in
:mod:`repro.models.iterative`.

Unlike the other loss modules, :func:`elbo_of_params` draws its latent samples itself (from a
``torch.Generator``) unless the noise ``eps`` is given: the ELBO is a function of the parameters
``lambda``, and fixing ``eps`` makes it a deterministic one (fixed-noise evaluation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence

from repro.distributions import diag_gaussian, gaussian_params, rsample, standard_normal
from repro.losses.bounds import log_likelihood

__all__ = ["ALIGN_DIRECTIONS", "elbo_of_params", "elbo_gradients", "alignment_kl"]

ALIGN_DIRECTIONS = ("forward", "reverse")

Decoders = Mapping[str, Callable[[Tensor], Distribution]]


def _gaussian(loc: Tensor, logvar: Tensor) -> Distribution:
    return diag_gaussian(loc, torch.exp(0.5 * logvar))


def elbo_of_params(
    x: Mapping[str, Tensor],
    loc: Tensor,
    logvar: Tensor,
    decoders: Decoders,
    K: int = 1,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    beta: float = 1.0,
    weights: Mapping[str, float] | None = None,
) -> Tensor:
    """Multimodal ELBO as a function of the Gaussian parameters ``lambda = (mu, log sigma^2)``.

    ``L(X; lambda) = (1/K) sum_k sum_m lambda_m log p(x_m | z_k) - beta KL(N(mu, sigma^2) || N(0,
    I))`` with ``z_k = mu + sigma eps_k``, the KL in closed form
    (``torch.distributions.kl_divergence``).

    Args:
        x: observations per modality, ``(B, ...)``; only the decoded modalities are read.
        loc: ``(B, D)`` means ``mu``.
        logvar: ``(B, D)`` log-variances ``log sigma^2``.
        decoders: ``{m: z -> p(x_m|z)}``, each mapping ``(K, B, D)`` latents to a distribution
            with batch ``(K, B)`` (e.g. an ``nn.ModuleDict`` of decoders). Decoders must treat
            samples independently (no batch statistics) for the result to be per sample.
        K: number of reparameterised samples.
        noise: optional ``(K, B, D)`` standard-normal noise ``eps`` (fixed-noise evaluation);
            drawn from ``generator`` when ``None``.
        generator: source of the noise when ``noise`` is ``None`` (``None``: the global RNG).
        beta: KL weight (1 for a bound on ``log p(X)``).
        weights: optional likelihood rescaling ``lambda_m`` per modality.

    Returns:
        ``(B,)`` ELBO values, differentiable in ``loc``, ``logvar`` and the decoders' parameters.

    Raises:
        ValueError: for ``K < 1``, mismatched ``loc``/``logvar`` shapes, or ``noise`` not of shape
            ``(K, *loc.shape)``.

    References:
        Kingma & Welling, arXiv 1312.6114 (the reparameterised ELBO); Marino, Yue & Mandt,
        "Iterative Amortized Inference", ICML 2018 (arXiv 1807.09356), Sec. 3 (the ELBO as a
        function of the approximate-posterior parameters).
    """
    if K < 1:
        raise ValueError(f"K must be >= 1, got K={K}")
    if loc.shape != logvar.shape:
        raise ValueError(
            f"loc and logvar must have one shape, got {tuple(loc.shape)} and {tuple(logvar.shape)}"
        )
    q = _gaussian(loc, logvar)
    if noise is None:
        z = rsample(q, (K,), generator)  # (K, B, D)
    else:
        if noise.shape != (K, *loc.shape):
            raise ValueError(
                f"noise must have shape (K, *loc.shape) = {(K, *loc.shape)}, "
                f"got {tuple(noise.shape)}"
            )
        z = loc + torch.exp(0.5 * logvar) * noise.to(loc)
    px_z = {m: dec(z) for m, dec in decoders.items()}
    rec = log_likelihood(px_z, x, weights).mean(0)  # (B,)
    return rec - beta * kl_divergence(q, standard_normal(loc.shape[-1], like=loc))


def elbo_gradients(
    x: Mapping[str, Tensor],
    loc: Tensor,
    logvar: Tensor,
    decoders: Decoders,
    K: int = 1,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    beta: float = 1.0,
    weights: Mapping[str, float] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The ELBO and its gradient with respect to ``lambda = (mu, log sigma^2)``, per sample.

    Samples are independent, so the gradient of the summed ELBO gives every sample's own
    gradient. The gradient is taken with ``torch.autograd.grad`` with respect to detached
    copies of ``loc`` and ``logvar`` only: nothing accumulates in any parameter's ``.grad``, no
    gradient flows back into whatever produced ``loc`` and ``logvar``, and it works inside
    ``torch.no_grad()`` (the computation runs under ``torch.enable_grad()``).

    Args:
        x: observations per modality, ``(B, ...)``.
        loc: ``(B, D)`` means.
        logvar: ``(B, D)`` log-variances.
        decoders: ``{m: z -> p(x_m|z)}``, see :func:`elbo_of_params`.
        K: number of reparameterised samples of the Monte-Carlo gradient.
        noise: optional ``(K, B, D)`` fixed noise.
        generator: source of the noise when ``noise`` is ``None``.
        beta: KL weight.
        weights: optional likelihood rescaling per modality.

    Returns:
        ``(value, grad_loc, grad_logvar)``: the ``(B,)`` ELBO and ``(B, D)`` gradients, all
        detached.

    References:
        Marino, Yue & Mandt, arXiv 1807.09356, Sec. 3 (``nabla_lambda L`` as the refiner's
        input).
    """
    with torch.enable_grad():
        loc_ = loc.detach().requires_grad_(True)
        logvar_ = logvar.detach().requires_grad_(True)
        value = elbo_of_params(x, loc_, logvar_, decoders, K, noise, generator, beta, weights)
        grad_loc, grad_logvar = torch.autograd.grad(value.sum(), (loc_, logvar_))
    return value.detach(), grad_loc.detach(), grad_logvar.detach()


def _detached(dist: Distribution) -> Distribution:
    loc, scale = gaussian_params(dist)
    return diag_gaussian(loc.detach(), scale.detach())


def alignment_kl(
    teacher: Distribution,
    student: Distribution,
    direction: str = "forward",
    stop_grad_teacher: bool = True,
) -> Tensor:
    """KL between the (refined) multimodal teacher and a unimodal student posterior.

    Args:
        teacher: ``q_{lambda_T}(z|X)``, a diagonal Gaussian with batch ``(B,)``.
        student: ``q_{phi_m}(z|x_m)``, batch ``(B,)``.
        direction: ``"forward"`` (default), ``KL(teacher || student)``, the JMVAE-KL convention
            (pixyz ``KullbackLeibler(q, q_x)``); or ``"reverse"``, ``KL(student || teacher)``.
        stop_grad_teacher: detach the teacher's parameters (default), so that only the student
            learns from this term (the teacher/student reading of the 2023 slides).

    Returns:
        ``(B,)`` divergences, to be **minimised** (subtract them from a bound).

    Raises:
        ValueError: for an unknown ``direction``; for a teacher that is not a diagonal
            Gaussian when ``stop_grad_teacher`` is set.

    References:
        Oshima, Suzuki & Matsuo, arXiv 2410.11403 (the alignment of unimodal encoders to the
        refined posterior; direction and stop-gradient unverified); Suzuki, Nakayama & Matsuo,
        arXiv 1611.01891 (JMVAE-KL, the forward direction).
    """
    if direction not in ALIGN_DIRECTIONS:
        raise ValueError(f"direction must be one of {ALIGN_DIRECTIONS}, got {direction!r}")
    if stop_grad_teacher:
        teacher = _detached(teacher)
    if direction == "forward":
        return kl_divergence(teacher, student)
    return kl_divergence(student, teacher)
