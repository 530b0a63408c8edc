"""Normalizing-flow posteriors on zuko's masked autoregressive flow (MAF).

A flow posterior pushes a data-dependent diagonal Gaussian base through an invertible map:
``log q(z|x) = log N(f(z); mu(x), sigma(x)) + log|det df/dz|`` (Senellart & Allassonniere,
arXiv 2502.03952, stage 2 of JNF). The MAF can also take a context vector (a conditional flow).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import zuko
from torch import Tensor, nn
from zuko.distributions import NormalizingFlow

__all__ = ["MAF", "FlowPosterior"]


class MAF(nn.Module):
    """A (conditional) masked autoregressive flow ``f``: ``z -> u``, built on ``zuko.flows.MAF``.

    Args:
        features: dimension ``D`` of ``z``.
        context: dimension of the optional context (0 for an unconditional flow).
        transforms: number of MADE blocks (JNF default: 2).
        hidden: hidden sizes of each MADE (JNF default: three layers of 128).

    References:
        Papamakarios et al., "Masked Autoregressive Flow for Density Estimation",
        NeurIPS 2017 (arXiv 1705.07057).
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        transforms: int = 2,
        hidden: Sequence[int] = (128, 128, 128),
    ) -> None:
        super().__init__()
        if features < 1 or transforms < 1:
            raise ValueError(
                f"MAF needs features >= 1 and transforms >= 1, got {features=} {transforms=}"
            )
        self.context = context
        self.flow = zuko.flows.MAF(
            features, context, transforms=transforms, hidden_features=tuple(hidden)
        )

    def forward(self, context: Tensor | None = None) -> torch.distributions.Transform:
        """Return the transform ``f`` (``z -> u``), conditioned on ``context`` if the flow is.

        Args:
            context: ``(B, C)`` context, or ``None`` for an unconditional flow.

        Returns:
            A ``torch.distributions.Transform``; ``.inv`` maps base samples to ``z``.
        """
        if (context is None) != (self.context == 0):
            raise ValueError(
                f"this MAF has context={self.context}; pass a (B, {self.context}) context "
                "tensor exactly when context > 0"
            )
        return self.flow.transform(context)


class FlowPosterior(nn.Module):
    """``q(z|x)``: a Gaussian encoder's output pushed through a MAF.

    Args:
        encoder: module mapping ``x`` to a diagonal Gaussian ``q0(u|x)`` (event ``(D,)``).
        features: latent dimension ``D``.
        context: context size of the MAF (0: the flow does not see ``x``, as in JNF).
        transforms: number of MADE blocks.
        hidden: hidden sizes of each MADE.

    References:
        Senellart & Allassonniere, "Bridging the inference gap in Multimodal Variational
        Autoencoders", arXiv 2502.03952 (JNF, stage 2).
    """

    def __init__(
        self,
        encoder: nn.Module,
        features: int,
        context: int = 0,
        transforms: int = 2,
        hidden: Sequence[int] = (128, 128, 128),
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.maf = MAF(features, context, transforms, hidden)

    def forward(self, x: Tensor, context: Tensor | None = None) -> NormalizingFlow:
        """Return ``q(z|x)``.

        Args:
            x: ``(B, ...)`` encoder input.
            context: optional ``(B, C)`` flow context.

        Returns:
            A distribution with batch shape ``(B,)``, event shape ``(D,)``, exact ``log_prob``
            and reparameterised ``rsample``.
        """
        return NormalizingFlow(self.maf(context), self.encoder(x))
