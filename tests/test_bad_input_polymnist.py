"""Bad PolyMNIST input (issue 14): each case ends in an error naming the file and the fix."""

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import repro.data.polymnist as pm
from repro.data.polymnist import MODALITIES, build_polymnist, load_polymnist, polymnist


def _layout(root: Path, per_digit: dict[str, int], digits=range(10), seed=0) -> Path:
    """A tiny PolyMNIST in the published layout: random RGB images named <i>.<digit>.png."""
    rng = np.random.default_rng(seed)
    for split, count in per_digit.items():
        for m in MODALITIES:
            folder = root / split / m
            folder.mkdir(parents=True)
            for d in digits:
                for i in range(count):
                    pixels = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(folder / f"{i}.{d}.png")
    return root


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_train_without_test_is_refused_before_anything_runs(env):
    _layout(env / "data" / "PolyMNIST", {"train": 2})
    for split in ("train", "test"):
        with pytest.raises(FileNotFoundError, match=r"holds the train split but not the test"):
            polymnist(split, n=5)


def test_a_split_missing_digits_is_refused(env):
    root = _layout(env / "p", {"train": 2}, digits=range(5))
    with pytest.raises(ValueError, match=r"no image of the digit\(s\) \[5, 6, 7, 8, 9\]"):
        load_polymnist(root, "train")


def test_a_truncated_png_names_its_path(env):
    root = _layout(env / "p", {"test": 1})
    bad = root / "test" / "m2" / "0.4.png"
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"test/m2/0\.4\.png cannot be decoded as a PNG"):
        load_polymnist(root, "test")


def test_a_png_replaced_after_caching_is_read_again(env):
    root = _layout(env / "data" / "PolyMNIST", {"train": 1, "test": 1})
    first = polymnist("test")
    assert len(list((env / "cache" / "polymnist").glob("test-*.pt"))) == 1
    target = root / "test" / "m1" / "0.0.png"
    Image.fromarray(np.full((28, 28, 3), 7, np.uint8)).save(target)  # same name, new pixels
    again = polymnist("test")
    row = int(torch.nonzero(again.label == 0)[0])
    assert bool((again.x["m1"][row] == 7 / 255).all())
    assert not torch.equal(first.x["m1"][:], again.x["m1"][:])


def test_a_truncated_cache_file_is_a_miss(env):
    _layout(env / "data" / "PolyMNIST", {"train": 1, "test": 1})
    reference = polymnist("test")
    [path] = (env / "cache" / "polymnist").glob("test-*.pt")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.warns(RuntimeWarning, match=r"cache file .* is unreadable.*rebuilt"):
        again = polymnist("test")
    assert torch.equal(again.x["m0"][:], reference.x["m0"][:])
    assert len(torch.load(path, weights_only=True)["label"]) == 10  # rewritten whole


def test_a_small_build_gives_a_fix_or_all_it_has(env):
    _layout(env / "data" / "PolyMNIST", {"train": 3, "test": 1})
    with pytest.raises(ValueError, match=r"n = 100 exceeds the 30 tuples.*limit"):
        polymnist("train", n=100)
    with pytest.warns(UserWarning, match=r"holds 30 tuples, fewer than the 100 asked"):
        data = polymnist("train", n=100, allow_fewer=True)
    assert len(data) == 30


def test_asking_for_n_tuples_decodes_only_those(env, monkeypatch):
    _layout(env / "data" / "PolyMNIST", {"train": 4, "test": 1})
    reads = []
    real = pm._read_png
    monkeypatch.setattr(pm, "_read_png", lambda path: reads.append(path) or real(path))
    data = polymnist("train", n=6, generator=torch.Generator().manual_seed(0))
    assert len(data) == 6 and len(reads) == 6 * len(MODALITIES)
    assert not list((env / "cache" / "polymnist").glob("train-*.pt"))  # no partial cache
    whole = polymnist("train", generator=torch.Generator().manual_seed(1))  # reads and caches
    chosen = torch.randperm(40, generator=torch.Generator().manual_seed(0))[:6]
    assert torch.equal(data.x["m3"][:], whole.x["m3"][chosen])  # same tuples either way
    cached = polymnist("train", n=6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cached.x["m3"][:], data.x["m3"][:])


def test_build_polymnist_names_a_truncated_mnist_file(tmp_path):
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    header = struct.pack(">iiii", 2051, 60000, 28, 28)
    (raw / "train-images-idx3-ubyte").write_bytes(header + b"\0" * 1000)
    (raw / "train-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, 60000) + b"\0" * 10)
    backgrounds = tmp_path / "bg"
    backgrounds.mkdir()
    for k in range(5):
        Image.fromarray(np.full((40, 40, 3), 30 * k, np.uint8)).save(backgrounds / f"{k}.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"train-images-idx3-ubyte is truncated"):
            build_polymnist(tmp_path / "mnist", backgrounds, tmp_path / "out")
