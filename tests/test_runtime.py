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
