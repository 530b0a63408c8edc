import json
import socket
import struct
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from repro.data.mnist_svhn_text import (
    ALPHABET,
    DIGIT_WORDS,
    decode_text,
    embedded_mnist_svhn_text,
    load_mnist_svhn_text,
    mnist_svhn_text,
    one_hot,
    pair_by_class,
    real_data_present,
    text_from_label,
)

N_MNIST = {"train": 40, "test": 20}
N_SVHN = {"train": 50, "test": 30}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


# ---------------------------------------------------------------------------------------------
# Fixture files in the published formats


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file as distributed by LeCun et al. (big-endian, ubyte)."""
    magic = 0x0800 + array.ndim  # 0x08: unsigned byte
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist(root: Path, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Tiny MNIST in torchvision's raw layout: <root>/MNIST/raw/*-ubyte (uncompressed)."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        n = N_MNIST[split]
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        labels[:10] = np.arange(10)  # every class present
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[split] = (images, labels)
    return out


def _write_svhn(root: Path, splits=("train", "test"), seed: int = 1) -> dict:
    """Tiny SVHN .mat files: X (32, 32, 3, N) uint8, y (N, 1) with 10 for the digit 0."""
    rng = np.random.default_rng(seed)
    folder = root / "SVHN"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split in splits:
        n = N_SVHN[split]
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        digits = rng.integers(0, 10, n)
        digits[:10] = np.arange(10)
        y = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, digits)
    return out


@pytest.fixture(scope="module")
def real_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    mnist = _write_mnist(root)
    svhn = _write_svhn(root)
    return root, mnist, svhn


# ---------------------------------------------------------------------------------------------
# Text


def test_alphabet_matches_mopoe_json():
    # alphabet.json of thomassutter/MoPoE, as its main_svhnmnist.py joins it
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"\\/|_@#$%^&*~`+-=<>()[]{} \n")
    assert ALPHABET == "".join(json.loads(json.dumps(chars)))
    assert len(ALPHABET) == 71 and ALPHABET.find(" ") == 69 and ALPHABET.find("-") == 36


def test_text_rule_and_codecs():
    label = torch.arange(10).repeat(200)
    text = text_from_label(label, torch.Generator().manual_seed(0))
    assert text.shape == (2000, 8) and text.dtype == torch.int64
    strings = decode_text(text)
    starts = {d: set() for d in range(10)}
    for s, d in zip(strings, label.tolist(), strict=True):
        word = DIGIT_WORDS[d]
        assert len(s) == 8 and s.strip() == word and s.endswith(" ")
        start = s.index(word)
        assert s == " " * start + word + " " * (8 - start - len(word))
        starts[d].add(start)
    for d, seen in starts.items():  # uniform over [0, 7 - len(word)], as MoPoE's randint
        assert seen == set(range(8 - len(DIGIT_WORDS[d])))
    hot = one_hot(text[:5])
    assert hot.shape == (5, 8, len(ALPHABET)) and hot.dtype == torch.float32
    assert torch.equal(hot.sum(-1), torch.ones(5, 8))
    assert decode_text(hot) == strings[:5]  # one-hot / logits decode by arg-max
    assert decode_text(text[0]) == strings[:1]
    again = text_from_label(label, torch.Generator().manual_seed(0))
    assert torch.equal(text, again)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        text_from_label(torch.tensor([10]))
    with pytest.raises(ValueError, match="integer"):
        one_hot(text.double())
    with pytest.raises(ValueError, match="shape"):
        decode_text(torch.zeros(2, 8, 5))


# ---------------------------------------------------------------------------------------------
# Pairing


def test_pair_by_class_follows_rand_match_on_idx():
    gen = torch.Generator().manual_seed(3)
    a = torch.randint(0, 4, (60,), generator=gen)
    b = torch.randint(0, 4, (45,), generator=gen)
    ia, ib = pair_by_class(a, b, 5, torch.Generator().manual_seed(0), max_per_class=8)
    assert torch.equal(a[ia], b[ib])
    n = {c: min(int((a == c).sum()), int((b == c).sum()), 8) for c in range(4)}
    assert len(ia) == 5 * sum(n.values())
    counts = Counter(ia.tolist())
    for c in range(4):  # the first n of each class (by index), each exactly 5 times
        first_a = (a == c).nonzero()[:, 0][: n[c]].tolist()
        first_b = (b == c).nonzero()[:, 0][: n[c]].tolist()
        assert {i for i in counts if a[i] == c} == set(first_a)
        assert all(counts[i] == 5 for i in first_a)
        assert set(ib[b[ib] == c].tolist()) == set(first_b)
    # blocks: per class (ascending), per round, one permutation each
    assert torch.equal(a[ia][: 5 * n[0]], torch.zeros(5 * n[0], dtype=a.dtype))
    ja, jb = pair_by_class(a, b, 5, torch.Generator().manual_seed(0), max_per_class=8)
    assert torch.equal(ia, ja) and torch.equal(ib, jb)
    ka, _ = pair_by_class(a, b, 5, torch.Generator().manual_seed(1), max_per_class=8)
    assert not torch.equal(ia, ka)
    with pytest.raises(ValueError, match="data_multiplications"):
        pair_by_class(a, b, 0)


# ---------------------------------------------------------------------------------------------
# Real files


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_real_files(real_root, split):
    root, mnist, svhn = real_root
    images, labels = mnist[split]
    x_svhn, y_svhn = svhn[split]
    dm = 3
    data = load_mnist_svhn_text(
        root, split, torch.Generator().manual_seed(0), data_multiplications=dm
    )
    assert data.source.startswith("real: ") and str(root) in data.source
    n = {c: min(int((labels == c).sum()), int((y_svhn == c).sum())) for c in range(10)}
    assert len(data) == dm * sum(n.values())
    views = data.x
    assert views["mnist"].shape == (len(data), 1, 28, 28) and views["mnist"].dtype == torch.float32
    assert views["svhn"].shape == (len(data), 3, 32, 32) and views["svhn"].dtype == torch.float32
    assert views["text"].shape == (len(data), 8) and views["text"].dtype == torch.int64
    b = {m: v[:] for m, v in views.items()}  # materialised
    im, isv = data.index["mnist"], data.index["svhn"]
    # values: ToTensor of the stored uint8 pixels; SVHN X[h, w, c, n] -> x[n, c, h, w]
    expect_mnist = torch.from_numpy(images[im.numpy()]).float()[:, None] / 255
    expect_svhn = torch.from_numpy(x_svhn[..., isv.numpy()].transpose(3, 2, 0, 1)).float() / 255
    torch.testing.assert_close(b["mnist"], expect_mnist, rtol=0, atol=0)
    torch.testing.assert_close(b["svhn"], expect_svhn, rtol=0, atol=0)
    # pairing by class: MNIST label == SVHN label (10 -> 0) == label == the text's word
    assert torch.equal(data.label, torch.from_numpy(labels[im.numpy()]).long())
    assert torch.equal(data.label, torch.from_numpy(y_svhn[isv.numpy()]).long())
    assert set(data.label.tolist()) == set(range(10))
    words = [s.strip() for s in decode_text(b["text"])]
    assert words == [DIGIT_WORDS[d] for d in data.label.tolist()]
    counts = Counter(im.tolist())
    assert set(counts.values()) == {dm}  # each used MNIST image in exactly dm pairs
    # determinism given the generator, and a different seed differs
    again = load_mnist_svhn_text(
        root, split, torch.Generator().manual_seed(0), data_multiplications=dm
    )
    assert torch.equal(again.index["svhn"], isv) and torch.equal(again.text, data.text)
    other = load_mnist_svhn_text(
        root, split, torch.Generator().manual_seed(1), data_multiplications=dm
    )
    assert not torch.equal(other.index["svhn"], isv)
    # batch/subset agree with x
    sub = data.subset(torch.tensor([3, 0, 5]))
    assert len(sub) == 3 and sub.source == data.source
    torch.testing.assert_close(sub.x["svhn"][:], b["svhn"][[3, 0, 5]])
    torch.testing.assert_close(views["svhn"][[3, 0, 5]], b["svhn"][[3, 0, 5]])
    assert torch.equal(data.batch(slice(2, 4))["text"], b["text"][2:4])


def test_legacy_processed_mnist_and_top_level(real_root, tmp_path, monkeypatch):
    _, mnist, _ = real_root
    # torchvision's legacy MNIST/processed/{training,test}.pt (the files MoPoE's code reads)
    processed = tmp_path / "MNIST" / "processed"
    processed.mkdir(parents=True)
    for split, name in (("train", "training.pt"), ("test", "test.pt")):
        images, labels = mnist[split]
        torch.save((torch.from_numpy(images), torch.from_numpy(labels).long()), processed / name)
    _write_svhn(tmp_path, splits=("test",))
    assert real_data_present(tmp_path, "test") and not real_data_present(tmp_path, "train")
    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    data = mnist_svhn_text("test", torch.Generator().manual_seed(0), data_multiplications=2, n=7)
    assert data.source.startswith("real: ") and len(data) == 7
    images, labels = mnist["test"]
    assert torch.equal(data.label, torch.from_numpy(labels[data.index["mnist"].numpy()]).long())
    # the train split is absent there: the default location falls back to the stand-in
    fallback = mnist_svhn_text("train", n_images=20, data_multiplications=1)
    assert fallback.source.startswith("embedded stand-in")
    with pytest.raises(ValueError, match="exceeds"):
        mnist_svhn_text("test", data_multiplications=1, n=10**6)


def test_missing_files_name_paths_and_never_download(tmp_path, monkeypatch):
    calls = []

    def record(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", record)
    with pytest.raises(FileNotFoundError) as err:
        load_mnist_svhn_text(tmp_path, "train")
    message = str(err.value)
    for name in ("MNIST/raw/train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert name in message
    assert "SVHN/train_32x32.mat" in message and "download=True" in message
    # only SVHN missing: MNIST is not named
    _write_mnist(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        mnist_svhn_text("test", root=tmp_path)
    assert "SVHN/test_32x32.mat" in str(err.value) and "idx3" not in str(err.value)
    # gzipped MNIST only: the message says to gunzip
    gz_root = tmp_path / "gz"
    (gz_root / "MNIST" / "raw").mkdir(parents=True)
    (gz_root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="gunzip"):
        load_mnist_svhn_text(gz_root, "train")
    assert calls == []  # download=False never touched the network
    # download=True does try (and reports the failure with the same placement hint)
    with pytest.raises(RuntimeError, match="SVHN/test_32x32.mat"):
        load_mnist_svhn_text(tmp_path, "test", download=True)
    assert calls


def test_bad_svhn_file_and_args(tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "SVHN").mkdir()
    scipy.io.savemat(tmp_path / "SVHN" / "train_32x32.mat", {"X": np.zeros((28, 28, 3, 2))})
    with pytest.raises(ValueError, match="'X' and 'y'"):
        load_mnist_svhn_text(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        load_mnist_svhn_text(tmp_path, "val")
    with pytest.raises(ValueError, match="data_multiplications"):
        load_mnist_svhn_text(tmp_path, "train", data_multiplications=0)
    with pytest.raises(ValueError, match="n must be"):
        mnist_svhn_text("train", root=tmp_path, n=0)


# ---------------------------------------------------------------------------------------------
# Embedded stand-in


@pytest.fixture(scope="module")
def standin():
    return {
        split: embedded_mnist_svhn_text(
            split, torch.Generator().manual_seed(0), n_images=60, data_multiplications=3
        )
        for split in ("train", "test")
    }


def test_standin_shapes_ranges_and_pairs(standin):
    data = standin["train"]
    assert data.source.startswith("embedded stand-in") and "load_digits" in data.source
    assert len(data) == 60 * 3  # balanced pools: no class is truncated
    x = data.batch(slice(None))
    assert x["mnist"].shape == (180, 1, 28, 28) and x["svhn"].shape == (180, 3, 32, 32)
    for m in ("mnist", "svhn"):
        assert x[m].dtype == torch.float32 and 0 <= x[m].min() and x[m].max() <= 1
    assert x["mnist"].amax((1, 2, 3)).min() > 0.9  # a visible stroke in every digit
    frame = torch.cat(
        [x["mnist"][:, 0, [0, -1]].flatten(1), x["mnist"][:, 0, :, [0, -1]].flatten(1)], 1
    )
    assert frame.mean() < 0.01  # a black frame, like MNIST
    assert x["svhn"].std((2, 3)).mean() > 0.05  # coloured digit on a photo, not flat
    assert words_match(data)
    assert set(Counter(data.index["mnist"].tolist()).values()) == {3}
    inst = data.image_instance
    assert inst["mnist"].shape == (60,) and inst["svhn"].shape == (60,)
    pair_mnist = inst["mnist"][data.index["mnist"]]
    pair_svhn = inst["svhn"][data.index["svhn"]]
    assert bool((pair_mnist != pair_svhn).all())  # a different instance of the same digit
    from sklearn.datasets import load_digits

    target = torch.from_numpy(load_digits().target)
    assert torch.equal(target[pair_mnist], data.label)
    assert torch.equal(target[pair_svhn], data.label)


def words_match(data) -> bool:
    words = [s.strip() for s in decode_text(data.text)]
    return words == [DIGIT_WORDS[d] for d in data.label.tolist()]


def test_standin_disjoint_splits_and_seeds(standin):
    train, test = standin["train"], standin["test"]
    assert words_match(test)
    used = {s: torch.cat(list(d.image_instance.values())) for s, d in standin.items()}
    assert not set(used["train"].tolist()) & set(used["test"].tolist())
    assert bool((used["test"] % 5 == 0).all())
    again = embedded_mnist_svhn_text(
        "train", torch.Generator().manual_seed(0), n_images=60, data_multiplications=3
    )
    for m in ("mnist", "svhn"):
        assert torch.equal(again.images[m], train.images[m])
        assert torch.equal(again.index[m], train.index[m])
    assert torch.equal(again.text, train.text)
    other = embedded_mnist_svhn_text(
        "train", torch.Generator().manual_seed(1), n_images=60, data_multiplications=3
    )
    assert not torch.equal(other.images["mnist"], train.images["mnist"])
    assert not torch.equal(other.images["svhn"], train.images["svhn"])
    with pytest.raises(ValueError, match="n_images"):
        embedded_mnist_svhn_text("train", n_images=5)


def test_top_level_falls_back_to_standin(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    data = mnist_svhn_text("test", n_images=30, data_multiplications=2, n=11)
    assert data.source.startswith("embedded stand-in") and len(data) == 11
    assert words_match(data)
    same = mnist_svhn_text("test", n_images=30, data_multiplications=2, n=11)
    assert torch.equal(same.x["svhn"][:], data.x["svhn"][:])  # generator=None is seeded with 0
