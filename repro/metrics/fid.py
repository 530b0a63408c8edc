"""Fréchet distances: the FID with verified local Inception weights, else a labelled proxy.

The FID uses pytorch-fid's Inception; the proxy, a classifier's feature space.

Policy (../shared/ENVIRONMENT.md, "FID weights"): the Inception weights
``pt_inception-2015-12-05-6726825d.pth`` are looked up in ``$REPRO_FID_WEIGHTS``, then in
torch hub's checkpoint folder, and accepted only when their sha256 starts with ``6726825d``.
Nothing here downloads: pytorch-fid's own constructor would fetch the file from GitHub, so
:class:`InceptionFeatures` hands it the local file instead, and a randomly initialised
Inception is never built. Without the file, :func:`fd_metric` returns the Fréchet distance in
a digit classifier's penultimate features, labelled ``"FD-proxy (... classifier features)"``:
its numbers are not comparable with published FIDs.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import Tensor, nn

from repro.metrics.classifiers import evaluating

__all__ = [
    "FID_SHA256_PREFIX",
    "FID_WEIGHTS_ENV",
    "FID_WEIGHTS_NAME",
    "FID_WEIGHTS_URL",
    "FDMetric",
    "InceptionFeatures",
    "fd_metric",
    "find_inception_weights",
    "frechet_distance",
    "hub_weights_path",
]

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_SHA256_PREFIX = "6726825d"
FID_WEIGHTS_ENV = "REPRO_FID_WEIGHTS"
# pytorch_fid.inception.FID_WEIGHTS_URL (0.3.0), repeated so that messages need no torchvision
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth"
)
FID_LABEL = "FID (Inception pool3)"

_VERIFIED: dict[tuple[str, int, int, str], bool] = {}  # (path, size, mtime_ns, prefix) -> ok


def hub_weights_path() -> Path:
    """Where pytorch-fid's download would cache the weights: ``torch.hub.get_dir()/checkpoints``.

    Returns:
        ``$TORCH_HOME/hub/checkpoints/<FID_WEIGHTS_NAME>`` (or the ``XDG_CACHE_HOME`` /
        ``~/.cache/torch`` equivalent).
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_NAME


def _placement() -> str:
    return (
        f"download {FID_WEIGHTS_URL} on a machine with internet access and either place it at "
        f"{hub_weights_path()} or point ${FID_WEIGHTS_ENV} at it"
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path) -> Path:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, FID_SHA256_PREFIX)
    if key not in _VERIFIED:
        _VERIFIED[key] = _sha256(path).startswith(FID_SHA256_PREFIX)
    if not _VERIFIED[key]:
        raise ValueError(
            f"{path} is not the FID Inception weights file {FID_WEIGHTS_NAME}: its sha256 does "
            f"not start with {FID_SHA256_PREFIX!r}. Replace it: {_placement()}"
        )
    return path


def find_inception_weights() -> Path | None:
    """Locate and verify the FID Inception weights; never downloads.

    Looks at ``$REPRO_FID_WEIGHTS``, then at :func:`hub_weights_path`. A file found is accepted
    only when its sha256 starts with :data:`FID_SHA256_PREFIX` (the check is cached per path,
    size and modification time).

    Returns:
        The verified file, or ``None`` when neither location holds one.

    Raises:
        FileNotFoundError: when ``$REPRO_FID_WEIGHTS`` is set but names no file.
        ValueError: when a file is found whose hash does not match; the message names the
            file, the expected prefix and where to get the right file.
    """
    env = os.environ.get(FID_WEIGHTS_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"${FID_WEIGHTS_ENV}={env!r} names no file; unset it or {_placement()}"
            )
        return _verify(path)
    path = hub_weights_path()
    return _verify(path) if path.is_file() else None


class InceptionFeatures(nn.Module):
    """pytorch-fid's FID Inception (pool3, 2048-d), built from a local weights file only.

    ``pytorch_fid.inception.InceptionV3([3], use_fid_inception=True)`` builds the network
    through ``fid_inception_v3()``, which fetches its state dict with
    ``load_state_dict_from_url(FID_WEIGHTS_URL)``. Here that loader is replaced, for the
    construction only, by one that returns the state dict read from ``weights`` (and refuses
    any other URL), so the network, its TF-compatible blocks and the strict state-dict load are
    pytorch-fid's own, and nothing is downloaded. The file is not hash-checked here; use
    :func:`find_inception_weights` for that.

    Args:
        weights: the ``pt_inception-2015-12-05-6726825d.pth`` state dict.
        batch_size: images per forward pass in :meth:`features`.

    Raises:
        FileNotFoundError: when ``weights`` is not a file.

    References:
        Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
        Equilibrium", NeurIPS 2017, arXiv:1706.08500; ``mseitzer/pytorch-fid`` 0.3.0,
        ``src/pytorch_fid/inception.py``.
    """

    def __init__(self, weights: str | Path, batch_size: int = 50) -> None:
        super().__init__()
        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(f"Inception weights {weights} not found; {_placement()}")
        from repro.compat import import_torchvision

        import_torchvision()  # before pytorch_fid: torchvision on a CPU-only torch needs the shim
        from pytorch_fid import inception as pfi

        state = torch.load(weights, map_location="cpu", weights_only=True)

        def local(url: str, *args: object, **kwargs: object) -> Mapping[str, Tensor]:
            if url != pfi.FID_WEIGHTS_URL:
                raise RuntimeError(f"refusing to fetch {url}: only the local FID weights load")
            return state

        with mock.patch.object(pfi, "load_state_dict_from_url", local):
            self.net = pfi.InceptionV3(
                [pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
                resize_input=True,
                normalize_input=True,
                requires_grad=False,
                use_fid_inception=True,
            ).float()
        self.net.eval()
        self.batch_size = batch_size

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """Pool3 features of images in ``[0, 1]``.

        Grey images are repeated to 3 channels; pytorch-fid then resizes to 299x299
        (bilinear) and maps ``[0, 1]`` to ``[-1, 1]``. Values are clamped to ``[0, 1]``
        (decoder means may overshoot slightly).

        Args:
            images: ``(N, 1 or 3, H, W)`` images in ``[0, 1]``.

        Returns:
            ``(N, 2048)`` float32 features on the CPU.

        Raises:
            ValueError: for another layout, or values far outside ``[0, 1]`` (e.g. 0..255 or
                ``[-1, 1]`` images).
        """
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected (N, 1 or 3, H, W) images, got {tuple(images.shape)}")
        if images.numel() and (float(images.min()) < -0.5 or float(images.max()) > 1.5):
            raise ValueError(
                f"images must lie in [0, 1], got values in [{float(images.min()):.3g}, "
                f"{float(images.max()):.3g}]"
            )
        device = next(self.net.parameters()).device
        out = []
        with evaluating(self.net):
            for i in range(0, len(images), self.batch_size):
                x = images[i : i + self.batch_size].to(device, torch.float32).clamp(0, 1)
                if x.shape[1] == 1:
                    x = x.expand(-1, 3, -1, -1)
                out.append(self.net(x)[0].flatten(1).cpu())  # (b, 2048, 1, 1) -> (b, 2048)
        return torch.cat(out) if out else torch.empty(0, 2048)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2})``, computed by
    pytorch-fid's ``calculate_frechet_distance`` (scipy ``sqrtm``; scipy 1.17's deprecation
    warning about its ``disp`` argument and sqrtm's singular-matrix warning are silenced).

    Args:
        mu1: ``(d,)`` mean of the first set.
        sigma1: ``(d, d)`` covariance of the first set.
        mu2: ``(d,)`` mean of the second set.
        sigma2: ``(d, d)`` covariance of the second set.

    Returns:
        The distance (non-negative up to rounding).

    Raises:
        ValueError: for mismatched shapes, or a square root with a large imaginary part.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"need means (d,) and covariances (d, d) of equal d, got {mu1.shape}, "
            f"{sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    from repro.compat import import_torchvision

    import_torchvision()  # pytorch_fid imports torchvision
    from pytorch_fid.fid_score import calculate_frechet_distance
    from scipy.linalg import LinAlgWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*`disp` argument is deprecated")
        # A singular product (feature directions that never vary, e.g. dead ReLUs of the proxy
        # features) only makes sqrtm warn; pytorch-fid adds eps to the diagonal if the root is
        # not finite, and a large imaginary part still raises.
        warnings.filterwarnings("ignore", category=LinAlgWarning)
        return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))


def _statistics(features: Tensor) -> tuple[np.ndarray, np.ndarray]:
    f = features.detach().cpu().to(torch.float64).numpy()
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need at least 2 feature vectors (N, d), got {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


@dataclass(frozen=True, eq=False)
class FDMetric:
    """A Fréchet distance in one feature space, with the label figures must carry.

    Attributes:
        label: axis and table label, ``"FID (Inception pool3)"`` or
            ``"FD-proxy (<what> classifier features)"``.
        key: sidecar-safe name, ``"fid"`` or ``"fd_proxy_classifier"``.
        extractor: ``images (B, ...) -> (B, d)`` features.
        batch_size: images per extractor call.
    """

    label: str
    key: str
    extractor: Callable[[Tensor], Tensor]
    batch_size: int = 500

    @property
    def is_inception(self) -> bool:
        """Whether this is the real FID (comparable with published numbers)."""
        return self.key == "fid"

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """Features of ``images``.

        Args:
            images: ``(N, ...)`` images in ``[0, 1]``.

        Returns:
            ``(N, d)`` float64 features on the CPU.
        """
        chunks = [
            self.extractor(images[i : i + self.batch_size]).detach().cpu().to(torch.float64)
            for i in range(0, len(images), self.batch_size)
        ]
        return torch.cat(chunks) if chunks else torch.empty(0, 0, dtype=torch.float64)

    def statistics(self, images: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of the features (cache these for the real set).

        Args:
            images: ``(N, ...)`` images, ``N >= 2``.

        Returns:
            ``(mu (d,), sigma (d, d))`` float64 arrays.

        Raises:
            ValueError: for fewer than 2 images.
        """
        return _statistics(self.features(images))

    def distance(
        self,
        real_images: Tensor | tuple[np.ndarray, np.ndarray],
        generated_images: Tensor,
    ) -> float:
        """Fréchet distance between the feature statistics of two image sets.

        Args:
            real_images: ``(N, ...)`` reference images, or their :meth:`statistics`.
            generated_images: ``(N', ...)`` generated images.

        Returns:
            The distance.

        Raises:
            ValueError: for fewer than 2 images in a set.
        """
        real = real_images if isinstance(real_images, tuple) else self.statistics(real_images)
        return frechet_distance(*real, *self.statistics(generated_images))


def _proxy_extractor(classifier: nn.Module) -> Callable[[Tensor], Tensor]:
    def extract(images: Tensor) -> Tensor:
        device = next(classifier.parameters()).device
        with evaluating(classifier):
            return classifier.features(images.to(device))

    return extract


def fd_metric(
    classifiers: Mapping[str, nn.Module] | nn.Module | None = None,
    modality: str | None = None,
    require_inception: bool = False,
    dataset: str | None = None,
) -> FDMetric:
    """The FID when the verified Inception weights are present, else the labelled proxy.

    Args:
        classifiers: for the proxy: ``{m: classifier}`` (or one classifier) with a
            ``features(images) -> (N, d)`` method, e.g. a
            :class:`~repro.metrics.classifiers.DigitClassifier`.
        modality: which classifier of ``classifiers`` (optional when it holds one).
        require_inception: raise instead of falling back to the proxy.
        dataset: named in the proxy's label, e.g. ``"PolyMNIST"`` gives
            ``"FD-proxy (PolyMNIST m0 classifier features)"``.

    Returns:
        The :class:`FDMetric`.

    Raises:
        FileNotFoundError: with ``require_inception`` and no weights file (with placement
            instructions), or a ``$REPRO_FID_WEIGHTS`` naming no file.
        ValueError: for a weights file with the wrong hash, or when the proxy is needed and
            ``classifiers``/``modality`` do not pick one classifier with ``features``.
    """
    weights = find_inception_weights()
    if weights is not None:
        return FDMetric(FID_LABEL, "fid", InceptionFeatures(weights).features, batch_size=500)
    if require_inception:
        raise FileNotFoundError(
            f"the FID Inception weights {FID_WEIGHTS_NAME} are not on this machine (looked at "
            f"${FID_WEIGHTS_ENV} and {hub_weights_path()}); {_placement()}. Nothing is downloaded."
        )
    if classifiers is None:
        raise ValueError(
            "the Inception weights are absent and no classifier was given for the FD proxy; "
            f"pass classifiers (and a modality), or {_placement()}"
        )
    if isinstance(classifiers, nn.Module):
        classifier, name = classifiers, modality
    else:
        if modality is None and len(classifiers) == 1:
            modality = next(iter(classifiers))
        if modality not in classifiers:
            raise ValueError(
                f"modality {modality!r} does not pick one of the classifiers "
                f"{sorted(classifiers)} for the FD proxy"
            )
        classifier, name = classifiers[modality], modality
    if not callable(getattr(classifier, "features", None)):
        raise ValueError(
            f"the FD proxy needs a classifier with a features() method, got "
            f"{type(classifier).__name__}"
        )
    what = " ".join(part for part in (dataset, name) if part) or "digit"
    label = f"FD-proxy ({what} classifier features)"
    return FDMetric(label, "fd_proxy_classifier", _proxy_extractor(classifier))
