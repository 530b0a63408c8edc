"""The rat encoders and decoders of the MMVM code (mmvm.md §3, "Architecture and training")."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent, Poisson

from repro.distributions import diag_gaussian
from repro.models.decoders import FixedScaleNormal

__all__ = [
    "SPIKE_LIKELIHOODS",
    "LOGVAR_BOUNDS",
    "EVAL_LOGVAR_FLOOR",
    "BinnedCounts",
    "SpikeEncoder",
    "SpikeDecoder",
]

SPIKE_LIKELIHOODS = ("mse", "poisson")
LOGVAR_BOUNDS = (-20.0, 20.0)  # guard of the Poisson option (ours): small beta with that
# likelihood drove posterior scales to exactly 0 (an infinite KL, NaN) at the quick settings
EVAL_LOGVAR_FLOOR = -80.0  # ours, evaluation only: keeps exp(logvar) a normal float32 (the
# full profile's AVG experts reach log-variances of -239, whose scales are exactly 0)


class SpikeEncoder(nn.Module):
    """Linear(D,h)-LReLU-Linear(h,h)-LReLU-Linear(h,2)-LReLU, then heads ``mu``, ``log var``.

    Args:
        in_features: ``D_m`` (10 x neurons).
        hidden: ``h`` (the code: ``D_m``).
        latent_dim: 2 in the paper.
        logvar_bounds: optional ``(low, high)`` clamp of the log-variance (``None``: none, as
            the code; :data:`LOGVAR_BOUNDS` with the Poisson likelihood).

    In evaluation mode (``encoder.eval()``) the log-variance is also floored at
    :data:`EVAL_LOGVAR_FLOOR`, so that a posterior stays a valid ``Normal`` (and its variance a
    normal float32) after training has driven some scales to 0. Training is untouched: with
    AVG's parameter average a unimodal expert whose variance is far below the others' barely
    changes the joint posterior, so nothing stops its log-variance from drifting down (to
    -239 in the full profile's 999 epochs). The floor leaves every expert's mean as it is and
    moves a sample by at most ``exp(-40)`` times its noise.

    References:
        thomassutter/mmvmvae and yangmeng96/mmvmvae-hippocampal (mmvm.md §3); the head's
        output is a log-variance everywhere here (the code's spike VAE reads it as a log-std).
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        latent_dim: int = 2,
        logvar_bounds: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        self.logvar_bounds = logvar_bounds
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
        logvar = self.logvar(h)
        if self.logvar_bounds is not None:
            logvar = logvar.clamp(*self.logvar_bounds)
        if not self.training:
            logvar = logvar.clamp(min=EVAL_LOGVAR_FLOOR)
        return diag_gaussian(self.loc(h), torch.exp(0.5 * logvar))


class BinnedCounts(Poisson):
    """Poisson spike counts observed as ``x = c / bins`` (the rat data's mean of 1-ms indicators).

    ``log_prob(x)`` is the Poisson log-probability of the count ``round(bins * x)``; ``mean``
    and samples are on the scale of ``x``.

    Args:
        rate: ``(...)`` expected counts per bin window, positive.
        bins: indicators per value (10 one-ms bins in a 10-ms bin).
    """

    def __init__(self, rate: Tensor, bins: int = 10) -> None:
        super().__init__(rate, validate_args=False)
        self.bins = int(bins)

    def log_prob(self, value: Tensor) -> Tensor:
        """Poisson log-probability of the counts ``round(bins * value)``, elementwise."""
        return super().log_prob((value * self.bins).round())

    @property
    def mean(self) -> Tensor:
        """``rate / bins``, on the scale of the observations."""
        return self.rate / self.bins

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        """Counts drawn from the Poisson, divided by ``bins``."""
        return super().sample(sample_shape) / self.bins

    def expand(self, batch_shape: torch.Size, _instance=None) -> BinnedCounts:
        """The same distribution over a broadcast batch shape."""
        return BinnedCounts(self.rate.expand(batch_shape), self.bins)


class SpikeDecoder(nn.Module):
    """Linear(2,h)-LReLU-Linear(h,h)-LReLU-Linear(h,D), no output nonlinearity.

    ``likelihood="mse"`` (the code): ``N(x; x_hat, 1/2)``, whose log density is
    ``-sum_d (x_hat_d - x_d)^2`` up to a constant, the code's summed squared error without a
    1/2 factor. ``"poisson"`` (the option of mmvm.md §4): Poisson counts ``10 x`` with rate
    ``softplus(output)`` (:class:`BinnedCounts`), whose mean ``rate / 10`` is the
    reconstruction.

    Args:
        latent_dim: 2 in the paper.
        hidden: ``h``.
        out_features: ``D_m``.
        likelihood: ``"mse"`` or ``"poisson"``.

    Raises:
        ValueError: for an unknown likelihood.
    """

    def __init__(
        self, latent_dim: int, hidden: int, out_features: int, likelihood: str = "mse"
    ) -> None:
        super().__init__()
        if likelihood not in SPIKE_LIKELIHOODS:
            raise ValueError(
                f"unknown likelihood {likelihood!r}; choose one of {SPIKE_LIKELIHOODS}"
            )
        self.likelihood = likelihood
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.LeakyReLU(),
            nn.Linear(hidden, hidden), nn.LeakyReLU(),
            nn.Linear(hidden, out_features),
        )  # fmt: skip

    def forward(self, z: Tensor) -> Independent:
        """Map ``(..., 2)`` latents to ``p(x|z)`` over ``(D,)`` with batch ``(...)``."""
        out = self.net(z)
        if self.likelihood == "poisson":
            return Independent(BinnedCounts(F.softplus(out) + 1e-6), 1)
        return Independent(FixedScaleNormal(out, math.sqrt(0.5)), 1)
