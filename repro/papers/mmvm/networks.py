"""The rat encoders and decoders of the MMVM code (mmvm.md §3, "Architecture and training")."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Independent

from repro.distributions import diag_gaussian
from repro.models.decoders import FixedScaleNormal

__all__ = ["SpikeEncoder", "SpikeDecoder"]


class SpikeEncoder(nn.Module):
    """Linear(D,h)-LReLU-Linear(h,h)-LReLU-Linear(h,2)-LReLU, then heads ``mu``, ``log var``.

    Args:
        in_features: ``D_m`` (10 x neurons).
        hidden: ``h`` (the code: ``D_m``).
        latent_dim: 2 in the paper.

    References:
        thomassutter/mmvmvae and yangmeng96/mmvmvae-hippocampal (mmvm.md §3); the head's
        output is a log-variance everywhere here (the code's spike VAE reads it as a log-std).
    """

    def __init__(self, in_features: int, hidden: int, latent_dim: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(in_features, hidden), nn.LeakyReLU(),
            nn.Linear(hidden, hidden), nn.LeakyReLU(),
            nn.Linear(hidden, latent_dim), nn.LeakyReLU(),
        )  # fmt: skip
        self.loc = nn.Linear(latent_dim, latent_dim)
        self.logvar = nn.Linear(latent_dim, latent_dim)

    def forward(self, x: Tensor) -> Independent:
        """Map ``(B, D)`` to ``q(z|x)`` with batch ``(B,)`` and event ``(latent_dim,)``."""
        h = self.body(x)
        return diag_gaussian(self.loc(h), torch.exp(0.5 * self.logvar(h)))


class SpikeDecoder(nn.Module):
    """Linear(2,h)-LReLU-Linear(h,h)-LReLU-Linear(h,D), no output nonlinearity.

    The likelihood is ``N(x; x_hat, 1/2)``, whose log density is ``-sum_d (x_hat_d - x_d)^2``
    up to a constant: the code's summed squared error, without a 1/2 factor.

    Args:
        latent_dim: 2 in the paper.
        hidden: ``h``.
        out_features: ``D_m``.
    """

    def __init__(self, latent_dim: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.LeakyReLU(),
            nn.Linear(hidden, hidden), nn.LeakyReLU(),
            nn.Linear(hidden, out_features),
        )  # fmt: skip

    def forward(self, z: Tensor) -> Independent:
        """Map ``(..., 2)`` latents to ``p(x|z)`` over ``(D,)`` with batch ``(...)``."""
        return Independent(FixedScaleNormal(self.net(z), math.sqrt(0.5)), 1)
