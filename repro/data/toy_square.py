"""Toy squares/circles pairs (Senellart & Allassonniere, arXiv 2502.03952, Fig. 2).

Binary 32x32 images on the grid ``linspace(-1, 1, 32)``. Each pair shares only its class:

* class 1, *full*: a filled diamond ``|X| + |Y| <= r`` (the "square", an L1 ball) paired with a
  filled disc ``X^2 + Y^2 <= r'^2``;
* class 0, *empty*: the diamond's outline paired with a ring, both bands ``r +- 0.125``.

Each image draws its own radius ``U(0.3, 0.9)``: size is private to each modality.

The module also classifies generated images by matching them against every clean shape of the
data (:func:`fit_shapes`), which defines the class of a generated circle and whether it is
realistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["MODALITIES", "ToyPairs", "draw", "make_pairs", "ShapeFit", "fit_shapes"]

MODALITIES = ("circle", "square")


@dataclass(frozen=True)
class ToyPairs:
    """A set of toy pairs.

    Attributes:
        x: ``{"square": (N, 1, S, S), "circle": (N, 1, S, S)}`` binary float images.
        label: ``(N,)`` int64, 1 = full, 0 = empty (the only shared information).
        radius: ``{"square": (N,), "circle": (N,)}`` the private sizes.
    """

    x: dict[str, Tensor]
    label: Tensor
    radius: dict[str, Tensor]

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def subset(self, index: Tensor | slice) -> ToyPairs:
        """Return the pairs at ``index``."""
        return ToyPairs(
            {m: v[index] for m, v in self.x.items()},
            self.label[index],
            {m: v[index] for m, v in self.radius.items()},
        )


def draw(
    modality: str, radius: Tensor, full: Tensor, size: int = 32, thickness: float = 0.25
) -> Tensor:
    """Rasterise diamonds (``"square"``) or discs (``"circle"``).

    Args:
        modality: ``"square"`` (L1 ball) or ``"circle"`` (L2 ball).
        radius: ``(N,)`` radii in grid units (the grid spans ``[-1, 1]``).
        full: ``(N,)`` bool, filled shape if true, outline of width ``thickness`` otherwise.
        size: image side ``S``.
        thickness: outline width (0.25: the band ``r +- 0.125``).

    Returns:
        ``(N, 1, S, S)`` float images in ``{0, 1}``.

    Raises:
        ValueError: for an unknown modality or mismatched shapes.
    """
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose one of {MODALITIES}")
    if radius.shape != full.shape or radius.dim() != 1:
        raise ValueError(f"radius and full must be (N,), got {radius.shape} and {full.shape}")
    grid = torch.linspace(-1, 1, size, dtype=radius.dtype, device=radius.device)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    dist = xx.abs() + yy.abs() if modality == "square" else (xx.square() + yy.square()).sqrt()
    r = radius[:, None, None]
    filled = dist <= r
    band = (dist - r).abs() <= thickness / 2
    image = torch.where(full[:, None, None], filled, band)
    return image.unsqueeze(1).to(radius.dtype)


def make_pairs(
    n: int,
    generator: torch.Generator,
    size: int = 32,
    r_min: float = 0.3,
    r_max: float = 0.9,
    thickness: float = 0.25,
    dtype: torch.dtype = torch.float32,
) -> ToyPairs:
    """Draw ``n`` i.i.d. pairs: a balanced class, then one radius per image.

    Args:
        n: number of pairs.
        generator: source of randomness (CPU).
        size: image side.
        r_min: smallest radius.
        r_max: largest radius.
        thickness: outline width of the empty class.
        dtype: floating dtype of images and radii (independent of torch's default).

    Returns:
        The pairs.

    Raises:
        ValueError: for ``n < 1`` or an empty radius range.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 < r_min < r_max:
        raise ValueError(f"need 0 < r_min < r_max, got {r_min}, {r_max}")
    label = torch.randint(0, 2, (n,), generator=generator)
    radius = {
        m: r_min + (r_max - r_min) * torch.rand(n, generator=generator, dtype=dtype)
        for m in ("square", "circle")
    }
    x = {m: draw(m, radius[m], label.bool(), size, thickness) for m in MODALITIES}
    return ToyPairs(x, label, radius)


@dataclass(frozen=True)
class ShapeFit:
    """The nearest clean shape of each image, and how much grey mass lies off it.

    Attributes:
        label: ``(N,)`` class of the best-matching clean shape (1 full, 0 empty).
        iou: ``(N,)`` IoU of the image cut at 0.5 with that shape (1 for a clean shape).
        radius: ``(N,)`` its radius.
        misplaced: ``(N,)`` grey mass beyond the shape's soft edge, as a fraction of the
            shape's area: pixels ``>= 0.25`` outside the shape dilated by the edge width, plus
            pixels ``< 0.75`` inside the shape eroded by it.
    """

    label: Tensor
    iou: Tensor
    radius: Tensor
    misplaced: Tensor

    def realistic(self, iou_threshold: float = 0.8) -> Tensor:
        """``(N,)`` bool: ``iou >= t`` and ``misplaced <= 1 - t``.

        With ``t = 0.8``: the image cut at 0.5 is closer to a clean shape than distinct
        neighbouring clean rasterisations are to each other (their IoU is >= 0.857), and at
        most 20 % of the shape's area is grey mass away from its edge (a ghost, a halo, a
        blend of a disc and a ring).

        Args:
            iou_threshold: ``t``.

        Returns:
            True where the image is a clean shape with at most a soft edge.
        """
        return (self.iou >= iou_threshold) & (self.misplaced <= 1 - iou_threshold)


def fit_shapes(
    images: Tensor,
    modality: str,
    r_min: float = 0.3,
    r_max: float = 0.9,
    thickness: float = 0.25,
    n_radii: int = 241,
    edge: int = 1,
    cuts: tuple[float, float, float] = (0.25, 0.5, 0.75),
) -> ShapeFit:
    """Match images against every clean shape of the data.

    The templates are the filled and outlined shapes of ``modality`` for ``n_radii`` radii
    evenly spaced over ``[r_min, r_max]`` (a step of 0.0025, far below the pixel pitch of
    0.065, so every rasterisation the data can produce is a template). An image cut at
    ``cuts[1]`` is assigned the template of highest IoU; its class is the template's. Grey mass
    is then checked against that template with a soft edge of ``edge`` pixels: pixels
    ``>= cuts[0]`` must lie inside the template dilated by ``edge``, and pixels of the template
    eroded by ``edge`` must be ``>= cuts[2]`` (a 3x3 box blur passes exactly).

    Args:
        images: ``(N, 1, S, S)`` images in ``[0, 1]`` (decoder means).
        modality: ``"square"`` or ``"circle"``.
        r_min: smallest template radius.
        r_max: largest template radius.
        thickness: outline width.
        n_radii: template radii per class.
        edge: soft-edge width in pixels.
        cuts: low, middle and high grey-level cuts.

    Returns:
        A :class:`ShapeFit`.

    Raises:
        ValueError: for cuts that are not increasing or a negative edge.
    """
    if len(cuts) != 3 or not cuts[0] < cuts[1] < cuts[2] or edge < 0:
        raise ValueError(f"need three increasing cuts and edge >= 0, got {cuts=} {edge=}")
    size = images.shape[-1]
    radii = torch.linspace(r_min, r_max, n_radii, dtype=torch.float64).repeat(2)
    full = torch.arange(2 * n_radii) < n_radii
    shapes = draw(modality, radii, full, size, thickness)  # (T, 1, S, S)
    pool = torch.nn.functional.max_pool2d
    width = 2 * edge + 1
    dilated = pool(shapes, width, 1, edge).flatten(1).bool()
    eroded = (1 - pool(1 - shapes, width, 1, edge)).flatten(1).bool()
    templates = shapes.flatten(1)
    pixels = images.detach().to(torch.float64).flatten(1)
    binary = (pixels >= cuts[1]).to(torch.float64)
    inter = binary @ templates.T  # (N, T)
    iou = inter / (binary.sum(1, keepdim=True) + templates.sum(1) - inter).clamp(min=1)
    best, index = iou.max(1)
    ghost = ((pixels >= cuts[0]) & ~dilated[index]).sum(1)
    hole = ((pixels < cuts[2]) & eroded[index]).sum(1)
    misplaced = (ghost + hole) / templates[index].sum(1)
    return ShapeFit(full[index].long(), best, radii[index], misplaced)
