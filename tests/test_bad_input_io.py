"""Atomic writes on a full disk (issue 14): an OSError naming the file, the free space, the fix.

The temporary file is removed and the previous file stays as it was.
"""

import errno
import os
import re
import shutil
import subprocess
import uuid

import pytest
import torch

from repro import io as rio


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"),
        OSError(errno.ENOSPC, "No space left on device"),
    ],
)
def test_full_disk_names_destination_free_space_and_fix(tmp_path, monkeypatch, failure):
    path = tmp_path / "ckpt" / "joint.pt"
    rio.atomic_torch_save({"epoch": 1}, path)
    before = path.read_bytes()

    def full(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise failure

    monkeypatch.setattr(rio.torch, "save", full)
    with pytest.raises(OSError) as err:
        rio.atomic_torch_save({"epoch": 2}, path, what="stage 'joint': checkpoint after epoch 2")
    message = str(err.value)
    assert err.value.errno == errno.ENOSPC
    assert str(path) in message and "free" in message and "REPRO_CACHE" in message
    assert "stage 'joint'" in message and "unchanged" in message
    assert re.search(
        rf"\d+\.\d (GiB|MiB) free of .* on the file system of {re.escape(str(tmp_path))}", message
    )
    assert path.read_bytes() == before  # the previous file is intact
    assert _leftovers(path.parent) == []  # the temporary file is gone


def test_other_errors_pass_through(tmp_path, monkeypatch):
    def broken(obj, handle, *args, **kwargs):
        raise RuntimeError("something else")

    monkeypatch.setattr(rio.torch, "save", broken)
    with pytest.raises(RuntimeError, match="something else"):
        rio.atomic_torch_save({}, tmp_path / "a.pt")
    assert _leftovers(tmp_path) == []


def test_atomic_write_set_on_a_full_disk_keeps_the_previous_set(tmp_path, monkeypatch):
    first = rio.atomic_write_set({tmp_path / "a.png": b"old a", tmp_path / "a.json": b"old j"})
    real = os.fsync
    calls = {"n": 0}

    def full(fd):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(rio.os, "fsync", full)
    with pytest.raises(OSError, match="free") as err:
        rio.atomic_write_set({tmp_path / "a.png": b"new a", tmp_path / "a.json": b"new j"})
    assert "a.json" in str(err.value)
    assert [p.read_bytes() for p in first] == [b"old a", b"old j"]
    assert _leftovers(tmp_path) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (root only; skipped where mounting is not possible)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / f"tiny-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_real_full_disk(tiny_disk):
    path = tiny_disk / "joint.pt"
    rio.atomic_torch_save({"w": torch.zeros(1000)}, path)
    before = path.read_bytes()
    with pytest.raises(OSError) as err:
        rio.atomic_torch_save({"w": torch.zeros(1_000_000)}, path)  # 4 MB on a 1 MiB disk
    message = str(err.value)
    assert str(path) in message and "free" in message and "REPRO_CACHE" in message
    assert path.read_bytes() == before
    assert _leftovers(tiny_disk) == []
    with pytest.raises(OSError, match="free"):
        rio.atomic_write_text(tiny_disk / "big.txt", "x" * 2_000_000)
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["joint.pt"]
