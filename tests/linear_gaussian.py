"""An exact linear-Gaussian multimodal model, the reference for objective tests.

``z ~ N(0, s0^2 I_D)``; ``x_m = a_m * z + b_m + eps_m``, ``eps_m ~ N(0, diag(psi_m))`` with
elementwise (diagonal) ``a_m``. Every posterior ``p(z | x_S)`` is then a diagonal Gaussian, and
the evidence is Gaussian per latent dimension, so everything is known in closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from repro.distributions import diag_gaussian


@dataclass
class LinearGaussian:
    a: dict[str, Tensor]
    b: dict[str, Tensor]
    psi: dict[str, Tensor]
    prior_var: float = 1.0

    @classmethod
    def random(cls, modalities=("m0", "m1", "m2"), dim=3, generator=None, prior_var=1.0):
        g = generator or torch.Generator().manual_seed(123)
        a = {m: 0.5 + torch.rand(dim, generator=g) * 1.5 for m in modalities}
        b = {m: torch.randn(dim, generator=g) for m in modalities}
        psi = {m: 0.2 + torch.rand(dim, generator=g) for m in modalities}
        return cls(a, b, psi, prior_var)

    @property
    def modalities(self):
        return sorted(self.a)

    @property
    def dim(self):
        return next(iter(self.a.values())).shape[0]

    def prior(self):
        return diag_gaussian(torch.zeros(self.dim), torch.full((self.dim,), self.prior_var).sqrt())

    def decoder(self, m, z):
        """p(x_m | z) as a distribution with batch shape z.shape[:-1]."""
        return diag_gaussian(self.a[m] * z + self.b[m], self.psi[m].sqrt().expand_as(z))

    def likelihood_expert(self, m, x_m):
        """p(x_m|z) as a function of z: the Gaussian N(z; (x-b)/a, psi/a^2) up to a constant."""
        return diag_gaussian((x_m - self.b[m]) / self.a[m], (self.psi[m] / self.a[m] ** 2).sqrt())

    def posterior(self, x, subset=None):
        """Exact p(z | x_S) (all modalities by default)."""
        subset = self.modalities if subset is None else subset
        precision = torch.full((self.dim,), 1.0 / self.prior_var)
        weighted = torch.zeros_like(next(iter(x.values())))
        for m in subset:
            p = self.a[m] ** 2 / self.psi[m]
            precision = precision + p
            weighted = weighted + p * (x[m] - self.b[m]) / self.a[m]
        var = 1.0 / precision
        return diag_gaussian(weighted * var, var.sqrt().expand_as(weighted))

    def log_evidence(self, x, subset=None):
        """Exact log p(x_S), shape (B,)."""
        subset = self.modalities if subset is None else subset
        total = 0.0
        for d in range(self.dim):
            a = torch.stack([self.a[m][d] for m in subset])
            cov = self.prior_var * torch.outer(a, a) + torch.diag(
                torch.stack([self.psi[m][d] for m in subset])
            )
            mean = torch.stack([self.b[m][d] for m in subset])
            obs = torch.stack([x[m][:, d] for m in subset], -1)
            total = total + torch.distributions.MultivariateNormal(mean, cov).log_prob(obs)
        return total

    def sample(self, n, generator):
        z = torch.randn(n, self.dim, generator=generator) * math.sqrt(self.prior_var)
        x = {
            m: self.a[m] * z
            + self.b[m]
            + torch.randn(n, self.dim, generator=generator) * self.psi[m].sqrt()
            for m in self.modalities
        }
        return z, x
