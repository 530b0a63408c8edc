"""The conditional-samples explorer of the PolyMNIST benchmark (jnf_coherence_fid, coord)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from repro import explore  # noqa: E402
from repro.papers.coord import plot as coord_plot  # noqa: E402
from repro.papers.jnf import coherence_fid, plot, settings  # noqa: E402

MODELS = ("MoPoE", "JNF")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REPRO_CACHE", str(cache))
        mp.setenv("REPRO_DATA", str(cache / "data"))  # no real data: the stand-in
        cfg = settings.get(
            "coherence_fid", "quick", device="cpu", threads=1, smoke=True,
            executor="sequential", models=MODELS,
        )  # fmt: skip
        yield coherence_fid.run(cfg)


def _images(fig):
    return [im.get_array().copy() for ax in fig.axes for im in ax.get_images()]


def _texts(fig):
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")
def test_choices_cover_the_models_subsets_and_tuples(result):
    update, choices = plot.conditional_explorer(result)
    assert choices["model"].options == list(MODELS)
    assert choices["seed"].options == [0]
    subsets = choices["inputs"].options
    assert len(subsets) == 30 and subsets[0] == "m0" and subsets[-1] == "m1,m2,m3,m4"
    assert (choices["index"].low, choices["index"].high) == (0, 19)
    assert explore.defaults(choices) == {"model": "MoPoE", "seed": 0, "inputs": "m0", "index": 0}


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")
def test_the_view_changes_with_the_choice_and_is_reproducible(result):
    update, choices = plot.conditional_explorer(result)
    first = update(**explore.defaults(choices))
    images = _images(first)
    assert len(images) == 5  # the input and four samples
    titles = [ax.get_title() for ax in first.axes[1:]]
    assert titles[0] == "m0 (input)" and all(t.split(": ")[1].isdigit() for t in titles[1:])
    bars = first.axes[0]
    assert len(bars.patches) == 4  # coherence from m0 to each target
    again = _images(update(**explore.defaults(choices)))
    assert all((a == b).all() for a, b in zip(images, again, strict=True))  # a fixed generator
    other = update(model="JNF", seed=0, inputs="m0,m2,m3", index=3)
    assert [ax.get_title() for ax in other.axes[1:]][2] == "m2 (input)"
    assert len(other.axes[0].patches) == 2
    assert any((a != b).any() for a, b in zip(images, _images(other), strict=True))
    png = explore.render_png(update(inputs="m1,m2"))
    assert png != explore.render_png(update(**explore.defaults(choices)))
    plt.close("all")


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")
def test_the_coord_figure_wraps_the_same_explorer(result):
    update, choices = coord_plot.conditional_explorer(result)
    assert set(choices) == {"model", "seed", "inputs", "index"}
    assert len(_images(update(model="JNF", inputs="m4"))) == 5
    plt.close("all")


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")
def test_a_model_or_classifier_missing_from_the_cache_is_said_in_text(
    result, tmp_path, monkeypatch
):
    update, _ = plot.conditional_explorer(result)
    coherence_fid.model_path(result.cfg, "JNF", 0).unlink()
    fig = update(model="JNF", inputs="m0,m1")
    assert not _images(fig) and "no trained JNF seed 0 in the cache" in _texts(fig)
    assert len(fig.axes[0].patches) == 3  # the run's coherence is still shown
    assert "no result for JNF seed 7" in _texts(update(model="JNF", seed=7))
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))  # an empty cache: nothing at all
    update, _ = plot.conditional_explorer(result)
    text = _texts(update())
    assert "no trained MoPoE seed 0" in text and "no digit classifiers" in text
    plt.close("all")
