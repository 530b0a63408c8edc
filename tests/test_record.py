import dataclasses
import hashlib
import json
import os
import tempfile

import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from repro import io as rio  # noqa: E402
from repro import record  # noqa: E402
from repro.papers.jnf import settings  # noqa: E402


@dataclasses.dataclass
class Result:
    cfg: object
    metrics: dict
    details: dict = dataclasses.field(default_factory=dict)
    seconds: float | None = None


@pytest.fixture(autouse=True)
def _spare_copies_in_tmp_path(tmp_path, monkeypatch):
    """A failed savefig keeps its files in a temporary folder: keep those in tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.fixture
def figs(tmp_path, monkeypatch):
    monkeypatch.setattr(record, "figures_dir", lambda profile: tmp_path / profile)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    yield fig, tmp_path
    plt.close(fig)


def _result(v=1.0, profile="quick", **cfg):
    base = settings.get("toy_posteriors", profile)
    return Result(dataclasses.replace(base, **cfg), {"a": v}, {"b": [1, 2]}, 2.345)


def test_savefig_takes_name_profile_and_record_from_the_result(figs):
    fig, root = figs
    paths = record.savefig(fig, _result(name="demo"))
    assert {p.name for p in paths.values()} == {"demo.png", "demo.pdf", "demo.json"}
    assert all(p.parent == root / "quick" for p in paths.values())
    rec = json.loads(paths["json"].read_text())
    assert set(rec) >= {"figure", "profile", "config", "metrics", "seconds", "versions", "git"}
    assert rec["figure"] == "demo" and rec["profile"] == "quick"
    assert rec["config"]["data"]["n_train"] == 6000 and rec["seconds"] == 2.3
    assert rec["metrics"] == {"a": 1.0} and rec["details"] == {"b": [1, 2]}
    assert rec["versions"]["torch"]
    for ext in ("png", "pdf"):  # the sidecar names the exact files it belongs to
        assert rec["files"][ext] == hashlib.sha256(paths[ext].read_bytes()).hexdigest()
    assert oct(paths["png"].stat().st_mode & 0o777) != oct(0o600)
    full = record.savefig(fig, _result(name="demo", profile="full"))
    assert full["png"].parent == root / "full"


def test_a_smoke_run_never_writes_into_figures(figs, monkeypatch):
    fig, root = figs
    monkeypatch.setattr(record, "runs_dir", lambda name: root / "runs" / name)
    paths = record.savefig(fig, _result(name="demo", profile="full", smoke=True))
    assert paths["png"].parent == root / "runs" / "full-smoke"
    assert not (root / "full").exists()


def test_pdf_is_byte_stable(figs):
    fig, _ = figs
    first = record.savefig(fig, _result(name="demo"))["pdf"].read_bytes()
    second = record.savefig(fig, _result(name="demo"))["pdf"].read_bytes()
    assert first == second


def _snapshot(paths):
    return {k: p.read_bytes() for k, p in paths.items()}


def test_failed_render_keeps_previous_files(figs, monkeypatch):
    fig, _ = figs
    paths = record.savefig(fig, _result(1.0, name="demo"))
    before = _snapshot(paths)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        record.savefig(fig, _result(2.0, name="demo"))
    assert _snapshot(paths) == before
    assert not [p for p in paths["png"].parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("failing_call", [1, 2, 3])
def test_figure_and_sidecar_are_replaced_as_a_set(figs, monkeypatch, failing_call):
    """A rename failing after others succeeded must not leave a new PNG beside an old sidecar."""
    fig, _ = figs
    paths = record.savefig(fig, _result(1.0, name="demo"))
    before = _snapshot(paths)
    fig.axes[0].plot([0, 1], [0, 1])  # a different figure, so every file would change
    real, calls = os.replace, {"n": 0}

    def flaky(src, dst):
        if str(src).endswith(".tmp"):
            calls["n"] += 1
            if calls["n"] == failing_call:
                raise OSError("rename failed")
        return real(src, dst)

    monkeypatch.setattr(rio.os, "replace", flaky)
    with pytest.raises(OSError, match="rename failed"):
        record.savefig(fig, _result(2.0, name="demo"))
    assert _snapshot(paths) == before
    assert not [p for p in paths["png"].parent.iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(rio.os, "replace", real)
    after = _snapshot(record.savefig(fig, _result(2.0, name="demo")))
    assert all(after[k] != before[k] for k in ("png", "json"))


def test_savefig_rejects_bad_results(figs):
    fig, _ = figs
    with pytest.raises(ValueError, match="unknown profile"):
        record.savefig(fig, _result(profile="quick", name="demo").__class__(
            dataclasses.replace(settings.get("toy_posteriors"), profile="medium"), {}
        ))  # fmt: skip
    with pytest.raises(ValueError, match="file stem"):
        record.savefig(fig, _result(name="a/b"))
    with pytest.raises(ValueError, match="cfg.name"):
        record.savefig(fig, {"metrics": {}})


def test_plot_toy_posteriors_draws_every_panel():
    from repro.papers.jnf import plot, toy_posteriors
    from tests.test_jnf_toy import tiny

    fig = plot.toy_posteriors(toy_posteriors.run(tiny()))
    titles = [ax.get_title() for ax in fig.axes]
    assert any("(b)" in t for t in titles) and any("(d)" in t for t in titles)
    plt.close(fig)
