"""Crisp digit images drawn offline from the fonts that ship with matplotlib.

The embedded stand-ins of MNIST-like data need digits that a small model learns in minutes and
that a classifier recognises almost always: scikit-learn's 1,797 8x8 digits are few and blurry
once upsampled. This module renders the ten digits in the TrueType faces of matplotlib's
``mpl-data/fonts/ttf`` folder (DejaVu Sans, Sans Mono and Serif, STIX, Computer Modern; upright,
bold, oblique and italic faces) at three stroke weights into a *glyph bank* of high-resolution
masks, and draws digit images from it with a random affine (rotation, anisotropic scale, shear,
translation) at the target size. Continuous augmentation makes images practically never repeat,
so a split of tens of thousands of distinct training images costs nothing to store.

Train and test draw from **disjoint faces** (:data:`TEST_FACES`): a test digit is always in a
typeface no training digit was drawn in, as MNIST's test writers are not its training writers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FACES",
    "TEST_FACES",
    "STROKES",
    "GlyphBank",
    "glyph_bank",
    "render",
]

#: The faces of matplotlib's font folder whose digits are drawn (file names).
FACES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmb10.ttf",
)
#: Faces reserved for the test split (one per family and style, never seen in training).
TEST_FACES = (
    "DejaVuSans-Oblique.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "STIXGeneralBol.ttf",
    "cmss10.ttf",
)
#: Stroke widths added around each glyph, in pixels of the :data:`RESOLUTION` canvas.
STROKES = (0, 1, 2)
RESOLUTION = 64  # side of the bank's masks
GLYPH_HEIGHT = 0.72  # glyph height / canvas side before augmentation (MNIST: 20 px of 28)


@dataclass(frozen=True)
class GlyphBank:
    """High-resolution digit masks.

    Attributes:
        masks: ``(K, 1, R, R)`` float32 in ``[0, 1]`` (antialiased), the glyph centred by its
            bounding box at height ``GLYPH_HEIGHT * R``.
        label: ``(K,)`` int64 digit.
        face: ``(K,)`` int64 index into :data:`FACES`.
        stroke: ``(K,)`` int64 index into :data:`STROKES`.
    """

    masks: Tensor
    label: Tensor
    face: Tensor
    stroke: Tensor

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def split(self, split: str) -> GlyphBank:
        """The glyphs of the ``"train"`` or ``"test"`` faces (:data:`TEST_FACES`)."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        test = torch.tensor([FACES[int(f)] in TEST_FACES for f in self.face])
        keep = test if split == "test" else ~test
        return GlyphBank(self.masks[keep], self.label[keep], self.face[keep], self.stroke[keep])


def _font_path(face: str) -> str:
    from pathlib import Path

    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / face
    if not path.is_file():
        raise FileNotFoundError(
            f"font {path} not found: the digit stand-in draws its digits from the fonts that "
            "ship with matplotlib; reinstall matplotlib (pip install --force-reinstall "
            "matplotlib)"
        )
    return str(path)


def _draw(face: str, digit: int, stroke: int) -> np.ndarray:
    """One glyph, centred by its bounding box and scaled to the bank's glyph height."""
    from PIL import Image, ImageDraw, ImageFont

    big = 4 * RESOLUTION
    font = ImageFont.truetype(_font_path(face), size=int(big * 0.6))
    canvas = Image.new("L", (2 * big, 2 * big), 0)
    ImageDraw.Draw(canvas).text(
        (big // 2, big // 2), str(digit), fill=255, font=font, stroke_width=4 * stroke,
        stroke_fill=255,
    )  # fmt: skip
    box = canvas.getbbox()
    if box is None:
        raise ValueError(f"font {face} has no glyph for the digit {digit}")
    glyph = canvas.crop(box)
    height = GLYPH_HEIGHT * RESOLUTION
    factor = height / glyph.height
    width = max(1, round(glyph.width * factor))
    glyph = glyph.resize((width, round(height)), Image.Resampling.LANCZOS)
    out = Image.new("L", (RESOLUTION, RESOLUTION), 0)
    out.paste(glyph, ((RESOLUTION - glyph.width) // 2, (RESOLUTION - glyph.height) // 2))
    return np.asarray(out, dtype=np.float32) / 255


@functools.lru_cache(maxsize=1)
def glyph_bank() -> GlyphBank:
    """Every digit of every face of :data:`FACES` at every width of :data:`STROKES`.

    Returns:
        The bank (``20 faces x 10 digits x 3 strokes = 600`` glyphs), cached per process.
    """
    masks, label, face, stroke = [], [], [], []
    for f, name in enumerate(FACES):
        for digit in range(10):
            for s, width in enumerate(STROKES):
                masks.append(_draw(name, digit, width))
                label.append(digit)
                face.append(f)
                stroke.append(s)
    return GlyphBank(
        torch.from_numpy(np.stack(masks))[:, None],
        torch.tensor(label),
        torch.tensor(face),
        torch.tensor(stroke),
    )


def render(
    masks: Tensor,
    size: int,
    generator: torch.Generator,
    rotation: float = 12.0,
    scale: tuple[float, float] = (0.85, 1.1),
    aspect: float = 0.15,
    shear: float = 0.25,
    shift: float = 2.5,
    zoom: float = 1.0,
) -> Tensor:
    """Draw ``(n, 1, R, R)`` glyph masks into ``(n, 1, size, size)`` boolean digit masks.

    Each image gets its own affine: rotation uniform in ``+-rotation`` degrees, scale uniform in
    ``scale`` (times ``zoom``), aspect ratio ``1 +- aspect``, horizontal shear ``+-shear`` and a
    shift of ``+-shift`` pixels (of a 28-pixel image; it scales with ``size``) per axis. The mask
    is resampled at twice the target size (bilinear), averaged down 2x2 and cut at half
    intensity, as PolyMNIST binarises MNIST at 128.

    Args:
        masks: glyphs of the bank (or any ``(n, 1, R, R)`` images in ``[0, 1]``).
        size: output side in pixels.
        generator: the only source of randomness (CPU).
        rotation: maximal rotation in degrees.
        scale: range of the isotropic scale factor.
        aspect: maximal relative change of the aspect ratio.
        shear: maximal horizontal shear.
        shift: maximal shift in pixels of a 28-pixel image.
        zoom: extra scale factor (translated PolyMNIST: 0.75).

    Returns:
        ``(n, 1, size, size)`` bool masks.
    """
    n = masks.shape[0]
    f32 = torch.float32

    def uniform(low: float, high: float, shape: tuple[int, ...] = (n,)) -> Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator, dtype=f32)

    angle = uniform(-1, 1) * math.radians(rotation)
    s = uniform(*scale) * zoom
    a = 1 + uniform(-aspect, aspect)
    sh = uniform(-shear, shear)
    t = uniform(-1, 1, (n, 2)) * shift / (IMAGE_SIDE / 2)  # normalised coordinates
    cos, sin = torch.cos(angle), torch.sin(angle)
    # forward map (glyph -> image): A = R(angle) @ Shear @ diag(s * a, s / a); grid_sample
    # needs the inverse, from output coordinates to glyph coordinates.
    forward = torch.stack(
        [
            torch.stack([cos * s * a, (cos * sh - sin) * s / a], -1),
            torch.stack([sin * s * a, (sin * sh + cos) * s / a], -1),
        ],
        -2,
    )  # (n, 2, 2)
    inverse = torch.linalg.inv(forward)
    offset = -(inverse @ t[:, :, None])[..., 0]
    side = 2 * size  # supersampled output, averaged down 2x2 below
    u = (torch.arange(side, dtype=f32) * 2 + 1) / side - 1  # pixel centres (align_corners=False)
    # the grid F.affine_grid would build, by broadcasting (affine_grid's batched matmul with
    # K = 3 is several times slower): glyph coordinates of every output pixel
    gx = (
        inverse[:, 0, 0, None, None] * u[None, None, :]
        + inverse[:, 0, 1, None, None] * u[None, :, None]
        + offset[:, 0, None, None]
    )
    gy = (
        inverse[:, 1, 0, None, None] * u[None, None, :]
        + inverse[:, 1, 1, None, None] * u[None, :, None]
        + offset[:, 1, None, None]
    )
    grid = torch.stack([gx, gy], -1)  # (n, side, side, 2)
    fine = F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.avg_pool2d(fine, 2) > 0.5


IMAGE_SIDE = 28  # the reference image side for ``shift``
