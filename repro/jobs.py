"""A figure's independent training units, run by one executor: in process or on a local pool.

A figure's run is a set of independent **units** (model x seed in ``jnf`` Fig. 4, method x beta
x seed in ``mmvm`` Fig. 3, ...): each builds its data and model from its frozen config, trains
and evaluates, and returns a small picklable result. :func:`run_units` runs them through an
executor with the :class:`concurrent.futures.Executor` interface and collects the results:

* ``"sequential"``: one after the other in this process;
* ``"local"``: a process pool sized to the cores (``spawn`` workers, one BLAS thread each);
* ``"auto"``: the local pool when there is more than one unit and more than one core on a CPU
  run, otherwise sequential (one GPU is not shared between processes);
* any object with ``submit(fn, *args) -> future`` (a cluster executor, for instance).

**Identical results.** A unit seeds every generator it uses itself and reads its data from its
config, so it computes the same numbers whichever process runs it and whatever ran before it
(``tests/test_jobs.py`` compares a pool and a sequential run bit for bit).

**Resuming.** Every finished unit's result is written to ``<cache>/units/<figure>/<key>.pt``,
the key hashing the unit's function, its arguments (configs by :func:`repro.runtime.run_identity`)
and the source code of the package: a killed or failed run, run again, loads the finished units
and computes only the others; a code change recomputes everything. Training checkpoints of the
stages (with ``TrainConfig.checkpoint``) resume a unit that was interrupted mid-way.

**Failures.** The first unit that raises stops the run: units not yet started are cancelled,
running workers are stopped, and :class:`UnitFailed` names the figure and the unit (the
original error is chained).

**Progress.** A bar over units in the notebook (none when headless); under the batch runner each
unit's start and end, and every epoch of its training, go to the runner's progress file
(:data:`repro.train.PROGRESS_ENV`), which the workers inherit.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from repro.io import atomic_torch_save
from repro.paths import cache_dir
from repro.runtime import run_identity

__all__ = [
    "EXECUTORS",
    "Unit",
    "UnitFailed",
    "code_version",
    "unit_key",
    "result_path",
    "load_cached",
    "resolve_executor",
    "run_units",
]

EXECUTORS = ("auto", "sequential", "local")
_RESULT_FORMAT = 1  # bump when the layout of a saved unit result changes


class UnitFailed(RuntimeError):
    """A unit of a figure raised; the message names the figure and the unit."""


@dataclass(frozen=True)
class Unit:
    """One independent piece of a figure's run.

    Attributes:
        name: a short label, unique within the figure, e.g. ``"MoPoE seed 0"`` (progress,
            errors, the key of the returned mapping).
        fn: a module-level function (workers import it by name); called as ``fn(*args)``.
        args: picklable arguments, typically the frozen config and the unit's coordinates.
        cost: relative run time, a scheduling hint only: a pool starts the costliest units
            first, so that a long one does not start last (not part of the cache key).
    """

    name: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    cost: float = 1.0


@dataclass
class _Progress:
    """Unit-level progress: a tqdm bar in a live notebook, records for the batch runner."""

    figure: str
    total: int
    quiet: bool = False
    done: int = 0
    bar: Any = field(default=None, repr=False)

    def _bar(self) -> Any:
        """The bar, created when the first unit starts (a run of cached units shows none)."""
        if self.bar is None:
            from tqdm.auto import tqdm

            from repro.train import headless

            self.bar = tqdm(
                total=self.total, initial=self.done, desc=f"{self.figure}: units", unit="unit",
                disable=headless() or self.quiet, leave=False,
            )  # fmt: skip
        return self.bar

    def started(self, unit: Unit) -> None:
        from repro.train import progress_record

        self._bar()
        if not self.quiet:
            progress_record(f"{self.figure} unit {unit.name}", "unit-start", self.done, self.total)

    def finished(self, unit: Unit, cached: bool) -> None:
        from repro.train import progress_record

        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(unit.name)
        kind = "unit-cached" if cached else "unit-done"
        if not self.quiet:
            progress_record(f"{self.figure} unit {unit.name}", kind, self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of the package's source files (every ``repro/**/*.py``), computed once.

    Returns:
        16 hex digits; any edit of the package's code changes it.
    """
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _identity(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {type(value).__name__: run_identity(value)}
    if isinstance(value, (list, tuple)):
        return [_identity(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _identity(v) for k, v in value.items()}
    return value


def unit_key(unit: Unit) -> str:
    """The cache key of a unit: its function, arguments (configs by run identity) and code.

    Args:
        unit: the unit.

    Returns:
        24 hex digits.
    """
    identity = {
        "fn": f"{unit.fn.__module__}.{unit.fn.__qualname__}",
        "args": _identity(unit.args),
        "code": code_version(),
        "format": _RESULT_FORMAT,
    }
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def result_path(figure: str, unit: Unit) -> Path:
    """Where a finished unit's result is kept: ``<cache>/units/<figure>/<key>.pt``."""
    return cache_dir() / "units" / figure / f"{unit_key(unit)}.pt"


def _load(path: Path) -> tuple[bool, Any]:
    """``(True, result)`` from a finished unit's file, ``(False, None)`` if absent or damaged."""
    if not path.is_file():
        return False, None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)  # our own pickles
    except Exception:  # a truncated or foreign file is a cache miss: the unit runs again
        return False, None
    if not isinstance(blob, dict) or blob.get("format") != _RESULT_FORMAT:
        return False, None
    return True, blob["result"]


def load_cached(figure: str, unit: Unit) -> tuple[bool, Any]:
    """A finished unit's cached result, without running it (for views over a finished run).

    Args:
        figure: the figure's name (its cache folder).
        unit: the unit.

    Returns:
        ``(True, result)``, or ``(False, None)`` when the unit has no usable cached result.
    """
    return _load(result_path(figure, unit))


def _execute(figure: str, unit: Unit, path: str | None, threads: int) -> Any:
    """Run one unit (in a worker or in this process) and keep its result."""
    if threads:
        torch.set_num_threads(threads)
    result = unit.fn(*unit.args)
    if path is not None:
        try:
            atomic_torch_save({"format": _RESULT_FORMAT, "result": result}, path)
        except OSError:  # an unwritable cache costs a re-run later, not this run's result
            pass
    return result


def _die_with_parent() -> None:
    """Ask Linux to stop this worker when its parent dies (a killed run leaves no workers).

    ``prctl(PR_SET_PDEATHSIG, SIGTERM)``; elsewhere nothing (the worker then ends when it asks
    its dead parent for the next unit).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request: stop now
        os._exit(1)


def _worker_init(threads: int, dtype: torch.dtype, deterministic: bool) -> None:
    """A worker starts in the parent's numerical state: threads, default dtype, determinism."""
    _die_with_parent()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    torch.set_default_dtype(dtype)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_executor(executor: str, n_units: int, device: str = "cpu") -> str:
    """Turn ``"auto"`` into ``"local"`` or ``"sequential"``; check the name.

    Args:
        executor: one of :data:`EXECUTORS`.
        n_units: units still to run.
        device: the run's device; a GPU run stays in this process.

    Returns:
        ``"local"`` or ``"sequential"``.

    Raises:
        ValueError: for an unknown executor name.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {list(EXECUTORS)}")
    if executor != "auto":
        return executor
    on_cpu = str(device) == "cpu" or (str(device) == "auto" and not torch.cuda.is_available())
    return "local" if on_cpu and n_units > 1 and cores() > 1 else "sequential"


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """Hide the ``__main__`` module's file from ``spawn`` while workers start.

    A spawned worker re-imports the parent's main script (running a script's top-level code
    again, which fails without an ``if __name__ == "__main__"`` guard). Units are functions of
    this package, never of ``__main__``, so workers need not import it.
    """
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if hasattr(main, k)}
    try:
        for key in saved:
            if key == "__spec__":
                main.__spec__ = None
            else:
                delattr(main, key)
        yield
    finally:
        for key, value in saved.items():
            setattr(main, key, value)


def _stop(pool: cf.Executor) -> None:
    """Cancel queued units and stop the workers of a process pool that is being abandoned."""
    pool.shutdown(wait=False, cancel_futures=True)
    processes = getattr(pool, "_processes", None) or {}  # private: no public way to stop them
    for process in list(processes.values()):
        if process.is_alive():
            process.terminate()


def run_units(
    figure: str,
    units: Sequence[Unit],
    executor: str | cf.Executor = "auto",
    workers: int = 0,
    device: str = "cpu",
    threads: int = 1,
    cache: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Run a figure's units and return their results by unit name, in the order given.

    Args:
        figure: the figure's name (cache folder, progress and error messages).
        units: the units; names must be unique.
        executor: ``"auto"``, ``"sequential"``, ``"local"`` or an executor object with
            ``submit`` (see the module docstring).
        workers: processes of the local pool (0: one per core, at most one per unit).
        device: the run's device (``"auto"`` picks sequential on a GPU host).
        threads: torch threads per unit (1 for the small models of the quick profiles).
        cache: load finished units from, and save new results to, ``<cache>/units``.
        progress: show the units' bar and report them to the runner (``False`` for a unit
            that collects other units' cached results, e.g. the classifiers it needs).

    Returns:
        ``{unit.name: result}``.

    Raises:
        ValueError: for duplicate unit names, an unknown executor or ``workers < 0``.
        UnitFailed: when a unit raises (the others are stopped).
    """
    names = [u.name for u in units]
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{figure}: unit names must be unique, repeated: {duplicates}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0: one per core), got {workers}")
    results: dict[str, Any] = {}
    paths: dict[str, str | None] = {}
    progress = _Progress(figure, len(units), quiet=not progress)
    todo = []
    try:
        for unit in units:
            path = result_path(figure, unit) if cache else None
            found, result = _load(path) if path is not None else (False, None)
            if found:
                results[unit.name] = result
                progress.finished(unit, cached=True)
            else:
                paths[unit.name] = None if path is None else str(path)
                todo.append(unit)
        if todo:
            _run(figure, todo, executor, workers, device, threads, paths, results, progress)
    finally:
        progress.close()
    return {name: results[name] for name in names}


def _run(
    figure: str,
    todo: list[Unit],
    executor: str | cf.Executor,
    workers: int,
    device: str,
    threads: int,
    paths: Mapping[str, str | None],
    results: dict[str, Any],
    progress: _Progress,
) -> None:
    kind = executor
    if isinstance(executor, str):
        kind = resolve_executor(executor, len(todo), device)
    if kind == "sequential":
        for unit in todo:
            progress.started(unit)
            try:
                results[unit.name] = _execute(figure, unit, paths[unit.name], threads)
            except Exception as err:
                raise UnitFailed(
                    f"{figure}: unit {unit.name!r} failed ({type(err).__name__}: {err}); the "
                    "units finished before it are kept and a new run resumes after them"
                ) from err
            progress.finished(unit, cached=False)
        return
    own = isinstance(kind, str)
    if own:
        n = min(workers or cores(), len(todo))
        pool: cf.Executor = cf.ProcessPoolExecutor(
            max_workers=n,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(
                threads,
                torch.get_default_dtype(),
                torch.are_deterministic_algorithms_enabled(),
            ),
        )
    else:
        pool = kind
    futures: dict[cf.Future, Unit] = {}
    try:
        with _main_hidden() if own else contextlib.nullcontext():  # workers start on submit
            for unit in sorted(todo, key=lambda u: -u.cost):  # longest first (stable)
                progress.started(unit)
                futures[pool.submit(_execute, figure, unit, paths[unit.name], threads)] = unit
        pending = set(futures)
        while pending:
            finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                unit = futures[future]
                err = future.exception()
                if err is not None:
                    raise UnitFailed(
                        f"{figure}: unit {unit.name!r} failed ({type(err).__name__}: {err}); "
                        "the other units were stopped; finished units are kept and a new run "
                        "resumes after them"
                    ) from err
                results[unit.name] = future.result()
                progress.finished(unit, cached=False)
    except BaseException:
        if own:
            _stop(pool)
        raise
    if own:
        pool.shutdown(wait=True)
