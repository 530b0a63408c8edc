"""The explorer plumbing: static PNG headless, widgets that redraw when a control moves."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from repro import explore  # noqa: E402


def _update(k=0, name="a"):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot(range(k + 2))
    ax.set_title(f"{name}{k}")
    return fig


CHOICES = {
    "k": explore.Choice("k", low=0, high=5),
    "name": explore.Choice("name", options=["a", "b"], names={"a": "first"}),
}


def test_defaults_take_the_first_option_or_the_slider_low():
    assert explore.defaults(CHOICES) == {"k": 0, "name": "a"}
    assert explore.Choice("x", options=[3, 4], default=4).value() == 4
    with pytest.raises(ValueError, match="no options"):
        explore.Choice("x", options=[]).value()


def test_headless_shows_the_default_view_as_a_png(monkeypatch):
    monkeypatch.setenv(explore.HEADLESS_ENV, "1")
    png = explore.show(_update, CHOICES)
    assert isinstance(png, bytes) and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png != explore.render_png(_update(k=3))  # the static view is the default one


def test_live_widgets_redraw_when_a_control_moves(monkeypatch):
    pytest.importorskip("ipywidgets")
    seen = []

    def update(**choice):
        seen.append(choice)
        return _update(**choice)

    box = explore.show(update, CHOICES, live=True)
    controls = box.children[0].children
    assert [type(c).__name__ for c in controls] == ["IntSlider", "Dropdown"]
    assert controls[1].options == (("first", "a"), ("b", "b"))
    controls[0].value = 4
    controls[1].value = "b"
    assert seen == [{"k": 0, "name": "a"}, {"k": 4, "name": "a"}, {"k": 4, "name": "b"}]
