"""The explorer of coord_bound_hierarchy: exact terms at one alpha, a model's tuples."""

import dataclasses

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from repro import explore  # noqa: E402
from repro.papers.coord import bound_hierarchy, plot, settings  # noqa: E402

MODELS = ("MVTCAE", "JMVAE")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REPRO_CACHE", str(cache))
        mp.setenv("REPRO_DATA", str(cache / "data"))  # no real data: the stand-in
        cfg = settings.get(
            "bound_hierarchy", "quick", device="cpu", threads=1, smoke=True, executor="sequential"
        )
        cfg = dataclasses.replace(cfg, trained=dataclasses.replace(cfg.trained, models=MODELS))
        yield bound_hierarchy.run(cfg)


def _bars(ax):  # the top of each bar
    return [round(p.get_y() + p.get_height(), 9) for p in ax.patches]


def _heights(ax):
    return [p.get_height() for p in ax.patches]


def _points(ax):
    return [c.get_offsets().copy() for c in ax.collections]


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")
def test_choices_and_the_default_view(result):
    update, choices = plot.bound_explorer(result)
    assert choices["family"].options == ["exact", "perturbed", "poe"]
    assert choices["alpha"].value() == 0.5 and len(choices["alpha"].options) == 11
    assert choices["model"].options == list(MODELS)
    fig = update(**explore.defaults(choices))
    values, gaps, tuples = fig.axes[:3]
    exact = result.metrics["exact"]["exact"]  # the sidecar's numbers at alpha = 0.5
    assert _bars(values)[:2] == [round(exact["log_evidence"], 9), round(exact["elbo"], 9)]
    assert _bars(gaps)[1] == pytest.approx(exact["mvtcae_gap"], abs=1e-9)
    assert _bars(gaps)[3] == pytest.approx(exact["jmvae_gap"], abs=1e-9)  # slack on top
    assert _heights(gaps)[3] == pytest.approx(exact["jmvae_slack"], abs=1e-9)
    n = len(result.details["per_seed"]["MVTCAE"][0]["objective"])
    assert _points(tuples)[0].shape == (n, 2)
    plt.close("all")


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")
def test_the_view_changes_with_the_choice(result):
    update, choices = plot.bound_explorer(result)
    default = update(**explore.defaults(choices))
    other = update(family="perturbed", alpha=1.0, model="JMVAE")
    assert _bars(default.axes[0]) != _bars(other.axes[0])
    assert _bars(default.axes[1]) != _bars(other.axes[1])
    assert "perturbed q, alpha = 1.00" in other.axes[0].get_title()
    assert not all(
        (a == b).all()
        for a, b in zip(_points(default.axes[2]), _points(other.axes[2]), strict=True)
    )
    slack = result.exact["poe"]["jmvae_slack"]
    at_zero = update(family="poe", alpha=0.0)
    assert float(slack[0]) == 0 and _heights(at_zero.axes[1])[3] == 0  # no slack at alpha = 0
    png = explore.render_png(update(alpha=0.2))
    assert png != explore.render_png(update(**explore.defaults(choices)))
    plt.close("all")


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")
def test_a_model_without_numbers_is_said_in_text(result):
    details = dict(result.details, per_seed={"MVTCAE": result.details["per_seed"]["MVTCAE"]})
    trimmed = dataclasses.replace(result, details=details)
    update, _ = plot.bound_explorer(trimmed)
    fig = update(model="JMVAE")
    assert "no trained numbers of JMVAE" in " ".join(t.get_text() for t in fig.axes[2].texts)
    assert len(_bars(fig.axes[0])) == 6  # the exact panels are still drawn
    with pytest.raises(ValueError, match="family must be one of"):
        update(family="gaussian")
    plt.close("all")
