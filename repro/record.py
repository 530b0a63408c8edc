"""Saving a figure with its record: PNG + PDF + JSON sidecar, atomically and as a set.

``savefig(fig, result)`` takes everything from the result: its config (name, profile, device and
all settings), its metrics, details and run time. No field is picked out by hand in a notebook.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import platform
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure

from repro.config import PROFILES
from repro.io import atomic_write_set, ensure_writable
from repro.paths import figures_dir, repo_root, runs_dir

__all__ = ["sidecar", "savefig", "figure_folder", "check_writable"]

EXTENSIONS = ("png", "pdf", "json")


def _versions() -> dict[str, str]:
    import zuko

    import repro

    return {
        "python": platform.python_version(),
        "repro": repro.__version__,
        "torch": torch.__version__,
        "zuko": zuko.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "platform": platform.platform(),
    }


def _git() -> dict[str, Any]:
    try:
        root = repo_root()
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return {"sha": sha, "dirty": bool(dirty)}
    except (OSError, subprocess.CalledProcessError):
        return {"sha": None, "dirty": None}


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _identity(result: Any) -> tuple[str, str, Any]:
    cfg = getattr(result, "cfg", None)
    name, profile = getattr(cfg, "name", None), getattr(cfg, "profile", None)
    if cfg is None or not isinstance(name, str) or not isinstance(profile, str):
        raise ValueError(
            f"savefig needs a result with .cfg.name and .cfg.profile (a figure config), got "
            f"{type(result).__name__}; pass what the figure module's run(cfg) returned"
        )
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} in the config; choose one of {PROFILES}")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"figure name must be a plain file stem, got {name!r}")
    return name, profile, cfg


def _display(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it, else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(repo_root()))
    except (ValueError, FileNotFoundError):
        return str(path)


def figure_folder(cfg: Any, folder: str | Path | None = None) -> Path:
    """The folder :func:`savefig` writes a figure of ``cfg`` to (not created here).

    Args:
        cfg: a figure config (``profile``, optionally ``smoke``).
        folder: an explicit folder, returned as it is.

    Returns:
        ``figures/<profile>/``, or ``runs/<profile>-smoke/`` for a smoke run (which must never
        overwrite a real figure).

    Raises:
        ValueError: for a config without a known ``profile``.
    """
    if folder is not None:
        return Path(folder)
    profile = getattr(cfg, "profile", None)
    if profile not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r} in the config; choose one of {PROFILES} (got a "
            f"{type(cfg).__name__})"
        )
    return runs_dir(f"{profile}-smoke") if getattr(cfg, "smoke", False) else figures_dir(profile)


def check_writable(cfg: Any, folder: str | Path | None = None) -> Path:
    """Make sure the figure of ``cfg`` can be saved, before anything is computed.

    Figure modules call it first in ``run(cfg)``: the folder is resolved as :func:`savefig`
    resolves it, created if needed, and a probe file is written and deleted in it, so that a
    read-only or missing output folder fails in seconds instead of after the training.

    Args:
        cfg: a figure config (``profile``, optionally ``smoke``).
        folder: an explicit folder (default: :func:`figure_folder`).

    Returns:
        The folder, which exists and takes files.

    Raises:
        ValueError: for a config without a known ``profile``.
        PermissionError: when the folder (or a parent) cannot be created or written; the
            message names the folder, the stage ("before training") and the fix.
        OSError: for other failures (read-only file system, a file in the way, a full disk),
            with the same message.
    """
    target = figure_folder(cfg, folder)
    return ensure_writable(
        target,
        "checked before training (record.check_writable), so nothing has been computed yet",
        f"make the folder writable (e.g. chmod u+w {target}, or free space on its disk), or "
        "run from a checkout you can write to (REPRO_ROOT points at another one).",
    )


def _keep_unsaved(name: str, rendered: Mapping[str, bytes]) -> tuple[Path | None, str]:
    """Write ``rendered`` into a fresh temporary folder; return the JSON path (or why not)."""
    try:
        spare = Path(tempfile.mkdtemp(prefix=f"repro-unsaved-{name}-"))
        for ext, data in rendered.items():
            (spare / f"{name}.{ext}").write_bytes(data)
        return spare / f"{name}.json", ""
    except OSError as err:
        return None, str(err)


def sidecar(result: Any, files: Mapping[str, bytes] | None = None) -> dict[str, Any]:
    """The JSON record written next to a figure.

    Args:
        result: a figure module's result: ``.cfg`` (with ``name``, ``profile``, ``device``),
            ``.metrics``, and optionally ``.details`` and ``.seconds``.
        files: optional rendered files (extension -> bytes); their SHA-256 is recorded, so a
            figure and its sidecar can be checked to belong together.

    Returns:
        ``{"figure", "profile", "config", "metrics", "seconds", "versions", "git",
        "determinism", "details", "files"}``.
    """
    name, profile, cfg = _identity(result)
    device = getattr(cfg, "device", "cpu")
    gpu = device != "cpu" and torch.cuda.is_available()
    seconds = getattr(result, "seconds", None)
    return _jsonable(
        {
            "figure": name,
            "profile": profile,
            "config": cfg,
            "metrics": getattr(result, "metrics", {}),
            "seconds": None if seconds is None else round(seconds, 1),
            "versions": _versions(),
            "git": _git(),
            "determinism": (
                "GPU run: not bitwise reproducible (GPU reductions); compare with a tolerance"
                if gpu
                else "CPU run: bit-reproducible for the same seed, threads and machine"
            ),
            "details": getattr(result, "details", None) or {},
            "files": {ext: hashlib.sha256(data).hexdigest() for ext, data in (files or {}).items()},
        }
    )


def savefig(fig: Figure, result: Any, folder: str | Path | None = None) -> dict[str, Path]:
    """Write ``<name>.png``, ``.pdf`` and the ``.json`` sidecar to ``figures/<profile>/``.

    Name and profile come from ``result.cfg``; a smoke run (``cfg.smoke``) writes to the
    git-ignored ``runs/<profile>-smoke/`` instead. The three files are written as a set: when any
    write fails, the previous three stay together. The PDF carries no creation date, so it is
    byte-stable for the same figure; the sidecar records the SHA-256 of the PNG and PDF.

    Args:
        fig: the figure.
        result: what the figure module's ``run(cfg)`` returned.
        folder: override of the target folder (default ``figures/<profile>/``).

    Returns:
        ``{"png", "pdf", "json"}`` paths.

    Raises:
        ValueError: for a result without a figure config, an unknown profile or a bad name.
        FileNotFoundError: if the repository (hence ``figures/``) cannot be located.
        OSError: when writing fails (read-only folder, full disk): the previous three files
            stay together, the new ones (the sidecar JSON with every metric, the PNG, the PDF)
            are kept in a fresh temporary folder that the message names.
    """
    name, _, cfg = _identity(result)
    folder = figure_folder(cfg, folder)  # a smoke run must never overwrite a real figure
    rendered = {}
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, metadata=meta, bbox_inches="tight")
        rendered[ext] = buffer.getvalue()
    record = sidecar(result, rendered)
    rendered["json"] = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8")
    paths = {ext: folder / f"{name}.{ext}" for ext in EXTENSIONS}
    try:
        atomic_write_set({paths[ext]: rendered[ext] for ext in EXTENSIONS})
    except OSError as err:
        kept, why = _keep_unsaved(name, rendered)
        where = (
            f"the result is kept in {kept} (with the PNG and PDF beside it)"
            if kept is not None
            else f"a spare copy could not be written either ({why})"
        )
        raise type(err)(
            err.errno,
            f"saving figure {name!r} into {_display(folder)} failed after the run "
            f"({err.strerror or err}); the previous files there are unchanged, and {where}. "
            "The result is also still in memory. Fix: make the folder writable or free space "
            "on its disk, then call record.savefig(fig, result) again (or pass folder=... to "
            "write elsewhere); run figures call record.check_writable(cfg) first.",
        ) from err
    return paths
