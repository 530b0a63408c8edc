"""Atomic writes: a file is either the old version or the complete new one, never half of it.

A write that fails because the disk is full (``ENOSPC``/``EDQUOT``, or torch's
``[enforce fail at inline_container.cc] unexpected pos`` from ``torch.save``) raises an
``OSError`` (errno ``ENOSPC``) naming the destination, the free space of its file system and
the fix; the temporary file is removed and the previous file is left as it was.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "atomic_torch_save",
    "atomic_write_set",
    "is_disk_full",
    "describe_free_space",
    "ensure_writable",
]

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# what torch.save's zip writer raises when a write comes up short
_TORCH_SHORT_WRITE = ("unexpected pos", "enforce fail", "file write failed")


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or an exception it was raised from) reports a full disk or quota.

    Args:
        err: the exception raised by a write.

    Returns:
        ``True`` for ``OSError`` with errno ``ENOSPC``, ``EDQUOT`` or ``EFBIG``, and for the
        ``RuntimeError`` of ``torch.save`` on a short write (``unexpected pos``).
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        if isinstance(current, RuntimeError) and any(m in str(current) for m in _TORCH_SHORT_WRITE):
            return True
        current = current.__cause__ or current.__context__
    return False


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def describe_free_space(path: str | Path) -> str:
    """``"<free> free of <total> on the file system of <folder>"`` for ``path``'s folder.

    Args:
        path: a file or folder; the nearest existing folder above it is measured.

    Returns:
        A short human-readable sentence fragment (``"free space unknown"`` if it cannot be
        measured).
    """
    folder = Path(path)
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return f"free space unknown on the file system of {folder}"
    return f"{_gib(usage.free)} free of {_gib(usage.total)} on the file system of {folder}"


def ensure_writable(folder: str | Path, stage: str, fix: str) -> Path:
    """Create ``folder`` if needed and check that it takes a file (write and delete a probe).

    Args:
        folder: the output folder.
        stage: when the check runs, for the message (e.g. ``"checked before training"``).
        fix: the advice that ends the message.

    Returns:
        The folder.

    Raises:
        PermissionError: when the folder or a parent cannot be created or written.
        OSError: for other failures (read-only file system, a file in the way, a full disk).
            Both name the folder, ``stage`` and ``fix`` and keep the original errno.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-") as probe:
            probe.write(b"probe")
            probe.flush()
    except OSError as err:
        raise type(err)(
            err.errno,
            f"the output folder {folder} is not writable ({err.strerror or err}); {stage}. "
            f"Fix: {fix}",
        ) from err
    return folder


def _disk_full(
    path: Path, err: BaseException, what: str | None, partial: Path | None = None
) -> OSError:
    """The error of a write that ran out of space (measured while the partial file exists)."""
    target = f"{what} ({path})" if what else str(path)
    try:
        written = f"stopped after {_gib(partial.stat().st_size)}; " if partial else ""
    except OSError:
        written = ""
    return OSError(
        errno.ENOSPC,
        f"writing {target} failed: the disk is full ({written}"
        f"{describe_free_space(path.parent)}; the writer said: {err}). The previous "
        f"{path.name} is unchanged and the partial temporary "
        "file was removed. Fix: free space on that disk, or write elsewhere (REPRO_CACHE moves "
        "checkpoints and caches to another disk, e.g. REPRO_CACHE=/scratch/repro-cache).",
    )


def _write_temp(path: Path, write: Callable[[IO[bytes]], Any], what: str | None = None) -> str:
    """Fill a temporary file beside ``path`` (synced, normal permissions); return its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        if is_disk_full(err):
            raise _disk_full(path, err, what) from err
        raise
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
    except BaseException as err:
        full = _disk_full(path, err, what, Path(tmp)) if is_disk_full(err) else None
        Path(tmp).unlink(missing_ok=True)
        if full is not None:
            raise full from err
        raise
    return tmp


def atomic_write(
    path: str | Path, write: Callable[[IO[bytes]], Any], what: str | None = None
) -> Path:
    """Write ``path`` through a temporary file in the same folder, then rename it into place.

    Args:
        path: destination; its folder is created if needed.
        write: called with a binary file object to fill.
        what: what is written, for error messages (e.g. ``"stage 'joint': checkpoint after
            epoch 3"``).

    Returns:
        The destination path.

    Raises:
        OSError: with errno ``ENOSPC`` when the disk is full; the message names ``path``, the
            free space and the fix, and the previous file is left intact.
    """
    path = Path(path)
    tmp = _write_temp(path, write, what)
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

    Raises:
        OSError: with errno ``ENOSPC`` when the disk is full (see :func:`atomic_write`).
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


def atomic_write_text(path: str | Path, text: str, what: str | None = None) -> Path:
    """Atomically write UTF-8 text to ``path`` (``what``: see :func:`atomic_write`)."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")), what)


def atomic_torch_save(obj: Any, path: str | Path, what: str | None = None) -> Path:
    """Atomically ``torch.save`` ``obj`` to ``path`` (checkpoints).

    Args:
        obj: what to save.
        path: destination; its folder is created if needed.
        what: what is saved, for error messages (e.g. ``"stage 'joint': checkpoint after
            epoch 3"``).

    Returns:
        The destination path.

    Raises:
        OSError: with errno ``ENOSPC`` when the disk is full (torch's ``unexpected pos``);
            the message names ``path``, the free space of its disk and the fix (free space or
            set ``REPRO_CACHE`` to another disk); the previous file is left intact.
    """
    return atomic_write(path, lambda handle: torch.save(obj, handle), what)
