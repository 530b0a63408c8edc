"""Bad MNIST / SVHN files (issue 14): each ends in an error naming the file and the fix."""

import struct

import numpy as np
import pytest
import scipy.io
import torch

from repro.data import mnist_svhn_text as mst
from tests.test_data_mnist_svhn_text import _write_idx, _write_mnist, _write_svhn


@pytest.fixture
def root(tmp_path):
    _write_mnist(tmp_path)
    _write_svhn(tmp_path)
    return tmp_path


RAW = ("MNIST", "raw")


def _raw(root, name):
    return root.joinpath(*RAW, name)


def test_train_labels_replaced_by_the_test_labels(root):
    # the 10k test labels copied over the train labels: as many labels as test images
    _raw(root, "train-labels-idx1-ubyte").write_bytes(
        _raw(root, "t10k-labels-idx1-ubyte").read_bytes()
    )
    with pytest.raises(ValueError) as err:
        mst.load_mnist_svhn_text(root, "train", data_multiplications=1)
    message = str(err.value)
    assert "train-images-idx3-ubyte" in message and "train-labels-idx1-ubyte" in message
    assert "40 images" in message and "20 labels" in message  # both counts
    assert "re-download" in message or "re-extract" in message


def test_truncated_idx_names_file_header_size_and_fix(root):
    path = _raw(root, "train-images-idx3-ubyte")
    full = path.read_bytes()
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError) as err:
        mst.load_mnist_svhn_text(root, "train", data_multiplications=1)
    message = str(err.value)
    assert "train-images-idx3-ubyte" in message and "truncated" in message
    assert f"{len(full):,} bytes" in message and f"{len(full) // 2:,}" in message
    assert "40 x 28 x 28" in message and ("re-download" in message or "re-extract" in message)


def test_wrong_magic_names_file_and_expected_magic(root):
    path = _raw(root, "t10k-labels-idx1-ubyte")
    path.write_bytes(_raw(root, "t10k-images-idx3-ubyte").read_bytes())  # images as labels
    with pytest.raises(ValueError) as err:
        mst.load_mnist_svhn_text(root, "test", data_multiplications=1)
    message = str(err.value)
    assert "t10k-labels-idx1-ubyte" in message and "2049" in message and "2051" in message
    junk = _raw(root, "t10k-images-idx3-ubyte")
    junk.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 40)  # a gzip archive without .gz
    with pytest.raises(ValueError, match="gunzip"):
        mst.read_idx(junk, mst.IDX_MAGIC["images"])
    junk.write_bytes(b"\x00\x08")  # header cut
    with pytest.raises(ValueError, match="header"):
        mst.read_idx(junk)


def test_read_mnist_is_what_build_polymnist_can_call(root, tmp_path_factory):
    images, labels = mst.read_mnist(root, "train")
    assert images.shape == (40, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (40,) and labels.dtype == torch.int64
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        mst.read_mnist(empty, "train")
    _raw(root, "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 3)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        mst.read_mnist(root, "train")


def test_legacy_processed_files_are_checked_too(tmp_path):
    processed = tmp_path / "MNIST" / "processed"
    processed.mkdir(parents=True)
    torch.save((torch.zeros(5, 28, 28, dtype=torch.uint8), torch.zeros(3)), processed / "test.pt")
    torch.save(
        (torch.zeros(5, 28, 28, dtype=torch.uint8), torch.zeros(5)), processed / "training.pt"
    )
    _write_svhn(tmp_path, splits=("test",))
    with pytest.raises(ValueError, match=r"test\.pt.*5 images.*3 labels"):
        mst.load_mnist_svhn_text(tmp_path, "test", data_multiplications=1)
    (processed / "test.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"test\.pt"):
        mst.load_mnist_svhn_text(tmp_path, "test", data_multiplications=1)


def test_truncated_or_unreadable_svhn_mat_names_the_file(root):
    path = root / "SVHN" / "train_32x32.mat"
    full = path.read_bytes()
    for cut in (100, len(full) // 2):
        path.write_bytes(full[:cut])
        with pytest.raises(ValueError) as err:
            mst.load_mnist_svhn_text(root, "train", data_multiplications=1)
        message = str(err.value)
        assert "SVHN/train_32x32.mat" in message and "download" in message
        assert f"{cut:,} bytes" in message


def test_idx_reader_other_dtypes_and_dims(tmp_path):
    path = tmp_path / "x-idx2"
    array = np.arange(6, dtype=">i4").reshape(2, 3)
    path.write_bytes(struct.pack(">i", 0x0C02) + struct.pack(">2i", 2, 3) + array.tobytes())
    assert torch.equal(mst.read_idx(path), torch.arange(6, dtype=torch.int32).reshape(2, 3))
    _write_idx(tmp_path / "y", np.zeros((4,), np.uint8))
    with pytest.raises(ValueError, match="2051"):
        mst.read_idx(tmp_path / "y", 2051)
    with pytest.raises(FileNotFoundError, match="nope"):
        mst.read_idx(tmp_path / "nope")
    scipy.io.savemat(tmp_path / "z.mat", {"a": 1})  # not IDX at all
    with pytest.raises(ValueError, match="magic"):
        mst.read_idx(tmp_path / "z.mat")
