"""Encoders: networks that map observations to diagonal-Gaussian posteriors."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Independent

from repro.distributions import diag_gaussian

__all__ = [
    "mlp",
    "GaussianHead",
    "MLPEncoder",
    "ConvEncoder",
    "JointMLPEncoder",
    "ProjectedEncoder",
]


def mlp(sizes: Sequence[int], final_activation: bool = False) -> nn.Sequential:
    """A ReLU multilayer perceptron.

    Args:
        sizes: layer widths ``(in, h1, ..., out)``; at least two entries.
        final_activation: also apply ReLU after the last layer.

    Returns:
        The network, ``(B, in) -> (B, out)``.
    """
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least input and output sizes, got {list(sizes)}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """Linear map from features to a diagonal Gaussian ``N(mu, exp(logvar))``.

    Args:
        in_features: feature size.
        latent_dim: ``D``.
    """

    def __init__(self, in_features: int, latent_dim: int) -> None:
        super().__init__()
        self.loc = nn.Linear(in_features, latent_dim)
        self.logvar = nn.Linear(in_features, latent_dim)

    def forward(self, h: Tensor) -> Independent:
        """Map ``(B, F)`` features to a Gaussian with batch ``(B,)`` and event ``(D,)``."""
        return diag_gaussian(self.loc(h), torch.exp(0.5 * self.logvar(h)))


class MLPEncoder(nn.Module):
    """Flatten, MLP, Gaussian head.

    Args:
        in_shape: shape of one observation, e.g. ``(1, 32, 32)``.
        hidden: hidden widths, e.g. ``(512,)``.
        latent_dim: ``D``.
    """

    def __init__(self, in_shape: Sequence[int], hidden: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.in_shape = tuple(in_shape)
        features = math.prod(self.in_shape)
        self.body = mlp((features, *hidden), final_activation=True) if hidden else nn.Identity()
        self.head = GaussianHead(hidden[-1] if hidden else features, latent_dim)

    def forward(self, x: Tensor) -> Independent:
        """Map ``(B, *in_shape)`` to ``q(z|x)`` with batch ``(B,)``, event ``(D,)``."""
        return self.head(self.body(x.flatten(1)))


class ConvEncoder(nn.Module):
    """Strided convolutions (4x4, stride 2), then a Gaussian head; for square images.

    Args:
        in_channels: image channels.
        image_size: side length (28 or 32, any size divisible by ``2**len(channels)`` or not).
        latent_dim: ``D``.
        channels: output channels of each conv layer.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        latent_dim: int,
        channels: Sequence[int] = (32, 64, 128),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, size = in_channels, image_size
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            c_in, size = c_out, size // 2
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = GaussianHead(c_in * size * size, latent_dim)

    def forward(self, x: Tensor) -> Independent:
        """Map ``(B, C, H, W)`` images to ``q(z|x)`` with batch ``(B,)``, event ``(D,)``."""
        return self.head(self.body(x))


class JointMLPEncoder(nn.Module):
    """Joint posterior ``q(z|X)``: one Linear+ReLU per modality, concatenated, MLP, head.

    Args:
        in_shapes: observation shape per modality.
        latent_dim: ``D``.
        hidden: width of each modality's first layer (JNF toy: 512).
        joint_hidden: widths after concatenation (JNF toy: ``(512,)``).
    """

    def __init__(
        self,
        in_shapes: Mapping[str, Sequence[int]],
        latent_dim: int,
        hidden: int = 512,
        joint_hidden: Sequence[int] = (512,),
    ) -> None:
        super().__init__()
        self.modalities = sorted(in_shapes)
        self.branches = nn.ModuleDict(
            {
                m: nn.Sequential(
                    nn.Flatten(), nn.Linear(math.prod(in_shapes[m]), hidden), nn.ReLU(inplace=True)
                )
                for m in self.modalities
            }
        )
        width = hidden * len(self.modalities)
        self.body = (
            mlp((width, *joint_hidden), final_activation=True) if joint_hidden else nn.Identity()
        )
        self.head = GaussianHead(joint_hidden[-1] if joint_hidden else width, latent_dim)

    def forward(self, x: Mapping[str, Tensor]) -> Independent:
        """Map the modalities (each ``(B, ...)``) to ``q(z|X)``, batch ``(B,)``, event ``(D,)``."""
        missing = [m for m in self.modalities if m not in x]
        if missing:
            raise ValueError(f"joint encoder needs every modality; missing {missing}")
        h = torch.cat([self.branches[m](x[m]) for m in self.modalities], dim=-1)
        return self.head(self.body(h))


class ProjectedEncoder(nn.Module):
    """An encoder applied to a (frozen) projection ``g(x)``: ``q(z | g(x))`` (JNF-Shared).

    Args:
        projector: ``g``, mapping ``(B, ...)`` to ``(B, P)``.
        encoder: maps ``(B, P)`` to a distribution.
    """

    def __init__(self, projector: nn.Module, encoder: nn.Module) -> None:
        super().__init__()
        self.projector = projector
        self.encoder = encoder

    def forward(self, x: Tensor) -> Independent:
        """Return ``encoder(projector(x))``."""
        return self.encoder(self.projector(x))
