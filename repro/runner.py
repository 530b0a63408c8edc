"""Batch runner: execute the figure notebooks with papermill.

Executed copies go to ``runs/<profile>/`` (git-ignored); the notebooks themselves write
``figures/<profile>/<name>.{png,pdf,json}``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from repro.config import PROFILES
from repro.io import atomic_write, atomic_write_text
from repro.paths import figures_dir, notebooks_dir, runs_dir
from repro.registry import FIGURES, Figure

__all__ = ["NotebookFailed", "run_figures", "clean_notebook", "refresh_notebooks"]


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""


def _failed_cell(exc: Exception) -> str:
    cell = getattr(exc, "exec_count", None)
    name = getattr(exc, "ename", type(exc).__name__)
    value = getattr(exc, "evalue", str(exc))
    where = f"cell [{cell}]" if cell is not None else "a cell"
    return f"{where} raised {name}: {value}"


def run_figures(
    names: Iterable[str] | None = None,
    profile: str = "quick",
    device: str = "auto",
    figures: Mapping[str, Figure] = FIGURES,
    progress: bool = True,
) -> dict[str, float]:
    """Execute figure notebooks in order, stopping at the first failure.

    Args:
        names: figures to run (default: all, in registry order).
        profile: ``"quick"`` or ``"full"``, injected as the ``PRESET`` parameter.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``, injected as ``DEVICE``.
        figures: the registry (tests pass their own).
        progress: show papermill's cell progress bar.

    Returns:
        Wall seconds per executed notebook.

    Raises:
        ValueError: for an unknown figure or profile (the message lists the valid names).
        NotebookFailed: when a notebook fails; earlier outputs stay in place.
    """
    import papermill

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(PROFILES)}")
    names = list(figures) if names is None else list(names)
    unknown = [n for n in names if n not in figures]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; choose from {sorted(figures)}")
    out_dir = runs_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for i, name in enumerate(names, 1):
        figure = figures[name]
        source = notebooks_dir() / figure.notebook
        target = out_dir / figure.notebook
        sys.stdout.write(f"[{i}/{len(names)}] {name} ({profile}, device={device}) ...\n")
        sys.stdout.flush()
        tic = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(source),
                str(target),
                parameters={"PRESET": profile, "DEVICE": device},
                kernel_name="python3",
                cwd=str(source.parent),
                progress_bar=progress,
            )
        except papermill.PapermillExecutionError as exc:
            raise NotebookFailed(
                f"{figure.notebook} failed: {_failed_cell(exc)} (executed copy: {target})"
            ) from exc
        seconds[name] = time.perf_counter() - tic
        sys.stdout.write(f"[{i}/{len(names)}] {name} done in {seconds[name]:.1f} s\n")
    return seconds


VOLATILE_OUTPUT = "application/vnd.jupyter.widget-view+json"


def clean_notebook(nb: Any) -> Any:
    """Strip what changes from run to run; keep outputs and execution counts.

    Removed: cell metadata other than tags, widget state and widget outputs (progress bars),
    papermill's metadata.

    Args:
        nb: an ``nbformat`` notebook (modified in place).

    Returns:
        The same notebook.
    """
    for key in ("widgets", "papermill"):
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        tags = cell.metadata.get("tags")
        cell.metadata = {"tags": tags} if tags else {}
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if VOLATILE_OUTPUT not in o.get("data", {})]
    return nb


def refresh_notebooks(
    names: Iterable[str] | None = None, figures: Mapping[str, Figure] = FIGURES
) -> dict[str, float]:
    """Re-execute committed notebooks in place with their saved (quick) parameters, then clean.

    This is how the committed outputs that nbval compares are produced: run it after changing
    a notebook or the code behind it, and commit the result. The quick figure is also copied to
    ``figures/readme/`` (committed, shown in the README; no other command writes there).

    Args:
        names: figures whose notebooks to refresh (default: all).
        figures: the registry.

    Returns:
        Wall seconds per notebook.

    Raises:
        ValueError: for an unknown figure.
        NotebookFailed: when a notebook fails (the committed file is left untouched).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    names = list(figures) if names is None else list(names)
    unknown = [n for n in names if n not in figures]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; choose from {sorted(figures)}")
    seconds = {}
    for name in names:
        path = notebooks_dir() / figures[name].notebook
        nb = nbformat.read(path, as_version=4)
        tic = time.perf_counter()
        sys.stdout.write(f"executing {path.name} in place ...\n")
        sys.stdout.flush()
        try:
            NotebookClient(
                nb,
                kernel_name="python3",
                timeout=1800,
                resources={"metadata": {"path": str(path.parent)}},
            ).execute()
        except CellExecutionError as exc:
            raise NotebookFailed(f"{path.name} failed: {exc}".splitlines()[0]) from exc
        seconds[name] = time.perf_counter() - tic
        atomic_write_text(path, nbformat.writes(clean_notebook(nb)) + "\n")
        figure = figures_dir("quick") / f"{name}.png"
        if figure.exists():  # the README's picture, in step with the committed outputs
            snapshot = figure.read_bytes()
            atomic_write(figures_dir("readme") / figure.name, lambda f, b=snapshot: f.write(b))
        sys.stdout.write(f"{path.name}: {seconds[name]:.1f} s\n")
    return seconds
