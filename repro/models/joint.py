"""The joint VAE: a joint posterior ``q(z|X)``, one decoder per modality, a standard prior."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from repro.distributions import standard_normal
from repro.losses import elbo

__all__ = ["JointVAE"]


class JointVAE(nn.Module):
    """Joint generative model ``p(z) prod_j p(x_j|z)`` with an amortised ``q(z|X)``.

    Args:
        encoder: maps the dict of modalities to ``q(z|X)`` (batch ``(B,)``, event ``(D,)``).
        decoders: one module per modality mapping ``(..., D)`` to ``p(x_j|z)``.
        latent_dim: ``D``.

    References:
        Suzuki, Nakayama, Matsuo, "Joint Multimodal Learning with Deep Generative Models",
        arXiv 1611.01891 (the joint encoder of JMVAE); Senellart & Allassonniere,
        arXiv 2502.03952 (stage 1 of JNF).
    """

    def __init__(
        self, encoder: nn.Module, decoders: Mapping[str, nn.Module], latent_dim: int
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoders = nn.ModuleDict(dict(decoders))
        self.latent_dim = latent_dim
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def modalities(self) -> list[str]:
        """Sorted modality names."""
        return sorted(self.decoders)

    def prior(self) -> Distribution:
        """``p(z) = N(0, I)`` on the model's device and dtype."""
        return standard_normal(self.latent_dim, like=self._anchor)

    def encode(self, x: Mapping[str, Tensor]) -> Distribution:
        """Return ``q(z|X)`` for a batch of complete observations."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> dict[str, Distribution]:
        """Return ``p(x_j|z)`` for every modality; ``z`` is ``(..., D)``."""
        return {m: dec(z) for m, dec in self.decoders.items()}

    def bound(
        self,
        x: Mapping[str, Tensor],
        beta: float = 1.0,
        weights: Mapping[str, float] | None = None,
    ) -> Tensor:
        """Single-sample multimodal ELBO per sample, ``(B,)`` (see :func:`repro.losses.elbo`)."""
        qz_x = self.encode(x)
        z = qz_x.rsample()
        return elbo(x, qz_x, self.decode(z), self.prior(), z, beta=beta, weights=weights)
