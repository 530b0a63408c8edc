"""The package's plotting style and shared panels (image tiles, frames); no figure lives here.

Each paper draws its figures in ``repro/papers/<key>/plot.py`` from these pieces;
:mod:`repro.record` saves them.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.patches import Rectangle

__all__ = ["set_style", "tile", "frame"]


def set_style() -> None:
    """Apply the package's seaborn style (called by every ``plot_*``)."""
    import seaborn as sns

    sns.set_theme(context="paper", style="white", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "image.interpolation": "nearest"})


def tile(images: torch.Tensor, ncols: int, pad: int = 2) -> np.ndarray:
    """Arrange ``(n, S, S)`` images on a grid with ``pad`` pixels of background between them.

    Args:
        images: ``(n, S, S)`` images in ``[0, 1]``.
        ncols: images per row.
        pad: padding in pixels.

    Returns:
        A ``(rows*(S+pad)+pad, ncols*(S+pad)+pad)`` array (background 1.0, i.e. white).
    """
    n, size = images.shape[0], images.shape[-1]
    rows = -(-n // ncols)
    step = size + pad
    canvas = np.ones((rows * step + pad, ncols * step + pad))
    for i, image in enumerate(images.detach().cpu().numpy()):
        r, c = divmod(i, ncols)
        canvas[pad + r * step : pad + r * step + size, pad + c * step : pad + c * step + size] = (
            1.0 - image  # black shapes on white
        )
    return canvas


def frame(ax: plt.Axes, index: int, ncols: int, size: int, pad: int = 2) -> None:
    """Draw a red frame around tile ``index`` of a :func:`tile` grid shown in ``ax``.

    Args:
        ax: the axes showing the tiled image.
        index: tile position (row-major).
        ncols: tiles per row, as passed to :func:`tile`.
        size: tile side in pixels.
        pad: padding, as passed to :func:`tile`.
    """
    r, c = divmod(index, ncols)
    step = size + pad
    ax.add_patch(
        Rectangle(
            (pad + c * step - 1.5, pad + r * step - 1.5), size + 2, size + 2,
            fill=False, edgecolor="red", linewidth=1.5,
        )
    )  # fmt: skip
