"""PolyMNIST (Sutter et al., ICLR 2021) and translated PolyMNIST (Daunhawer et al., ICLR 2022).

Five image modalities ``m0`` ... ``m4`` of 3x28x28 RGB. A tuple shares only the digit class:
each modality shows a *different* MNIST instance of that class on a random 28x28 crop of its
own background photograph, with the digit's pixels (MNIST > 128) inverted (``1 - background``).

**Published on-disk layout** (``thomassutter/MoPoE: mmnist/MMNISTDataset.py``, copied by
``epalu/mmvaeplus: src/datasets_PolyMNIST.py``, ``thomassutter/mmvmvae:
utils/PolyMNISTDataset.py`` and ``AgatheSenellart/MultiVae:
src/multivae/data/datasets/translated_mmnist.py``)::

    <root>/train/m0/<i>.<digit>.png ... <root>/train/m4/<i>.<digit>.png   # 60,000 per folder
    <root>/test/m0/<i>.<digit>.png  ... <root>/test/m4/<i>.<digit>.png    # 10,000 per folder

The unzipped archive puts the split folders under ``MMNIST/``; both are accepted here. For each
digit and modality the builder draws a permutation of that digit's MNIST images and writes the
``i``-th as ``m<m>/<i>.<digit>.png``, so files with the *same name* in different modality
folders form one tuple, and the label is the second-to-last dot field of the name. (The
reference loaders pair files by unsorted ``glob`` order; :func:`load_polymnist` pairs them by
name.) **Translated PolyMNIST** has the same layout; before masking, the digit is resized by
0.75 (bilinear, 28 -> 21 px) and pasted at a random offset in ``[0, 7)`` pixels per axis.

This module reads that layout (:func:`load_polymnist`), writes it from MNIST and a folder of
background images (:func:`build_polymnist`), and draws an offline stand-in from data that ships
inside scikit-learn and matplotlib (:func:`embedded_polymnist`). :func:`polymnist` picks the
real data when it is present under :func:`repro.paths.data_root` and the stand-in otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from repro.data.storage import RowView
from repro.io import atomic_torch_save
from repro.paths import cache_dir, data_root, repo_root

__all__ = [
    "MODALITIES",
    "BACKGROUNDS",
    "FIELD_BACKGROUNDS",
    "MultimodalImages",
    "load_polymnist",
    "build_polymnist",
    "embedded_polymnist",
    "polymnist",
]

MODALITIES = ("m0", "m1", "m2", "m3", "m4")
SPLITS = ("train", "test")
IMAGE_SIZE = 28
TRANSLATE_SCALE = 0.75  # Daunhawer et al. 2022; MultiVae translated_mmnist.py (scale=0.75)
STANDIN_SIZE = {"train": 5000, "test": 1000}  # default n of the stand-in
TEST_EVERY = 5  # sklearn digit i is a test instance iff i % 5 == 0 (a fixed 80/20 split)

#: Photos that ship inside installed dependencies (the MNIST-SVHN-Text stand-in's SVHN crops;
#: the PolyMNIST stand-in uses :data:`FIELD_BACKGROUNDS`).
BACKGROUNDS = (
    "sklearn china.jpg (half size)",
    "sklearn flower.jpg (half size)",
    "matplotlib grace_hopper.jpg (half size)",
    "matplotlib jacksboro_fault_dem.npz (hill-shaded, gist_earth)",
    "matplotlib topobathy.npz (hill-shaded, plasma, double size)",
)

_NAME = re.compile(r"^(\d+)\.(\d)\.png$")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_ARCHIVE = (
    "Get the published archive (Sutter et al. 2021, PolyMNIST.zip, Zenodo record 4899160) and "
    "unzip it there, or build the layout from MNIST with "
    "repro.data.polymnist.build_polymnist(mnist_root, backgrounds, root{translated})."
)


def _take(value: Tensor | RowView, index: Tensor | slice | list[int]) -> Tensor | RowView:
    """Rows ``index`` of a tensor, or of a view without converting them (a new row index)."""
    if isinstance(value, RowView):
        rows = value.rows if value.rows is not None else torch.arange(len(value.storage))
        if isinstance(index, list):
            index = torch.tensor(index, dtype=torch.int64)
        return RowView(
            value.storage, rows[index.to(rows.device) if isinstance(index, Tensor) else index]
        )
    return value[index]


@dataclass(frozen=True)
class MultimodalImages:
    """Tuples of images that share a digit class.

    Images are stored as uint8 (the published PNGs' own precision) and handed out as
    :class:`repro.data.storage.RowView`: indexing a view gives float32 in ``[0, 1]`` for just
    those rows, so a training batch is converted when it is drawn and the split never exists
    as float32 (the full training split: 0.7 GB instead of 2.8 GB).

    Attributes:
        x: ``{m: (N, 3, S, S)}`` images, one entry per modality: views over uint8 storage
            (``x[m][index]`` is a float32 tensor in ``[0, 1]``), or float32 tensors.
        label: ``(N,)`` int64 digit class, shared by the modalities.
        source: human-readable origin, e.g. ``"PolyMNIST (data/PolyMNIST/test)"`` or
            ``"embedded stand-in: ..."``.
        instance: ``{m: (N,)}`` int64 index of the digit instance behind each image (the
            scikit-learn ``load_digits`` index for the stand-in), or ``None`` when unknown
            (files on disk).
    """

    x: dict[str, Tensor]
    label: Tensor
    source: str
    instance: dict[str, Tensor] | None = None

    def __post_init__(self) -> None:
        n = self.label.shape[0]
        bad = {m: tuple(v.shape) for m, v in self.x.items() if v.shape[0] != n}
        if self.instance is not None:
            bad |= {
                f"instance[{m}]": tuple(v.shape)
                for m, v in self.instance.items()
                if v.shape[0] != n
            }
        if self.label.dim() != 1 or bad:
            raise ValueError(f"every entry needs N = {n} rows like label; got {bad}")

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def subset(self, index: Tensor | slice | list[int]) -> MultimodalImages:
        """Return the tuples at ``index`` (views stay views: nothing is converted).

        Args:
            index: a slice, an int64 index tensor/list or a boolean mask of length ``N``.

        Returns:
            A new :class:`MultimodalImages` with the same ``source``.
        """
        if isinstance(index, Tensor) and index.dtype == torch.bool:
            index = index.nonzero()[:, 0]
        instance = None
        if self.instance is not None:
            instance = {m: v[index] for m, v in self.instance.items()}
        return MultimodalImages(
            {m: _take(v, index) for m, v in self.x.items()}, self.label[index], self.source,
            instance,
        )  # fmt: skip

    def to(self, device: torch.device | str) -> MultimodalImages:
        """The same tuples with their (compact) storage on ``device``."""
        return MultimodalImages(
            {m: v.to(device) for m, v in self.x.items()}, self.label, self.source, self.instance
        )


# ---------------------------------------------------------------------------------------------
# The published layout: reading


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _split_dir(root: Path, split: str) -> Path | None:
    """The folder holding ``m0..m4`` for ``split``: ``root/split`` or ``root/MMNIST/split``."""
    for candidate in (root / split, root / "MMNIST" / split):
        if any((candidate / m).is_dir() for m in MODALITIES):
            return candidate
    return None


def _display(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it, else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(repo_root()))
    except (ValueError, FileNotFoundError):
        return str(path)


def _index_files(folder: Path) -> tuple[list[tuple[int, int]], dict[tuple[int, int], Path]]:
    """Sorted ``(digit, i)`` keys of ``folder``'s ``<i>.<digit>.png`` files, and their paths."""
    files: dict[tuple[int, int], Path] = {}
    odd = []
    for path in folder.glob("*.png"):
        match = _NAME.match(path.name)
        if match is None:
            odd.append(path.name)
            continue
        files[(int(match.group(2)), int(match.group(1)))] = path
    if odd:
        raise ValueError(
            f"{_display(folder)} holds PNG files not named <index>.<digit>.png, "
            f"e.g. {sorted(odd)[:3]}; the label is read from the name"
        )
    return sorted(files), files


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        size = path.stat().st_size if path.exists() else 0
        raise ValueError(
            f"loading PolyMNIST: {_display(path)} cannot be decoded as a PNG ({err}; the file "
            f"has {size:,} bytes): it is truncated or corrupt. Fix: re-extract it from the "
            "archive (or rebuild the split with build_polymnist); nothing was cached from this "
            "folder"
        ) from err
    if array.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(
            f"{_display(path)} is {array.shape[1]}x{array.shape[0]}, expected "
            f"{IMAGE_SIZE}x{IMAGE_SIZE} RGB"
        )
    return array


def load_polymnist(
    root: str | Path,
    split: str = "train",
    translated: bool = False,
    select: Tensor | None = None,
) -> MultimodalImages:
    """Read PolyMNIST in its published layout, ``<root>/<split>/m<k>/<i>.<digit>.png``.

    Files with the same name in the five modality folders form one tuple; the digit is read
    from the name. ``<root>/MMNIST/<split>`` (the unzipped archive) is accepted as well.
    Tuples come sorted by digit, then by index.

    Args:
        root: folder holding ``train/`` and ``test/`` (or ``MMNIST/train`` ...).
        split: ``"train"`` or ``"test"``.
        translated: the files are translated PolyMNIST (only changes ``source`` and the hint
            in error messages; the layout is the same).
        select: positions (in that order) of the tuples to decode, or ``None`` for all: a
            figure asking for ``n`` tuples reads only those files.

    Returns:
        ``N`` tuples; ``x[m]`` is a ``(N, 3, 28, 28)`` view over uint8 storage.

    Raises:
        ValueError: for an unknown split, files not named ``<index>.<digit>.png``, images
            that are not 28x28, modality folders with different counts or with names (hence
            labels) that disagree, digits missing from the split (a partial copy), or a PNG
            that cannot be decoded (truncated).
        FileNotFoundError: when the split folder, a modality folder or its images are missing;
            the message names the expected path and how to get or build the data.
    """
    _check_split(split)
    root = Path(root)
    name = "Translated PolyMNIST" if translated else "PolyMNIST"
    hint = _ARCHIVE.format(translated=", translated=True" if translated else "")
    folder = _split_dir(root, split)
    if folder is None:
        raise FileNotFoundError(
            f"{name} {split} split not found: expected {_display(root / split)}/m0 ... m4 "
            f"holding <index>.<digit>.png files (or {_display(root / 'MMNIST' / split)}/m0 "
            f"...). {hint}"
        )
    missing = [m for m in MODALITIES if not (folder / m).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{name} at {_display(folder)} lacks the modality folder(s) {missing}; all of "
            f"{list(MODALITIES)} are needed. {hint}"
        )
    keys, paths = {}, {}
    for m in MODALITIES:
        keys[m], paths[m] = _index_files(folder / m)
    empty = [m for m in MODALITIES if not keys[m]]
    if empty:
        raise FileNotFoundError(
            f"{name} at {_display(folder)}: modality folder(s) {empty} hold no "
            f"<index>.<digit>.png images. {hint}"
        )
    counts = {m: len(keys[m]) for m in MODALITIES}
    if len(set(counts.values())) > 1:
        raise ValueError(
            f"{name} at {_display(folder)}: the modality folders hold different numbers of "
            f"images {counts}; a partial copy or extraction? Re-extract or rebuild the split."
        )
    for m in MODALITIES[1:]:
        if keys[m] != keys["m0"]:
            j = next(j for j, (a, b) in enumerate(zip(keys["m0"], keys[m], strict=True)) if a != b)
            (d0, i0), (d1, i1) = keys["m0"][j], keys[m][j]
            raise ValueError(
                f"{name} at {_display(folder)}: file names (and so labels) disagree across "
                f"modalities: m0 has {i0}.{d0}.png where {m} has {i1}.{d1}.png (tuple {j} in "
                "name order); tuples are paired by name, so every folder needs the same names."
            )
    digits = sorted({digit for digit, _ in keys["m0"]})
    if digits != list(range(10)):
        missing_digits = sorted(set(range(10)) - set(digits))
        raise ValueError(
            f"{name} at {_display(folder)} holds no image of the digit(s) {missing_digits} "
            f"(files of digits {digits} only): a partial copy or extraction, or a build with "
            f"too small a limit. Fix: re-extract or rebuild the whole split. {hint}"
        )
    chosen = keys["m0"] if select is None else [keys["m0"][int(i)] for i in select]
    x = {}
    for m in MODALITIES:
        stack = np.stack([_read_png(paths[m][key]) for key in chosen])  # (N, 28, 28, 3)
        x[m] = RowView(torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous())
    label = torch.tensor([digit for digit, _ in chosen], dtype=torch.int64)
    return MultimodalImages(x, label, f"{name} ({_display(folder)})")


# ---------------------------------------------------------------------------------------------
# The published layout: building from MNIST


def _load_backgrounds(folder: Path) -> list[Tensor]:
    from PIL import Image

    if not folder.is_dir():
        raise FileNotFoundError(
            f"background folder {folder} not found; it needs >= {len(MODALITIES)} images "
            f"({', '.join(_IMAGE_SUFFIXES)}), the first {len(MODALITIES)} in name order are used"
        )
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if len(files) < len(MODALITIES):
        raise ValueError(
            f"background folder {folder} holds {len(files)} images ({[p.name for p in files]}); "
            f"need >= {len(MODALITIES)}, one per modality"
        )
    backgrounds = []
    for path in files[: len(MODALITIES)]:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
        if min(array.shape[:2]) < IMAGE_SIZE:
            raise ValueError(f"background {path} is smaller than {IMAGE_SIZE}x{IMAGE_SIZE}")
        backgrounds.append(torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255))
    return backgrounds


def _random_crops(background: Tensor, n: int, size: int, generator: torch.Generator) -> Tensor:
    """``(n, 3, size, size)`` crops of a ``(3, H, W)`` image at uniform random offsets."""
    _, height, width = background.shape
    top = torch.randint(0, height - size + 1, (n,), generator=generator)
    left = torch.randint(0, width - size + 1, (n,), generator=generator)
    ar = torch.arange(size)
    rows = (top[:, None] + ar)[:, :, None]  # (n, S, 1)
    cols = (left[:, None] + ar)[:, None, :]  # (n, 1, S)
    return background[:, rows, cols].permute(1, 0, 2, 3)  # (3, n, S, S) -> (n, 3, S, S)


def _translate_mnist(digits: Tensor, generator: torch.Generator) -> Tensor:
    """Resize ``(n, 28, 28)`` uint8 digits by 0.75 and paste them at a random offset.

    Mirrors MultiVae's ``TranslatedMMNIST._add_background_image``: bilinear
    ``interpolate(scale_factor=0.75)`` (28 -> 21 px), truncated back to integers, pasted into
    a black 28x28 canvas at a uniform offset in ``[0, int(28 * 0.25))`` per axis.
    """
    n = digits.shape[0]
    small = F.interpolate(digits[:, None].float(), scale_factor=TRANSLATE_SCALE, mode="bilinear")
    small = small[:, 0].trunc()  # (n, 21, 21); the reference stores it back into uint8
    side = small.shape[-1]
    span = int(IMAGE_SIZE * (1 - TRANSLATE_SCALE))
    top = torch.randint(0, span, (n,), generator=generator)
    left = torch.randint(0, span, (n,), generator=generator)
    ar = torch.arange(side)
    canvas = torch.zeros(n, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.float32)
    canvas[
        torch.arange(n)[:, None, None],
        (top[:, None] + ar)[:, :, None],
        (left[:, None] + ar)[:, None, :],
    ] = small
    return canvas


def _save_png(image: Tensor, path: Path) -> None:
    from PIL import Image

    array = image.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)  # as torchvision save_image
    Image.fromarray(array.permute(1, 2, 0).numpy()).save(path)


def build_polymnist(
    mnist_root: str | Path,
    backgrounds: str | Path,
    out_root: str | Path,
    translated: bool = False,
    download: bool = False,
    generator: torch.Generator | None = None,
    limit: int | None = None,
) -> Path:
    """Write PolyMNIST (or translated PolyMNIST) in the published layout from MNIST.

    Follows the reference builder (``MMNISTDataset._create_mmnist_dataset``): for each split,
    digit and modality ``m``, a random permutation of that digit's MNIST images is written as
    ``out_root/<split>/m<m>/<i>.<digit>.png``; each image is a uniform random 28x28 crop of
    background ``m`` with the digit's pixels (MNIST > 128) inverted. With ``translated`` the
    digit is first resized by 0.75 and pasted at a random offset (see the module docstring).
    The randomness comes from ``generator``, so the files equal the published ones in
    distribution, not bit for bit.

    Args:
        mnist_root: root of a ``torchvision.datasets.MNIST`` copy, i.e. holding
            ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``.
        backgrounds: folder of >= 5 PIL-readable images (``.jpg``, ``.jpeg``, ``.png``);
            the first five in name order are the backgrounds of ``m0`` ... ``m4``.
        out_root: destination; ``train/`` and ``test/`` are created below it.
        translated: build translated PolyMNIST (Daunhawer et al. 2022).
        download: let torchvision download MNIST into ``mnist_root`` if it is missing.
        generator: source of randomness (CPU); ``None`` uses a generator seeded with 0.
        limit: use only the first ``limit`` MNIST images of each split (quick builds).

    Returns:
        ``out_root``.

    Raises:
        ValueError: for ``limit < 1``, fewer than five backgrounds, or a background smaller
            than 28x28.
        FileNotFoundError: when MNIST or the background folder is missing.
        ValueError: for a truncated or malformed MNIST file (the message names it).
        FileExistsError: when a modality folder under ``out_root`` already holds PNG files.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    mnist_root, out_root = Path(mnist_root), Path(out_root)
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    images = _load_backgrounds(Path(backgrounds))
    for split in SPLITS:
        for m in MODALITIES:
            if any((out_root / split / m).glob("*.png")):
                raise FileExistsError(
                    f"{out_root / split / m} already holds PNG files; build into an empty folder"
                )
    from repro.data.mnist_svhn_text import read_mnist  # lazy: that module imports this one

    for split in SPLITS:
        if download:
            from repro.compat import import_torchvision

            import_torchvision()  # torchvision on a CPU-only torch needs the shim
            from torchvision.datasets import MNIST

            MNIST(str(mnist_root), train=split == "train", download=True)
        data, targets = read_mnist(mnist_root, split, context=f"build_polymnist {split}")
        data, targets = data[:limit], targets[:limit]
        for m in MODALITIES:
            (out_root / split / m).mkdir(parents=True, exist_ok=True)
        for digit in range(10):
            index = (targets == digit).nonzero()[:, 0]
            for m, background in zip(MODALITIES, images, strict=True):
                chosen = index[torch.randperm(len(index), generator=generator)]
                digits = data[chosen]
                if translated:
                    digits = _translate_mnist(digits, generator)
                mask = (digits > 128)[:, None]  # (n, 1, 28, 28)
                crops = _random_crops(background, len(chosen), IMAGE_SIZE, generator)
                composite = torch.where(mask, 1 - crops, crops)
                for i, image in enumerate(composite):
                    _save_png(image, out_root / split / m / f"{i}.{digit}.png")
    return out_root


# ---------------------------------------------------------------------------------------------
# The embedded stand-in


@functools.lru_cache(maxsize=1)
def _digit_pool() -> tuple[Tensor, Tensor, Tensor]:
    """scikit-learn's 1797 8x8 digits: ``(K, 1, 8, 8)`` in ``[0, 1]``, labels, indices."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images).to(torch.float32).div(16).unsqueeze(1)
    return images, torch.from_numpy(digits.target).long(), torch.arange(len(digits.target))


def _hillshade(elevation: np.ndarray, cmap: str) -> np.ndarray:
    import matplotlib
    from matplotlib.colors import LightSource

    shaded = LightSource(azdeg=315, altdeg=45).shade(
        elevation.astype(np.float64),
        cmap=matplotlib.colormaps[cmap],
        blend_mode="overlay",
        vert_exag=0.05,
    )
    return (shaded[..., :3] * 255).round().astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _standin_backgrounds() -> tuple[Tensor, ...]:
    """The five stand-in backgrounds of :data:`BACKGROUNDS`, ``(3, H, W)`` float32 in [0, 1].

    Photos are halved so that a 28x28 crop holds texture rather than a flat patch of sky.
    """
    from matplotlib import cbook
    from PIL import Image
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
        hopper = np.asarray(image.convert("RGB"))
    dem = cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"]
    topo = cbook.get_sample_data("topobathy.npz")["topo"]
    arrays = [
        china,
        flower,
        hopper,
        _hillshade(dem, "gist_earth"),
        _hillshade(topo, "plasma"),
    ]
    factors = (0.5, 0.5, 0.5, 1.0, 2.0)
    out = []
    for array, factor in zip(arrays, factors, strict=True):
        image = Image.fromarray(np.ascontiguousarray(array))
        if factor != 1.0:
            size = (round(image.width * factor), round(image.height * factor))
            image = image.resize(size, Image.Resampling.BILINEAR)
        tensor = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
        out.append(tensor.to(torch.float32).div(255))
    return tuple(out)


#: Colour maps of the stand-in's backgrounds, one per modality ``m0`` ... ``m4``.
FIELD_COLORMAPS = ("viridis", "plasma", "cool", "winter", "spring")
FIELD_SIZE = 256  # side of each background image, pixels
FIELD_SCALES = ((24, 1.0), (8, 0.35))  # (period in pixels, amplitude) of its smooth noise
FIELD_SEED = 2021  # background m<k> is drawn from seed FIELD_SEED + k (fixed, not the run's)
SKLEARN_SHARE = 0.25  # share of scikit-learn's handwritten digits among the stand-in's digits
SKLEARN_OFFSET = 1000  # instance ids: glyph g -> g, scikit-learn digit i -> SKLEARN_OFFSET + i
SHIFT = 2.0  # digit shift, +- pixels per axis (translated: +- 3.5, the published 7-px range)
#: The PolyMNIST stand-in's backgrounds, as its ``source`` describes them.
FIELD_BACKGROUNDS = tuple(f"smooth noise field coloured by {c}" for c in FIELD_COLORMAPS)


@functools.lru_cache(maxsize=1)
def _field_backgrounds() -> tuple[Tensor, ...]:
    """The five stand-in backgrounds, ``(3, FIELD_SIZE, FIELD_SIZE)`` float32 in ``[0, 1]``.

    Each is a smooth random field (bicubic noise at the periods of :data:`FIELD_SCALES`,
    normalised to ``[0, 1]``) coloured by its modality's colour map. The maps are saturated, so
    a digit drawn in the inverted colours (``1 - background``) is visible on every pixel; a
    greyish photo region would hide it (the inverse of mid-grey is mid-grey).
    """
    import matplotlib

    out = []
    for k, cmap in enumerate(FIELD_COLORMAPS):
        g = torch.Generator().manual_seed(FIELD_SEED + k)
        field = torch.zeros(FIELD_SIZE, FIELD_SIZE)
        for period, amplitude in FIELD_SCALES:
            side = FIELD_SIZE // period + 3
            noise = torch.randn(1, 1, side, side, generator=g)
            big = F.interpolate(
                noise, size=(side * period,) * 2, mode="bicubic", align_corners=False
            )
            field += amplitude * big[0, 0, :FIELD_SIZE, :FIELD_SIZE]
        field = (field - field.min()) / (field.max() - field.min())
        rgb = matplotlib.colormaps[cmap](field.double().numpy())[..., :3]
        out.append(torch.from_numpy(rgb).permute(2, 0, 1).to(torch.float32).contiguous())
    return tuple(out)


def _digit_masks(digits: Tensor, size: int, translated: bool, generator: torch.Generator) -> Tensor:
    """Render ``(n, 1, 8, 8)`` digits into ``(n, 1, size, size)`` boolean masks.

    One bicubic ``grid_sample`` upsamples (8 px -> 20 px at size 28, as MNIST's digit box) and
    applies a random affine (rotation +-10 deg, scale 0.9-1.1, shift +-2 px); the result is cut
    at half intensity, as PolyMNIST binarises MNIST at 128. ``translated`` scales by 0.75 and
    replaces the shift by a uniform translation of +-3.5 px (the 7-px offset range of
    translated PolyMNIST).
    """
    n = digits.shape[0]
    f32 = torch.float32
    angle = (torch.rand(n, generator=generator, dtype=f32) * 2 - 1) * math.radians(10)
    scale = 0.9 + 0.2 * torch.rand(n, generator=generator, dtype=f32)
    if translated:
        scale = scale * TRANSLATE_SCALE
        half = int(size * (1 - TRANSLATE_SCALE)) / 2
    else:
        half = 2.0 * size / IMAGE_SIZE
    shift = (torch.rand(n, 2, generator=generator, dtype=f32) * 2 - 1) * half  # (n, 2) px
    pixel = 20 / 8 * size / IMAGE_SIZE * scale  # output px per source px
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)  # R(-a)
    # normalised output coords u (u * size / 2 px) -> normalised 8x8 source coords (v * 4 px)
    linear = rot * (size / 8 / pixel)[:, None, None]
    offset = -(rot @ shift[:, :, None])[..., 0] / (4 * pixel)[:, None]
    theta = torch.cat([linear, offset[:, :, None]], -1)  # (n, 2, 3)
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    return F.grid_sample(digits, grid, mode="bicubic", align_corners=False) > 0.5


@functools.lru_cache(maxsize=2)
def _standin_pool(split: str) -> dict[str, Tensor]:
    """The digits a split draws from: font glyphs and scikit-learn digits, with labels and ids.

    Returns:
        ``glyphs`` ``(G, 1, R, R)``, ``glyph_label``, ``glyph_id`` (index in the whole bank),
        ``digits`` ``(S, 1, 8, 8)``, ``digit_label``, ``digit_id`` (``SKLEARN_OFFSET`` + the
        ``load_digits`` index).
    """
    from repro.data.glyphs import glyph_bank

    bank = glyph_bank()
    part = bank.split(split)
    ids = torch.arange(len(bank))[torch.isin(torch.arange(len(bank)), _bank_rows(bank, split))]
    images, labels, indices = _digit_pool()
    keep = (indices % TEST_EVERY == 0) == (split == "test")
    return {
        "glyphs": part.masks,
        "glyph_label": part.label,
        "glyph_id": ids,
        "digits": images[keep],
        "digit_label": labels[keep],
        "digit_id": indices[keep] + SKLEARN_OFFSET,
    }


def _bank_rows(bank, split: str) -> Tensor:
    from repro.data.glyphs import FACES, TEST_FACES

    test = torch.tensor([FACES[int(f)] in TEST_FACES for f in bank.face])
    return torch.nonzero(test if split == "test" else ~test)[:, 0]


def _pick_digits(label: Tensor, pool: dict[str, Tensor], generator: torch.Generator) -> Tensor:
    """``(n, M)`` distinct candidates of each tuple's class: glyphs ``< G``, then digits.

    Weighted sampling without replacement (Gumbel top-k) within the class, so that about
    :data:`SKLEARN_SHARE` of the picks are scikit-learn digits whatever the pool sizes.
    """
    g_label, d_label = pool["glyph_label"], pool["digit_label"]
    n_glyphs = len(g_label)
    cand_label = torch.cat([g_label, d_label])
    is_digit = torch.arange(len(cand_label)) >= n_glyphs
    table, weights = [], []
    for digit in range(10):
        members = torch.nonzero(cand_label == digit)[:, 0]
        share = torch.where(is_digit[members], SKLEARN_SHARE, 1 - SKLEARN_SHARE)
        count = torch.stack([(~is_digit[members]).sum(), is_digit[members].sum()]).clamp_min(1)
        table.append(members)
        weights.append(share / count[is_digit[members].long()])
    width = max(len(t) for t in table)
    ids = torch.full((10, width), -1, dtype=torch.int64)
    logw = torch.full((10, width), -math.inf)
    for digit in range(10):
        ids[digit, : len(table[digit])] = table[digit]
        logw[digit, : len(table[digit])] = weights[digit].log()
    u = torch.rand(len(label), width, generator=generator).clamp_min(1e-12)
    keys = logw[label] - torch.log(-torch.log(u))  # Gumbel top-k
    top = keys.topk(len(MODALITIES), dim=1).indices  # (n, M)
    return ids[label[:, None], top]


def embedded_polymnist(
    n: int,
    split: str,
    generator: torch.Generator,
    size: int = IMAGE_SIZE,
    translated: bool = False,
) -> MultimodalImages:
    """Draw a PolyMNIST look-alike offline: font and handwritten digits on smooth colour fields.

    Each tuple draws a class uniformly, then five *distinct* digits of that class, one per
    modality: a digit is a font glyph of :mod:`repro.data.glyphs` (about
    ``1 - SKLEARN_SHARE`` of them) or one of scikit-learn's 8x8 handwritten digits, drawn with a
    random affine (rotation, scale, aspect, shear, shift of +- :data:`SHIFT` pixels) and cut at
    half intensity. Modality ``m`` inverts those pixels of a uniform random crop of its own
    background (:func:`_field_backgrounds`), as PolyMNIST does with its photos: the five
    modalities share only the digit class, and each is dominated in pixels by its background.
    Train and test draw disjoint digits: the font faces of
    :data:`repro.data.glyphs.TEST_FACES`, and scikit-learn digit ``i`` iff ``i % 5 == 0``.
    The continuous augmentation makes tuples practically never repeat.

    Args:
        n: number of tuples.
        split: ``"train"`` or ``"test"``.
        generator: the only source of randomness (CPU).
        size: image side (28 like PolyMNIST; the digit box scales with it).
        translated: digits scaled by 0.75 and shifted by up to +- 3.5 px (translated PolyMNIST).

    Returns:
        ``n`` tuples (uint8 storage, views in ``x``) with ``instance`` set to the digit ids
        (glyph ``g``: ``g``; scikit-learn digit ``i``: ``SKLEARN_OFFSET + i``).

    Raises:
        ValueError: for ``n < 1``, an unknown split or ``size`` outside ``[16, 64]``.
    """
    from repro.data.glyphs import render

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _check_split(split)
    if not 16 <= size <= 64:
        raise ValueError(f"size must lie in [16, 64], got {size}")
    pool = _standin_pool(split)
    n_glyphs = len(pool["glyph_label"])
    label = torch.randint(0, 10, (n,), generator=generator)
    picks = _pick_digits(label, pool, generator)  # (n, M)
    zoom, shift = (TRANSLATE_SCALE, 3.5) if translated else (1.0, SHIFT)
    x, instance = {}, {}
    for k, (m, background) in enumerate(zip(MODALITIES, _field_backgrounds(), strict=True)):
        ids = picks[:, k]
        glyph = ids < n_glyphs
        mask = torch.zeros(n, 1, size, size, dtype=torch.bool)
        if glyph.any():
            mask[glyph] = render(
                pool["glyphs"][ids[glyph]], size, generator, zoom=zoom, shift=shift
            )
        if (~glyph).any():
            mask[~glyph] = _digit_masks(
                pool["digits"][ids[~glyph] - n_glyphs], size, translated, generator
            )
        crops = _random_crops(background, n, size, generator)
        image = torch.where(mask, 1 - crops, crops)
        x[m] = RowView(image.mul_(255).round_().to(torch.uint8))
        all_ids = torch.cat([pool["glyph_id"], pool["digit_id"]])
        instance[m] = all_ids[ids]
    kind = "translated PolyMNIST" if translated else "PolyMNIST"
    source = (
        f"embedded stand-in: {kind} look-alike, digits from matplotlib's font glyphs and "
        f"scikit-learn load_digits ({split} split: font faces "
        f"{'in' if split == 'test' else 'outside'} repro.data.glyphs.TEST_FACES, load_digits "
        f"index % {TEST_EVERY} {'==' if split == 'test' else '!='} 0) on crops of "
        f"{'; '.join(FIELD_BACKGROUNDS)}"
    )
    return MultimodalImages(x, label, source, instance)


# ---------------------------------------------------------------------------------------------
# Real data if present, else the stand-in; caches


def _code_stamp() -> str:
    """The source of the stand-in's generator (this module and the glyphs): a cache key part."""
    from repro.data import glyphs

    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(Path(glyphs.__file__).read_bytes())
    return digest.hexdigest()[:16]


def _load_cache(path: Path, what: str) -> dict | None:
    """A cache file's contents, or ``None`` (with a warning) when it is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != _CACHE_FORMAT:
            raise ValueError("not a cache file of this version")
        return blob
    except Exception as err:  # a truncated or foreign file is a miss: rebuilt and rewritten
        warnings.warn(
            f"{what}: the cache file {_display(path)} is unreadable ({type(err).__name__}: "
            f"{err}); it is ignored and rebuilt",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def _save_cache(blob: dict, path: Path, what: str) -> None:
    try:
        atomic_torch_save({"format": _CACHE_FORMAT, **blob}, path, what=what)
    except OSError:  # an unwritable or full cache costs time later, not this run's data
        pass


_CACHE_FORMAT = 2  # bump when the layout of the cached files changes


def _cached_standin(
    n: int, split: str, generator: torch.Generator, translated: bool
) -> MultimodalImages:
    """:func:`embedded_polymnist` through a uint8 cache keyed by its inputs and its code.

    The key covers ``n``, the split, ``translated``, the generator's state and the source of
    the generator; the generator is left in the state the draw would leave it in.
    """
    stamp = f"{n}|{split}|{translated}|{_code_stamp()}|".encode()
    key = hashlib.sha256(stamp + generator.get_state().numpy().tobytes()).hexdigest()[:20]
    try:
        path = cache_dir() / "polymnist" / f"standin-{split}-{key}.pt"
    except FileNotFoundError:  # no repository and no REPRO_CACHE: draw uncached
        return embedded_polymnist(n, split, generator, translated=translated)
    blob = _load_cache(path, "PolyMNIST stand-in")
    if blob is not None:
        generator.set_state(blob["generator"])
        x = {m: RowView(v) for m, v in blob["x"].items()}
        return MultimodalImages(x, blob["label"], blob["source"], blob["instance"])
    data = embedded_polymnist(n, split, generator, translated=translated)
    blob = {
        "x": {m: v.storage for m, v in data.x.items()},
        "label": data.label,
        "source": data.source,
        "instance": data.instance,
        "generator": generator.get_state(),
    }
    _save_cache(blob, path, "PolyMNIST stand-in (cache)")
    return data


def _file_stamp(folder: Path) -> str:
    """Hash of every image's name, size and modification time in ``m0`` ... ``m4``.

    A file replaced in place (new content, so a new size or time) changes it, as do added,
    removed and renamed files; reading it costs one ``stat`` per file.
    """
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for m in MODALITIES:
        sub = folder / m
        if not sub.is_dir():
            continue
        for entry in sorted(os.scandir(sub), key=lambda e: e.name):
            if entry.name.endswith(".png"):
                st = entry.stat()
                digest.update(f"{m}/{entry.name}:{st.st_size}:{st.st_mtime_ns}|".encode())
    return digest.hexdigest()[:20]


def _cached_load(
    folder_root: Path, split: str, translated: bool, n: int | None, generator: torch.Generator
) -> MultimodalImages:
    """:func:`load_polymnist` through a uint8 cache, reading only ``n`` tuples when it can.

    The whole split is cached under ``cache_dir()/polymnist/<split>-<key>.pt``, the key
    covering every file's name, size and modification time (:func:`_file_stamp`): a replaced,
    added or removed file invalidates it, and a corrupt cache file is a miss. Without a cache, a
    request for ``n`` tuples (at most half the split) decodes only those files. The chosen
    tuples are the same either way.
    """
    folder = _split_dir(folder_root, split)
    key = hashlib.sha256(f"{_file_stamp(folder)}|{translated}".encode()).hexdigest()[:20]
    try:
        path = cache_dir() / "polymnist" / f"{split}-{key}.pt"
    except FileNotFoundError:  # no repository root and no REPRO_CACHE: read uncached
        path = None
    blob = _load_cache(path, f"PolyMNIST {split}") if path is not None else None
    if blob is not None:
        data = MultimodalImages(
            {m: RowView(v) for m, v in blob["x"].items()}, blob["label"], blob["source"]
        )
        return _choose(data, n, generator)
    if n is not None and path is not None:
        count = len(_index_files(folder / MODALITIES[0])[0])
        if count and n <= count // 2:  # decode just the tuples asked for
            select = torch.randperm(count, generator=generator)[:n]
            return load_polymnist(folder_root, split, translated, select=select)
    data = load_polymnist(folder_root, split, translated)
    if path is not None:
        blob = {"x": {m: v.storage for m, v in data.x.items()}, "label": data.label}
        _save_cache({**blob, "source": data.source}, path, f"PolyMNIST {split} (cache)")
    return _choose(data, n, generator)


def _choose(data: MultimodalImages, n: int | None, generator: torch.Generator) -> MultimodalImages:
    if n is None or n >= len(data):
        if n is not None and n > len(data):
            warnings.warn(
                f"{data.source} holds {len(data):,} tuples, fewer than the {n:,} asked for: "
                "all of them are used (the run's sidecar and summary give the counts). Fix: "
                "build or extract the whole split, or ask for fewer tuples",
                UserWarning,
                stacklevel=4,
            )
            torch.randperm(len(data), generator=generator)  # keep the generator's course
        return data
    return data.subset(torch.randperm(len(data), generator=generator)[:n])


def polymnist(
    split: str,
    n: int | None = None,
    generator: torch.Generator | None = None,
    root: str | Path | None = None,
    translated: bool = False,
    allow_fewer: bool = False,
) -> MultimodalImages:
    """PolyMNIST from disk when present, else the embedded stand-in.

    Real data is looked up at ``root``, by default ``data_root()/"PolyMNIST"`` (or
    ``"TranslatedPolyMNIST"``), in the layout of :func:`load_polymnist`; decoded images are
    cached under ``cache_dir()/polymnist``. When the default location holds nothing, the
    stand-in of :func:`embedded_polymnist` is drawn (and cached). ``source`` says which one
    was used. A folder holding one split but not the other is refused: a run must not train
    on real data and evaluate on the stand-in.

    Args:
        split: ``"train"`` or ``"test"``.
        n: number of tuples. Real data: a random subset of ``n`` (all when ``None``).
            Stand-in: ``n`` tuples (``None``: 5000 train, 1000 test).
        generator: randomness for the subset or the stand-in; ``None`` seeds one with 0.
        root: PolyMNIST folder; given explicitly, it must hold the data.
        translated: translated PolyMNIST (its own folder, and a translated stand-in).
        allow_fewer: real data holding fewer than ``n`` tuples (a small build) gives all of
            them with a warning instead of an error.

    Returns:
        The tuples (uint8 storage; ``x[m]`` are views converted per batch).

    Raises:
        ValueError: for an unknown split, ``n < 1``, or (real data) ``n`` above its size.
        FileNotFoundError: when an explicit ``root`` holds no data, or the data is incomplete
            (one split without the other, a missing modality folder, ...).
    """
    _check_split(split)
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 or None, got {n}")
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    explicit = root is not None
    name = "TranslatedPolyMNIST" if translated else "PolyMNIST"
    base = Path(root) if explicit else data_root() / name
    present = [s for s in SPLITS if _split_dir(base, s) is not None]
    if present and len(present) < len(SPLITS):
        missing = next(s for s in SPLITS if s not in present)
        raise FileNotFoundError(
            f"{name} at {_display(base)} holds the {present[0]} split but not the {missing} "
            f"split (expected {_display(base / missing)}/m0 ... m4): a partial copy. A run "
            f"would mix the real {present[0]} data with the stand-in, so neither is used. Fix: "
            "extract or build both splits there, or move the folder away to use the stand-in. "
            + _ARCHIVE.format(translated=", translated=True" if translated else "")
        )
    if not present:
        if explicit:
            return load_polymnist(base, split, translated)  # raises the explanatory error
        return _cached_standin(
            STANDIN_SIZE[split] if n is None else n, split, generator, translated
        )
    if n is not None and not allow_fewer:
        folder = _split_dir(base, split)
        count = len(_index_files(folder / MODALITIES[0])[0])
        if n > count:
            raise ValueError(
                f"n = {n} exceeds the {count} tuples of {name} ({_display(folder)}): "
                "a small build (build_polymnist(..., limit=...))? Fix: ask for at most "
                f"{count} tuples, build with a larger limit, or pass allow_fewer=True"
            )
    return _cached_load(base, split, translated, n, generator)
