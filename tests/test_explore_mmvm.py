"""The explorers of mmvm_latents and mmvm_beta_tradeoff: filters and grid points, no retraining."""

import dataclasses

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from repro import explore  # noqa: E402
from repro.data.neural import RATS  # noqa: E402
from repro.papers.mmvm import latents, plot, settings, tradeoff  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")  # the simulator


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.setenv("REPRO_DATA", str(tmp_path_factory.mktemp("data")))  # no recordings
        yield patch


@pytest.fixture(scope="module")
def latents_result(env):
    cfg = settings.get(
        "latents", "quick", threads=1, smoke=True, executor="sequential",
        methods=("independent", "MMVM"),
    )  # fmt: skip
    return latents.run(cfg)


@pytest.fixture(scope="module")
def tradeoff_result(env):
    cfg = settings.get(
        "tradeoff", "quick", threads=1, smoke=True, executor="sequential",
        methods=("AVG", "MMVM"), betas=(1e-4, 1e-2), n_seeds=2,
    )  # fmt: skip
    return tradeoff.run(cfg)


def _points(fig, ax_index=0):
    """Every scatter's offsets and face colours of one axes (the view's data)."""
    cols = fig.axes[ax_index].collections
    return [(np.asarray(c.get_offsets()), np.asarray(c.get_facecolors())) for c in cols]


def _same(a, b):
    return len(a) == len(b) and all(
        x.shape == y.shape and np.allclose(x, y) and u.shape == v.shape and np.allclose(u, v)
        for (x, u), (y, v) in zip(a, b, strict=True)
    )


def test_latents_explorer_filters_change_the_view(latents_result):
    update, choices = plot.latents_explorer(latents_result)
    assert set(choices) == {"method", "rat", "odor"}
    assert choices["method"].value() == "MMVM" and choices["rat"].options[1:] == list(RATS)
    base = update(**explore.defaults(choices))
    assert "all rats" in base.axes[0].get_title()
    one_rat = update(method="MMVM", rat=RATS[0], odor=plot.ALL)
    odor = choices["odor"].options[1]
    one_odor = update(method="MMVM", rat=plot.ALL, odor=odor)
    other = update(method="independent", rat=plot.ALL, odor=plot.ALL)
    views = [_points(f) for f in (base, one_rat, one_odor, other)]
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            assert not _same(views[i], views[j]), (i, j)
    n = len(latents_result.label)
    assert f"({n} sub-windows)" in one_rat.axes[0].get_title()
    shown = int((latents_result.label == odor).sum()) * len(RATS)
    assert f"({shown} sub-windows)" in one_odor.axes[0].get_title()
    assert explore.render_png(base) != explore.render_png(other)
    assert explore.show(update, choices, live=False)[:4] == b"\x89PNG"


def test_tradeoff_result_keeps_the_first_seeds_latents_only(tradeoff_result):
    lat = tradeoff_result.latents
    assert set(lat) == {"AVG", "MMVM"} and set(lat["MMVM"]) == {"0.0001", "0.01"}
    n = len(tradeoff_result.latent_label)
    assert 0 < n <= tradeoff.EXPLORE_POINTS
    assert all(lat["AVG"]["0.01"][r].shape == (n, 2) for r in RATS)
    assert all("means" not in r for r in tradeoff_result.runs)  # the records stay scalar
    assert all("means" not in r for r in tradeoff_result.details["runs"])


def test_tradeoff_explorer_marks_the_chosen_point_and_shows_its_latents(tradeoff_result):
    update, choices = plot.tradeoff_explorer(tradeoff_result)
    assert choices["method"].options == ["AVG", "MMVM"] and choices["beta"].options == [
        "0.0001",
        "0.01",
    ]
    default = update(**explore.defaults(choices))
    assert default.axes[0].get_title().startswith("MMVM, beta")
    a, b = update(method="MMVM", beta="0.0001"), update(method="AVG", beta="0.01")
    assert a.axes[0].get_title() != b.axes[0].get_title()
    assert not _same(_points(a, 2), _points(b, 2))  # another model's latents
    assert explore.render_png(a) != explore.render_png(b)
    missing = update(method="AVG", beta="0.5")
    assert "was not run" in missing.axes[2].texts[0].get_text()
    bare = dataclasses.replace(tradeoff_result, latents={}, latent_label=None)
    fig = plot.tradeoff_explorer(bare)[0](method="MMVM", beta="0.01")
    assert "keeps no latents" in fig.axes[2].texts[0].get_text()
    assert explore.show(update, choices, live=False)[:4] == b"\x89PNG"
