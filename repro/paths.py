"""Where the repository, figures, data and caches live.

``REPRO_ROOT``, ``REPRO_DATA`` and ``REPRO_CACHE`` override the defaults. The repository root
is found by walking up from this file (an editable install) and then from the working
directory to the first ``pyproject.toml`` that declares the ``repro`` project.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

__all__ = [
    "repo_root",
    "figures_dir",
    "data_root",
    "cache_dir",
    "runs_dir",
    "notebooks_dir",
    "DATASET_FOLDERS",
]

#: The folders the loaders look for below the data root (``repro.data``).
DATASET_FOLDERS = ("PolyMNIST", "TranslatedPolyMNIST", "MNIST", "SVHN", "rats")

_WARNED: set[str] = set()  # REPRO_DATA values already warned about in this process


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


def _data_problem(root: Path) -> str | None:
    """What makes ``root`` useless as a data root, or ``None`` when it is fine."""
    if not root.exists():
        return "does not exist"
    if not root.is_dir():
        return "is a file, not a folder (point it at the folder that holds the datasets)"
    try:
        if any((root / name).exists() for name in DATASET_FOLDERS):
            return None
    except OSError as err:
        return f"cannot be read ({err})"
    return f"is a folder holding none of the expected dataset folders {list(DATASET_FOLDERS)}"


def data_root() -> Path:
    """Return the data root: ``$REPRO_DATA`` if set, else ``<repo>/data``.

    Real datasets (MNIST, PolyMNIST, the rat recordings, ...) are looked up below it. When
    ``REPRO_DATA`` is set but names a missing path, a file, or a folder holding none of
    :data:`DATASET_FOLDERS`, a ``UserWarning`` says so (once per value and process): the
    loaders then fall back to their embedded stand-ins, which is right for quick runs but
    rarely what setting the variable meant. An absent ``<repo>/data`` is the normal quick
    case and gives no warning.

    Returns:
        The data root (not checked further, not created).
    """
    env = os.environ.get("REPRO_DATA")
    if not env:
        return repo_root() / "data"
    root = Path(env).expanduser()
    if env not in _WARNED:
        problem = _data_problem(root)
        if problem is not None:
            _WARNED.add(env)
            warnings.warn(
                f"REPRO_DATA={env!r} {problem}; the embedded stand-ins (and simulators) will be "
                "used instead of real data. Fix: point REPRO_DATA at the folder holding "
                f"{', '.join(DATASET_FOLDERS)}, or unset it.",
                UserWarning,
                stacklevel=2,
            )
    return root


def cache_dir() -> Path:
    """Return the cache folder: ``$REPRO_CACHE`` if set, else ``<repo>/cache``."""
    env = os.environ.get("REPRO_CACHE")
    return Path(env).expanduser() if env else repo_root() / "cache"
