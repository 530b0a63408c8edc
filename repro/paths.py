"""Where the repository, figures, data and caches live.

``REPRO_ROOT``, ``REPRO_DATA`` and ``REPRO_CACHE`` override the defaults. The repository root
is found by walking up from this file (an editable install) and then from the working
directory to the first ``pyproject.toml`` that declares the ``repro`` project.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "figures_dir", "data_root", "cache_dir", "runs_dir", "notebooks_dir"]


def _is_repo_root(path: Path) -> bool:
    pyproject = path / "pyproject.toml"
    if not pyproject.is_file():
        return False
    return 'name = "repro"' in pyproject.read_text(encoding="utf-8")


def repo_root() -> Path:
    """Return the root of the ``repro`` checkout.

    Returns:
        The folder holding ``pyproject.toml``.

    Raises:
        FileNotFoundError: when no root can be found; the message says how to set one.
    """
    env = os.environ.get("REPRO_ROOT")
    if env:
        root = Path(env).expanduser().resolve()
        if not _is_repo_root(root):
            raise FileNotFoundError(
                f"REPRO_ROOT={env!r} does not contain the repro pyproject.toml; "
                "point it at the repository checkout or unset it."
            )
        return root
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if _is_repo_root(candidate):
                return candidate
    raise FileNotFoundError(
        "Could not locate the repro checkout (no pyproject.toml naming 'repro' above "
        f"{Path(__file__).resolve().parent} or {Path.cwd()}). Install with `pip install -e .` "
        "from the checkout, run from inside it, or set REPRO_ROOT."
    )


def figures_dir(profile: str) -> Path:
    """Return ``figures/<profile>/`` under the repository root (not created here).

    Args:
        profile: ``"quick"`` or ``"full"``.

    Returns:
        The folder for that profile's figures.
    """
    return repo_root() / "figures" / profile


def notebooks_dir() -> Path:
    """Return the folder of the committed notebooks."""
    return repo_root() / "notebooks"


def runs_dir(profile: str) -> Path:
    """Return ``runs/<profile>/``, where the batch runner writes executed notebooks."""
    return repo_root() / "runs" / profile


def data_root() -> Path:
    """Return the data root: ``$REPRO_DATA`` if set, else ``<repo>/data``.

    Real datasets (MNIST, PolyMNIST, the rat recordings, ...) are looked up below it.
    """
    env = os.environ.get("REPRO_DATA")
    return Path(env).expanduser() if env else repo_root() / "data"


def cache_dir() -> Path:
    """Return the cache folder: ``$REPRO_CACHE`` if set, else ``<repo>/cache``."""
    env = os.environ.get("REPRO_CACHE")
    return Path(env).expanduser() if env else repo_root() / "cache"
