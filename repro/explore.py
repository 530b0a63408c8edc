"""Explorers: one interactive view per notebook, built from a figure's result, never retraining.

An explorer is a plain function ``update(**choice) -> matplotlib.figure.Figure`` and the choices
it takes (:class:`Choice`). :func:`show` wires them to ipywidgets in a live JupyterLab; in a
headless run (papermill, nbval: ``REPRO_HEADLESS`` is set by the runner and the notebook tests)
it draws the default view once and displays it as a static PNG, so the saved notebook shows an
image instead of a frozen or empty widget, and nbval has no widget state to compare.

The update functions live beside each paper's plots (``repro.papers.<paper>.plot``); a unit test
calls them with two choices and checks that the view changes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Choice", "show", "defaults", "render_png", "headless"]

HEADLESS_ENV = "REPRO_HEADLESS"


@dataclass(frozen=True)
class Choice:
    """One control of an explorer.

    Args:
        label: the text beside the control.
        options: the values offered (a dropdown), or ``None`` for a slider over
            ``range(low, high + 1, step)``.
        default: the value of the static view (default: the first option, or ``low``).
        low, high, step: the slider's integer range (when ``options`` is ``None``).
        names: display names of some options (default: ``str`` of the option).
    """

    label: str
    options: Sequence[Any] | None = None
    default: Any = None
    low: int = 0
    high: int = 0
    step: int = 1
    names: Mapping[Any, str] = field(default_factory=dict)

    def value(self) -> Any:
        """The value of the static view."""
        if self.default is not None:
            return self.default
        if self.options is not None:
            if not self.options:
                raise ValueError(f"explorer control {self.label!r} has no options")
            return self.options[0]
        return self.low

    def widget(self) -> Any:
        """An ipywidgets Dropdown (options) or IntSlider (a range) at the default."""
        import ipywidgets as widgets

        if self.options is not None:
            pairs = [(self.names.get(o, str(o)), o) for o in self.options]
            return widgets.Dropdown(options=pairs, value=self.value(), description=self.label)
        return widgets.IntSlider(
            value=self.value(), min=self.low, max=self.high, step=self.step,
            description=self.label, continuous_update=False,
        )  # fmt: skip


def headless() -> bool:
    """True in a run without a front end (the runner and the notebook tests set the variable)."""
    return bool(os.environ.get(HEADLESS_ENV))


def defaults(choices: Mapping[str, Choice]) -> dict[str, Any]:
    """The choice of the static view: every control at its default."""
    return {name: c.value() for name, c in choices.items()}


def render_png(fig: Any, dpi: int = 80) -> bytes:
    """A matplotlib figure as PNG bytes (and closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def show(
    update: Callable[..., Any], choices: Mapping[str, Choice], *, live: bool | None = None
) -> Any:
    """Display an explorer: widgets in a live front end, the default view as a PNG headless.

    Args:
        update: ``update(**choice)`` returns a matplotlib figure for one choice.
        choices: the controls, by the keyword of ``update`` they set.
        live: force widgets (True) or the static image (False); default: widgets unless
            :func:`headless`.

    Returns:
        The widget box (live) or the PNG bytes of the static view.
    """
    from IPython.display import Image, display

    live = (not headless()) if live is None else live
    if not live:
        png = render_png(update(**defaults(choices)))
        display(Image(data=png))
        return png
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    controls = {name: c.widget() for name, c in choices.items()}
    out = widgets.Output()

    def redraw(_change: Any = None) -> None:
        with out:
            out.clear_output(wait=True)
            fig = update(**{name: w.value for name, w in controls.items()})
            display(fig)
            plt.close(fig)

    for w in controls.values():
        w.observe(redraw, names="value")
    box = widgets.VBox([widgets.HBox(list(controls.values())), out])
    redraw()
    display(box)
    return box
