"""Hamiltonian Monte Carlo for unnormalised latent densities (JNF subset posteriors)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["HMCResult", "hmc"]


@dataclass(frozen=True)
class HMCResult:
    """Output of :func:`hmc`.

    Attributes:
        samples: ``(n_steps, *z0.shape)`` chain states after each MCMC step.
        acceptance: ``z0.shape[:-1]`` acceptance rate of each chain.
    """

    samples: Tensor
    acceptance: Tensor


def _draw(
    fn: Callable, shape: torch.Size, generator: torch.Generator | None, like: Tensor
) -> Tensor:
    device = generator.device if generator is not None else like.device
    return fn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _grad(log_prob: Callable[[Tensor], Tensor], z: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        value = log_prob(z)
        (grad,) = torch.autograd.grad(value.sum(), z)
    return value.detach(), grad


def hmc(
    log_prob: Callable[[Tensor], Tensor],
    z0: Tensor,
    n_steps: int = 100,
    n_leapfrog: int = 10,
    step_size: float = 0.01,
    generator: torch.Generator | None = None,
) -> HMCResult:
    """Run independent HMC chains with an identity mass matrix (one chain per row of ``z0``).

    Each MCMC step draws a momentum ``p ~ N(0, I)``, integrates ``n_leapfrog`` leapfrog steps of
    ``step_size`` and accepts with probability ``min(1, exp(H0 - H))``. Defaults are those of the
    JNF reference code (100 steps, 10 leapfrog steps of 0.01, no tempering).

    Args:
        log_prob: maps ``(..., D)`` points to ``(...)`` unnormalised log densities.
        z0: ``(..., D)`` initial states.
        n_steps: MCMC steps.
        n_leapfrog: leapfrog steps per MCMC step.
        step_size: leapfrog step size.
        generator: source of the momentum and acceptance noise.

    Returns:
        An :class:`HMCResult`; ``samples[-1]`` are the final states.

    Raises:
        ValueError: for non-positive step counts or step size.

    References:
        Neal, "MCMC using Hamiltonian dynamics", Handbook of MCMC (2011), arXiv 1206.1901.
    """
    if n_steps < 1 or n_leapfrog < 1 or step_size <= 0:
        raise ValueError(
            f"need n_steps >= 1, n_leapfrog >= 1 and step_size > 0, got "
            f"{n_steps=}, {n_leapfrog=}, {step_size=}"
        )
    z = z0.detach()
    logp, grad = _grad(log_prob, z)
    accepted = torch.zeros(z.shape[:-1], device=z.device, dtype=z.dtype)
    states = []
    for _ in range(n_steps):
        p0 = _draw(torch.randn, z.shape, generator, z)
        zn, gn = z, grad
        p = p0 + 0.5 * step_size * gn
        for i in range(n_leapfrog):
            zn = zn + step_size * p
            logpn, gn = _grad(log_prob, zn)
            if i < n_leapfrog - 1:
                p = p + step_size * gn
        p = p + 0.5 * step_size * gn
        h0 = -logp + 0.5 * p0.pow(2).sum(-1)
        h1 = -logpn + 0.5 * p.pow(2).sum(-1)
        u = _draw(torch.rand, h0.shape, generator, z)
        accept = torch.log(u) < (h0 - h1)  # NaN energies are rejected
        z = torch.where(accept.unsqueeze(-1), zn, z)
        logp = torch.where(accept, logpn, logp)
        grad = torch.where(accept.unsqueeze(-1), gn, grad)
        accepted = accepted + accept.to(z.dtype)
        states.append(z)
    return HMCResult(torch.stack(states), accepted / n_steps)
