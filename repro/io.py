"""Atomic writes: a file is either the old version or the complete new one, never half of it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["atomic_write", "atomic_write_text", "atomic_torch_save", "atomic_write_set"]


def _write_temp(path: Path, write: Callable[[IO[bytes]], Any]) -> str:
    """Fill a temporary file beside ``path`` (synced, normal permissions); return its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write ``path`` through a temporary file in the same folder, then rename it into place.

    Args:
        path: destination; its folder is created if needed.
        write: called with a binary file object to fill.

    Returns:
        The destination path.
    """
    path = Path(path)
    tmp = _write_temp(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_set(files: Mapping[str | Path, bytes]) -> list[Path]:
    """Write several files as a set: afterwards all are new, or (on any error) all are as before.

    Every file is first written to a temporary file beside its destination; only when all are
    written are they renamed into place, with the previous versions kept aside until every
    rename succeeded (and put back if one failed).

    Args:
        files: destination path -> content.

    Returns:
        The destination paths.
    """
    paths = {Path(p): data for p, data in files.items()}
    temps: dict[Path, str] = {}
    try:
        for path, data in paths.items():
            temps[path] = _write_temp(path, lambda handle, data=data: handle.write(data))
    except BaseException:
        for tmp in temps.values():
            Path(tmp).unlink(missing_ok=True)
        raise
    backups: dict[Path, Path | None] = {}
    try:
        for path, tmp in temps.items():
            backup = None
            if path.exists():
                backup = path.with_name(f".{path.name}.{os.getpid()}.previous")
                os.replace(path, backup)
            backups[path] = backup
            os.replace(tmp, path)
    except BaseException:
        for path, backup in backups.items():  # put the previous set back
            if backup is not None:
                os.replace(backup, path)
            elif path.exists() and not Path(temps[path]).exists():
                path.unlink()
        for tmp in temps.values():
            Path(tmp).unlink(missing_ok=True)
        raise
    for backup in backups.values():
        if backup is not None:
            backup.unlink(missing_ok=True)
    return list(paths)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 text to ``path``."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """Atomically ``torch.save`` ``obj`` to ``path`` (checkpoints)."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))
