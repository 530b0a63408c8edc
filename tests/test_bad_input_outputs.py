"""Output folders that cannot be written (issue 14): refused before training, nothing lost after."""

import dataclasses
import errno
import json
import os
import shutil
import subprocess
import uuid

import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from repro import record  # noqa: E402
from repro.papers.jnf import settings  # noqa: E402


@dataclasses.dataclass
class Result:
    cfg: object
    metrics: dict
    details: dict = dataclasses.field(default_factory=dict)
    seconds: float | None = None


def _cfg(**changes):
    return dataclasses.replace(settings.get("toy_posteriors", "quick"), name="demo", **changes)


@pytest.fixture
def readonly(tmp_path):
    """A folder nobody may write: chmod 555, or (for root, who ignores modes) a read-only tmpfs."""
    folder = tmp_path / f"ro-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if shutil.which("mount") is None:
        pytest.skip("root ignores file modes and mount is unavailable")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs: {done.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def test_check_writable_resolves_like_savefig_and_creates_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(record, "figures_dir", lambda profile: tmp_path / "figures" / profile)
    monkeypatch.setattr(record, "runs_dir", lambda name: tmp_path / "runs" / name)
    assert record.check_writable(_cfg()) == tmp_path / "figures" / "quick"
    assert (tmp_path / "figures" / "quick").is_dir()
    assert (
        record.check_writable(_cfg(profile="full", smoke=True)) == tmp_path / "runs" / "full-smoke"
    )
    assert list((tmp_path / "figures" / "quick").iterdir()) == []  # the probe is gone


def test_check_writable_refuses_a_read_only_folder_before_training(readonly, monkeypatch):
    monkeypatch.setattr(record, "figures_dir", lambda profile: readonly / profile)
    with pytest.raises(OSError) as err:
        record.check_writable(_cfg())
    message = str(err.value)
    assert str(readonly) in message and "before training" in message and "Fix" in message
    monkeypatch.setattr(record, "figures_dir", lambda profile: readonly)
    with pytest.raises(OSError, match="before training"):  # exists, but cannot take a file
        record.check_writable(_cfg())


def test_savefig_failure_keeps_the_result_in_a_fallback_file(tmp_path, monkeypatch):
    monkeypatch.setattr(record, "figures_dir", lambda profile: tmp_path / profile)

    def full(files):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(record, "atomic_write_set", full)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    with pytest.raises(OSError) as err:
        record.savefig(fig, Result(_cfg(), {"coherence": 0.93}, seconds=243.0))
    plt.close(fig)
    message = str(err.value)
    assert err.value.errno == errno.ENOSPC
    assert str(tmp_path / "quick") in message and "kept" in message
    saved = [w for w in message.split() if w.endswith("demo.json")]
    assert saved, message
    fallback = saved[0].strip("()`,;.")
    record_ = json.loads(open(fallback, encoding="utf-8").read())
    assert record_["metrics"] == {"coherence": 0.93} and record_["seconds"] == 243.0
    assert os.path.exists(fallback.replace(".json", ".png"))
    shutil.rmtree(os.path.dirname(fallback))
