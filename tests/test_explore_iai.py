"""The explorer of iai_elbo_iterations: a slider over the refinement iterate, from the result."""

import dataclasses

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from repro import explore  # noqa: E402
from repro.config import TrainConfig  # noqa: E402
from repro.papers.iai import elbo_iterations as ei  # noqa: E402
from repro.papers.iai import plot, settings  # noqa: E402
from repro.papers.iai.settings import MSTDataConfig  # noqa: E402


def tiny():
    """One seed of a small MLP model on a few hundred stand-in tuples, one epoch per stage."""
    quiet = {"restore_best": False, "progress": False}
    return settings.get(
        "elbo_iterations", "quick", data=MSTDataConfig(n_train=128, n_test=64, n_images=300),
        n_seeds=1, latent_dim=4, hidden=16, refiner_hidden=(16,), T_train=(0, 1, 2), T_eval=4,
        K_eval=2, source=TrainConfig(epochs=1, batch_size=64, **quiet),
        refine=TrainConfig(epochs=1, batch_size=64, **quiet), clf_epochs=1, probe_train=50,
        n_generations=3, executor="sequential",
    )  # fmt: skip


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.setenv("REPRO_DATA", str(tmp_path_factory.mktemp("data")))  # the stand-in
        return ei.run(tiny())


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")
def test_result_keeps_the_generations_of_every_iterate(result):
    it = result.iterates
    assert sorted(k for k in it if k != "input") == [1, 2]  # the T = 0 refiner is never trained
    assert it["input"]["svhn"].shape == (3, 3, 32, 32) and len(it["input"]["text"]) == 3
    for T in (1, 2):
        assert it[T]["mnist"].shape == (5, 3, 1, 28, 28) and it[T]["svhn"].shape == (
            5,
            3,
            3,
            32,
            32,
        )
        assert len(it[T]["text"]) == 5 and all(len(w) == 3 for w in it[T]["text"])
    # t = 0 is the source PoE whatever the refiner: the same decoded images
    assert (it[1]["svhn"][0] == it[2]["svhn"][0]).all()


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")
def test_the_view_changes_with_t_and_the_default_works(result):
    update, choices = plot.elbo_explorer(result)
    assert choices["t"].high == 4 and choices["T"].options == [1, 2]
    default = update(**explore.defaults(choices))
    assert default.axes[0].get_title().startswith("t=2")
    first, last = update(t=0, T=2), update(t=4, T=2)
    assert (
        first.axes[0].lines[-1].get_xdata()[0] == 0 and last.axes[0].lines[-1].get_xdata()[0] == 4
    )
    images = [ax.images[0].get_array() for fig in (first, last) for ax in fig.axes if ax.images]
    assert len(images) == 8 and (images[2] != images[6]).any()  # decoded MNIST at t=0 vs t=4
    assert explore.render_png(first) != explore.render_png(last)
    assert explore.show(update, choices, live=False)[:4] == b"\x89PNG"


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")
def test_a_result_without_iterates_still_shows_the_curve_and_says_so(result):
    update, choices = plot.elbo_explorer(dataclasses.replace(result, iterates={}))
    fig = update(**explore.defaults(choices))
    assert fig.axes[0].lines and "no generations per iterate" in fig.axes[1].texts[0].get_text()
