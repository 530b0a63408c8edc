import json

import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from repro import plotting  # noqa: E402
from repro.config import get  # noqa: E402


@pytest.fixture
def figs(tmp_path, monkeypatch):
    monkeypatch.setattr(plotting, "figures_dir", lambda profile: tmp_path / profile)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    yield fig, tmp_path
    plt.close(fig)


def test_savefig_writes_png_pdf_and_sidecar(figs):
    fig, root = figs
    cfg = get("jnf_toy_posteriors", "quick")
    paths = plotting.savefig(fig, "demo", "quick", config=cfg, metrics={"a": 1.0}, seconds=2.345)
    assert {p.name for p in paths.values()} == {"demo.png", "demo.pdf", "demo.json"}
    record = json.loads(paths["json"].read_text())
    assert set(record) >= {"figure", "profile", "config", "metrics", "seconds", "versions", "git"}
    assert record["config"]["data"]["n_train"] == 6000 and record["seconds"] == 2.3
    assert record["versions"]["torch"]
    assert oct(paths["png"].stat().st_mode & 0o777) != oct(0o600)


def test_pdf_is_byte_stable(figs):
    fig, _ = figs
    first = plotting.savefig(fig, "demo", "quick", config={}, metrics={})["pdf"].read_bytes()
    second = plotting.savefig(fig, "demo", "quick", config={}, metrics={})["pdf"].read_bytes()
    assert first == second


def test_failed_save_keeps_previous_files(figs, monkeypatch):
    fig, _ = figs
    paths = plotting.savefig(fig, "demo", "quick", config={}, metrics={"v": 1})
    before = {k: p.read_bytes() for k, p in paths.items()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        plotting.savefig(fig, "demo", "quick", config={}, metrics={"v": 2})
    assert {k: p.read_bytes() for k, p in paths.items()} == before
    assert not list(paths["png"].parent.glob("*.tmp"))


def test_savefig_rejects_bad_names(figs):
    fig, _ = figs
    with pytest.raises(ValueError, match="unknown profile"):
        plotting.savefig(fig, "demo", "medium", config={}, metrics={})
    with pytest.raises(ValueError, match="file stem"):
        plotting.savefig(fig, "a/b", "quick", config={}, metrics={})


def test_plot_jnf_toy_posteriors_draws_every_panel():
    from repro.experiments.jnf_toy import run_jnf_toy
    from tests.test_jnf_toy import tiny

    fig = plotting.plot_jnf_toy_posteriors(run_jnf_toy(tiny()))
    titles = [ax.get_title() for ax in fig.axes]
    assert any("(b)" in t for t in titles) and any("(d)" in t for t in titles)
    plt.close(fig)
