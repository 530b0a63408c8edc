import dataclasses

import pytest

from repro.papers.jnf import settings
from repro.runtime import checkpoint_path, run_identity, set_threads


def test_checkpoint_path_follows_the_run_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    cfg = settings.get("toy_posteriors", "quick")
    path = checkpoint_path(cfg, "joint")
    assert path.parent == tmp_path / "checkpoints" / cfg.name and path.name.endswith("_joint.pt")
    runtime_only = dataclasses.replace(cfg, device="cuda", threads=2)
    assert checkpoint_path(runtime_only, "joint") == path  # resumes on another device
    assert checkpoint_path(dataclasses.replace(cfg, seed=1), "joint") != path
    assert checkpoint_path(cfg, "flow") != path
    assert "device" not in run_identity(cfg) and "seed" in run_identity(cfg)


def test_set_threads_rejects_negative_numbers():
    with pytest.raises(ValueError, match="threads must be >= 0"):
        set_threads(-1)


def test_the_cli_accepts_exactly_the_device_names_resolve_device_knows():
    import torch

    from repro.__main__ import device_name
    from repro.runner import DEVICE_PATTERN
    from repro.runtime import resolve_device

    for name in ("auto", "cpu", "cuda", "cuda:0", "cuda:3"):
        assert device_name(name) == name and DEVICE_PATTERN.match(name)
        try:
            device = resolve_device(name)
        except ValueError as err:  # a CUDA name on a machine without CUDA
            assert not torch.cuda.is_available() and "no CUDA device" in str(err)
        else:
            assert device.type in {"cpu", "cuda"}
    for name in ("gpu", "cuda:", "mps:0"):
        assert not DEVICE_PATTERN.match(name)
