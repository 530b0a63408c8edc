"""The explorer of jnf_toy_posteriors: a view per test square, from the result alone."""

import dataclasses

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from repro import explore  # noqa: E402
from repro.config import TrainConfig  # noqa: E402
from repro.papers.jnf import plot, settings, toy_posteriors  # noqa: E402
from repro.papers.jnf.settings import ToyDataConfig  # noqa: E402


def tiny():
    quiet = {"progress": False}
    return settings.get(
        "toy_posteriors", "quick", hidden=16, flow_hidden=(8,), dcca_hidden=(8,),
        dcca_encoder_hidden=(8,), grid_points=21, n_scatter=60, n_shown=4, executor="sequential",
        data=ToyDataConfig(n_train=128, n_val=32, n_test=96),
        joint_train=TrainConfig(epochs=1, **quiet), unimodal_train=TrainConfig(epochs=1, **quiet),
        dcca_train=TrainConfig(epochs=1, batch_size=128, optimizer="rmsprop", **quiet),
    )  # fmt: skip


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_CACHE", str(tmp_path_factory.mktemp("cache")))
        return toy_posteriors.run(tiny())


def _contours(fig):
    """The plotted density levels of every panel (the view's data)."""
    return [np.asarray(c.levels) for ax in fig.axes for c in ax.collections if hasattr(c, "levels")]


def test_result_keeps_small_explorer_panels(result):
    sq = result.squares
    n = 2 * toy_posteriors.EXPLORE_RADII
    assert sq["index"].shape == (n,) and sq["label"][:7].eq(1).all() and sq["label"][7:].eq(0).all()
    assert sq["images"].shape == (n, 1, 32, 32) and len(sq["grid"]) <= toy_posteriors.EXPLORE_GRID
    for name in toy_posteriors.VARIANTS:
        assert sq[name]["density"].shape == (n, len(sq["grid"]), len(sq["grid"]))
        assert sq[name]["circles"].shape == (n, 4, 1, 32, 32)
        assert sq[name]["realistic"].shape == (n, 4)
    # the reference square's density is the figure's, on the coarser grid
    ref = result.details["reference_index"]
    if ref in sq["index"].tolist():
        i = sq["index"].tolist().index(ref)
        step = max(1, -(-len(result.grid) // toy_posteriors.EXPLORE_GRID))
        torch.testing.assert_close(
            sq["flow"]["density"][i], result.density["flow"][::step, ::step], rtol=1e-4, atol=1e-6
        )


def test_the_view_changes_with_the_square_and_the_default_works(result):
    update, choices = plot.toy_explorer(result)
    assert set(choices) == {"label", "radius"}
    default = update(**explore.defaults(choices))
    assert len(default.axes) >= 7
    radii = choices["radius"].options
    small, large = update(label=0, radius=radii[0]), update(label=1, radius=radii[-1])
    a, b = _contours(small), _contours(large)
    assert len(a) == len(b) == 3 and any(not np.allclose(x, y) for x, y in zip(a, b, strict=True))
    assert small.axes[0].get_title() != large.axes[0].get_title()  # another test square
    assert explore.render_png(small) != explore.render_png(large)
    png = explore.show(update, choices, live=False)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_result_without_panels_says_so(result):
    update, choices = plot.toy_explorer(dataclasses.replace(result, squares={}))
    fig = update(**explore.defaults(choices))
    assert "no explorer panels" in fig.axes[0].texts[0].get_text()
