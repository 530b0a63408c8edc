import shutil
import socket
import struct
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import repro.data.polymnist as pm
from repro.data.polymnist import (
    MODALITIES,
    build_polymnist,
    embedded_polymnist,
    load_polymnist,
    polymnist,
)

# five solid backgrounds (uint8 RGB): every pixel of a built image is either c or 255 - c
COLOURS = [(30, 90, 200), (200, 40, 60), (20, 160, 70), (240, 200, 20), (120, 50, 170)]
N_MNIST = {"train": 40, "test": 20}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = 2051 if array.ndim == 3 else 2049
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Tiny MNIST in torchvision's raw IDX layout: random boxes above and below 128."""
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        n = N_MNIST[split]
        images = np.zeros((n, 28, 28), np.uint8)
        for k in range(n):
            top, left = rng.integers(2, 12, 2)
            h, w = rng.integers(6, 15, 2)
            images[k, top : top + h, left : left + w] = rng.integers(129, 256)
            images[k, top + h : top + h + 2, left : left + w] = 100  # below the 128 cut
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[split] = (images, labels)
    return out


def _backgrounds(folder: Path, extra: bool = True) -> Path:
    folder.mkdir()
    for k, colour in enumerate(COLOURS):
        image = np.broadcast_to(np.array(colour, np.uint8), (36 + k, 40, 3))
        Image.fromarray(np.ascontiguousarray(image)).save(folder / f"bg{k}.png")
    if extra:  # a sixth image, last in name order, must be ignored
        Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(folder / "zz.jpg")
    return folder


def _masks(x: torch.Tensor, colour: tuple[int, int, int]) -> torch.Tensor:
    """(N, 28, 28) bool digit masks of images built on a solid background; checks purity."""
    pixels = (x * 255).round().to(torch.int64)  # (N, 3, 28, 28)
    c = torch.tensor(colour)[None, :, None, None]
    on, off = (pixels == 255 - c).all(1), (pixels == c).all(1)
    assert bool((on | off).all()), "pixels other than the background or its inverse"
    return on


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("polymnist")
    mnist = _fake_mnist(base / "mnist")
    backgrounds = _backgrounds(base / "backgrounds")
    plain = build_polymnist(
        base / "mnist", backgrounds, base / "PolyMNIST", generator=torch.Generator().manual_seed(0)
    )
    translated = build_polymnist(
        base / "mnist",
        backgrounds,
        base / "TranslatedPolyMNIST",
        translated=True,
        generator=torch.Generator().manual_seed(1),
        limit=30,
    )
    return {"base": base, "mnist": mnist, "plain": plain, "translated": translated}


def test_build_writes_the_published_layout_and_load_reads_it_back(built):
    root = built["plain"]
    for split in ("train", "test"):
        images, labels = built["mnist"][split]
        for m in MODALITIES:
            names = sorted(p.name for p in (root / split / m).iterdir())
            expected = sorted(
                f"{i}.{d}.png" for d in range(10) for i in range(int((labels == d).sum()))
            )
            assert names == expected
        data = load_polymnist(root, split)
        n = N_MNIST[split]
        assert len(data) == n and data.source == f"PolyMNIST ({root / split})"
        assert data.label.dtype == torch.int64
        mnist_labels = torch.from_numpy(labels.astype(np.int64))
        assert torch.equal(
            torch.bincount(data.label, minlength=10), torch.bincount(mnist_labels, minlength=10)
        )
        assert torch.equal(data.label, data.label.sort().values)  # sorted by digit
        # each modality's image is an MNIST image of the tuple's label (so labels agree), and
        # each modality uses every MNIST image of that label exactly once (a permutation)
        mnist_masks = torch.from_numpy(images > 128)
        for m, colour in zip(MODALITIES, COLOURS, strict=True):
            assert data.x[m].storage.dtype == torch.uint8  # stored as the PNGs, converted per batch
            x = data.x[m][:]
            assert x.shape == (n, 3, 28, 28) and x.dtype == torch.float32
            assert float(x.min()) >= 0 and float(x.max()) <= 1
            masks = _masks(x, colour)
            match = (masks[:, None] == mnist_masks[None]).flatten(2).all(2)  # (N, n_mnist)
            assert bool((match.sum(1) >= 1).all())
            which = match.float().argmax(1)
            assert torch.equal(mnist_labels[which], data.label)
            assert sorted(which.tolist()) == list(range(n))


def test_translated_build_shrinks_and_moves_the_digit(built):
    data = load_polymnist(built["translated"], "train", translated=True)
    assert len(data) == 30 and data.source.startswith("Translated PolyMNIST (")
    images, _ = built["mnist"]["train"]
    masks = _masks(data.x["m0"][:], COLOURS[0])
    rows, cols = masks.any(2), masks.any(1)
    for r, c in zip(rows, cols, strict=True):  # the mask fits the 21x21 pasted box
        assert int(r.nonzero().max() - r.nonzero().min()) < 21
        assert int(c.nonzero().max() - c.nonzero().min()) < 21
    ratio = masks.sum() / torch.from_numpy(images[:30] > 128).sum()
    assert 0.4 < float(ratio) < 0.75  # 0.75^2 = 0.56


def test_load_accepts_the_archive_subfolder(built, tmp_path):
    shutil.copytree(built["plain"] / "test", tmp_path / "MMNIST" / "test")
    data = load_polymnist(tmp_path, "test")
    reference = load_polymnist(built["plain"], "test")
    assert torch.equal(data.x["m3"][:], reference.x["m3"][:])
    assert torch.equal(data.label, reference.label)


def test_load_errors_name_the_path_and_the_problem(built, tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        load_polymnist(built["plain"], "val")
    with pytest.raises(FileNotFoundError, match=r"test split not found.*build_polymnist"):
        load_polymnist(tmp_path / "nothing", "test")
    with pytest.raises(FileNotFoundError, match=r"translated=True"):
        load_polymnist(tmp_path / "nothing", "test", translated=True)

    def fresh(name):
        root = tmp_path / name
        shutil.copytree(built["plain"] / "test", root / "test")
        return root

    root = fresh("no_m3")
    shutil.rmtree(root / "test" / "m3")
    with pytest.raises(FileNotFoundError, match=r"lacks the modality folder\(s\) \['m3'\]"):
        load_polymnist(root, "test")
    root = fresh("empty_m1")
    for path in (root / "test" / "m1").iterdir():
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"\['m1'\] hold no"):
        load_polymnist(root, "test")
    root = fresh("short_m2")
    (root / "test" / "m2" / "0.3.png").unlink()
    with pytest.raises(ValueError, match=r"different numbers of images .*'m2': 19"):
        load_polymnist(root, "test")
    root = fresh("relabelled_m4")
    (root / "test" / "m4" / "0.3.png").rename(root / "test" / "m4" / "7.3.png")
    with pytest.raises(ValueError, match=r"disagree across modalities: m0 has 0\.3\.png"):
        load_polymnist(root, "test")
    root = fresh("odd_name")
    shutil.copy(root / "test" / "m0" / "0.3.png", root / "test" / "m0" / "extra.png")
    with pytest.raises(ValueError, match=r"not named <index>\.<digit>\.png.*extra\.png"):
        load_polymnist(root, "test")
    root = fresh("big_image")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "test" / "m0" / "0.3.png")
    with pytest.raises(ValueError, match=r"0\.3\.png is 32x32, expected 28x28"):
        load_polymnist(root, "test")


def test_build_errors(built, tmp_path):
    base = built["base"]
    with pytest.raises(FileNotFoundError, match=r"MNIST/raw.*download=True"):
        build_polymnist(tmp_path / "no_mnist", base / "backgrounds", tmp_path / "out")
    few = tmp_path / "few"
    few.mkdir()
    for k in range(3):
        shutil.copy(base / "backgrounds" / f"bg{k}.png", few)
    with pytest.raises(ValueError, match="holds 3 images"):
        build_polymnist(base / "mnist", few, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="background folder"):
        build_polymnist(base / "mnist", tmp_path / "missing", tmp_path / "out")
    with pytest.raises(FileExistsError, match="already holds PNG files"):
        build_polymnist(base / "mnist", base / "backgrounds", built["plain"])
    with pytest.raises(ValueError, match="limit must be"):
        build_polymnist(base / "mnist", base / "backgrounds", tmp_path / "out", limit=0)


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")  # a missing data root on purpose
def test_polymnist_uses_real_data_when_present_else_the_stand_in(built, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "cache"))
    standin = polymnist("test", n=30, generator=torch.Generator().manual_seed(0))
    assert standin.source.startswith("embedded stand-in") and len(standin) == 30
    translated = polymnist("test", n=10, translated=True)
    assert "translated PolyMNIST" in translated.source

    shutil.copytree(built["plain"], tmp_path / "data" / "PolyMNIST")
    real = polymnist("test")
    assert real.source.startswith("PolyMNIST (") and len(real) == N_MNIST["test"]
    reference = load_polymnist(tmp_path / "data" / "PolyMNIST", "test")
    assert torch.equal(real.x["m2"][:], reference.x["m2"][:])
    assert torch.equal(real.label, reference.label)
    assert len(list((tmp_path / "cache" / "polymnist").glob("test-*.pt"))) == 1
    again = polymnist("test")  # from the cache
    assert torch.equal(again.x["m4"][:], reference.x["m4"][:]) and again.source == reference.source
    part = polymnist("test", n=5, generator=torch.Generator().manual_seed(3))
    assert len(part) == 5 and part.source == reference.source
    with pytest.raises(ValueError, match="n = 99 exceeds the 20 tuples"):
        polymnist("test", n=99)
    # translated PolyMNIST has its own folder: absent here, so the stand-in
    assert polymnist("test", n=4, translated=True).source.startswith("embedded stand-in")
    with pytest.raises(FileNotFoundError, match="not found"):
        polymnist("test", root=tmp_path / "elsewhere")
    assert len(polymnist("train", root=built["translated"], translated=True)) == 30


def _solid_backgrounds():  # replaces the stand-in's colour fields in a test
    return tuple(
        torch.tensor(c, dtype=torch.float32)[:, None, None].div(255).expand(3, 40, 40)
        for c in COLOURS
    )


def test_standin_shapes_labels_and_seeding():
    g = torch.Generator().manual_seed(0)
    data = embedded_polymnist(2000, "train", g)
    assert set(data.x) == set(MODALITIES) and data.source.startswith("embedded stand-in")
    for m in MODALITIES:
        assert data.x[m].storage.dtype == torch.uint8
        x = data.x[m][:]
        assert x.shape == (2000, 3, 28, 28) and x.dtype == torch.float32
        assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert data.label.dtype == torch.int64 and data.label.shape == (2000,)
    counts = torch.bincount(data.label, minlength=10)
    assert int(counts.min()) > 150 and int(counts.max()) < 250
    # continuous augmentation: no two tuples repeat
    assert torch.unique(data.x["m0"][:].flatten(1), dim=0).shape[0] == 2000
    # the five backgrounds differ (mean colour per modality)
    means = torch.stack([data.x[m][:].mean((0, 2, 3)) for m in MODALITIES])
    assert float(torch.cdist(means, means).add(torch.eye(5)).min()) > 0.05
    # about SKLEARN_SHARE of the digits are scikit-learn's, the rest font glyphs
    ids = torch.cat(list(data.instance.values()))
    share = float((ids >= pm.SKLEARN_OFFSET).float().mean())
    assert abs(share - pm.SKLEARN_SHARE) < 0.05

    a = embedded_polymnist(50, "test", torch.Generator().manual_seed(7))
    b = embedded_polymnist(50, "test", torch.Generator().manual_seed(7))
    c = embedded_polymnist(50, "test", torch.Generator().manual_seed(8))
    assert all(torch.equal(a.x[m][:], b.x[m][:]) for m in MODALITIES)
    assert torch.equal(a.label, b.label)
    assert not torch.equal(a.x["m0"][:], c.x["m0"][:])
    assert len(a.subset(slice(0, 4))) == 4 and a.subset([1, 2]).instance["m1"].shape == (2,)
    picked = a.subset(torch.tensor([3, 1]))
    assert torch.equal(picked.x["m2"][:], a.x["m2"][:][[3, 1]])  # views compose, no copy


def _instance_label(ids: torch.Tensor) -> torch.Tensor:
    from sklearn.datasets import load_digits

    from repro.data.glyphs import glyph_bank

    target = torch.from_numpy(load_digits().target)
    glyph = ids < pm.SKLEARN_OFFSET
    out = torch.empty_like(ids)
    out[glyph] = glyph_bank().label[ids[glyph]]
    out[~glyph] = target[ids[~glyph] - pm.SKLEARN_OFFSET]
    return out


def test_standin_modalities_show_different_instances_and_splits_are_disjoint():
    from repro.data.glyphs import FACES, TEST_FACES, glyph_bank

    train = embedded_polymnist(1000, "train", torch.Generator().manual_seed(0))
    test = embedded_polymnist(1000, "test", torch.Generator().manual_seed(0))
    for data in (train, test):
        instances = torch.stack([data.instance[m] for m in MODALITIES], 1)  # (N, 5)
        assert bool((instances.sort(1).values.diff(1) > 0).all())  # five distinct digits
        assert bool((_instance_label(instances) == data.label[:, None]).all())  # of its class
        for j in range(1, 5):
            assert bool((data.x["m0"][:] != data.x[MODALITIES[j]][:]).flatten(1).any(1).all())
    bank = glyph_bank()
    for data, split in ((train, "train"), (test, "test")):
        ids = torch.cat(list(data.instance.values())).unique()
        glyphs, digits = ids[ids < pm.SKLEARN_OFFSET], ids[ids >= pm.SKLEARN_OFFSET]
        faces = {FACES[int(f)] for f in bank.face[glyphs]}
        assert (faces <= set(TEST_FACES)) == (split == "test") and faces
        assert bool(((digits - pm.SKLEARN_OFFSET) % 5 == 0).all()) == (split == "test")
    train_ids = set(torch.cat(list(train.instance.values())).tolist())
    test_ids = set(torch.cat(list(test.instance.values())).tolist())
    assert not train_ids & test_ids
    assert len(train_ids) > 600 and len(test_ids) > 250  # draws cover the pools


def test_standin_translated_variant_is_smaller_and_moves(monkeypatch):
    monkeypatch.setattr(pm, "_field_backgrounds", _solid_backgrounds)
    plain = embedded_polymnist(400, "train", torch.Generator().manual_seed(0))
    moved = embedded_polymnist(400, "train", torch.Generator().manual_seed(0), translated=True)
    assert "translated" in moved.source
    ys = torch.arange(28, dtype=torch.float32)
    area, spread = {}, {}
    for name, data in (("plain", plain), ("moved", moved)):
        masks = _masks(data.x["m0"][:], COLOURS[0]).float()
        assert bool((masks.sum((1, 2)) > 10).all())  # a digit on every image
        area[name] = masks.sum((1, 2)).mean()
        centre = (masks.sum(2) * ys).sum(1) / masks.sum((1, 2))  # row centroid
        assert abs(float(centre.mean()) - 13.5) < 1.0
        spread[name] = centre.std()
    assert 0.4 < float(area["moved"] / area["plain"]) < 0.75
    assert float(spread["moved"]) > 1.3 * float(spread["plain"])


def test_standin_draws_are_cached_with_the_generator_state(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA", str(tmp_path))  # an empty data root: the stand-in
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "cache"))
    g1 = torch.Generator().manual_seed(5)
    with pytest.warns(UserWarning, match="REPRO_DATA"):
        first = polymnist("train", n=40, generator=g1)
    after = torch.rand(3, generator=g1)
    assert len(list((tmp_path / "cache" / "polymnist").glob("standin-train-*.pt"))) == 1
    calls = []
    monkeypatch.setattr(pm, "embedded_polymnist", lambda *a, **k: calls.append(a))
    g2 = torch.Generator().manual_seed(5)
    again = polymnist("train", n=40, generator=g2)  # from the cache
    assert not calls and torch.equal(again.x["m3"][:], first.x["m3"][:])
    assert torch.equal(torch.rand(3, generator=g2), after)  # the generator moved on the same
    [path] = (tmp_path / "cache" / "polymnist").glob("standin-train-*.pt")
    path.write_bytes(path.read_bytes()[:100])  # truncated: a miss, redrawn
    monkeypatch.undo()
    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "cache"))
    with pytest.warns(RuntimeWarning, match="unreadable"):
        redrawn = polymnist("train", n=40, generator=torch.Generator().manual_seed(5))
    assert torch.equal(redrawn.x["m3"][:], first.x["m3"][:])


def test_standin_argument_errors():
    g = torch.Generator()
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        embedded_polymnist(0, "train", g)
    with pytest.raises(ValueError, match="'val'"):
        embedded_polymnist(5, "val", g)
    with pytest.raises(ValueError, match="size must lie in"):
        embedded_polymnist(5, "train", g, size=8)
    assert embedded_polymnist(3, "train", g, size=32).x["m1"].shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="n must be >= 1 or None, got -1"):
        polymnist("train", n=-1)
