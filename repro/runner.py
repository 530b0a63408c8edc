"""Batch runner: execute the figure notebooks with papermill.

Executed copies go to ``runs/<profile>/`` (git-ignored); the notebooks themselves write
``figures/<profile>/<name>.{png,pdf,json}``.

**Progress.** Before a kernel starts, the runner sets :data:`repro.train.PROGRESS_ENV` to
``progress-<name>.jsonl`` in the run folder (below) and :data:`repro.train.HEADLESS_ENV`; the
kernel inherits the environment, :func:`repro.train.fit` appends one JSON line per epoch to that
file and draws no bar in the notebook, and a thread of the runner follows the file and shows
the training of every stage in the terminal (a bar per stage on a terminal, one line per update
otherwise). The file is removed when the notebook ends.

**Temporary files and kills.** Everything temporary of one run (progress files, the kernels' IPC
sockets and connection files: ``JUPYTER_RUNTIME_DIR`` points there too) lives in one folder,
``<tmp>/repro-run-<pid>.<start time>-<random>/``, removed at the end, also on SIGTERM and
SIGINT. A SIGKILLed runner cannot clean up after itself: every run first removes the run
folders (and partial notebooks, below) of runner processes that are no longer alive
(:func:`clean_stale_runs`). Papermill writes each executed notebook to
``.<name>.running-<pid>.<start time>.ipynb`` beside its target; only a notebook that completed
is renamed to ``runs/<profile>/<name>.ipynb``. A failed or interrupted one is kept as
``<name>.failed.ipynb`` and the previous complete copy stays in place.

**Kernel transport.** On POSIX systems the kernel talks to the runner over IPC sockets instead of
local TCP: ipykernel (>= 7) logs "Kernel is running over TCP without encryption" at every TCP
start, and IPC is the remedy that warning itself recommends. Nothing else is silenced.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from repro.config import PROFILES
from repro.io import atomic_write, atomic_write_text, ensure_writable
from repro.paths import figures_dir, notebooks_dir, runs_dir
from repro.registry import FIGURES, Figure
from repro.train import HEADLESS_ENV, PROGRESS_ENV

__all__ = [
    "NotebookFailed",
    "Interrupted",
    "run_figures",
    "has_profile",
    "run_folder",
    "clean_stale_runs",
    "clean_notebook",
    "refresh_notebooks",
    "follow_progress",
    "kernel_config",
]


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""


#: Device names the runner accepts (as :func:`repro.runtime.resolve_device`).
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _failed_cell(exc: Exception) -> str:
    cell = getattr(exc, "exec_count", None)
    name = getattr(exc, "ename", type(exc).__name__)
    value = getattr(exc, "evalue", str(exc))
    where = f"cell [{cell}]" if cell is not None else "a cell"
    return f"{where} raised {name}: {value}"


class Interrupted(KeyboardInterrupt):
    """The runner received SIGTERM or SIGINT; its temporary files have been removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


RUN_PREFIX = "repro-run-"
_TOKEN = re.compile(r"^(\d+)\.(\d+)$")  # <pid>.<start time in clock ticks, 0 if unknown>
_PARTIAL = re.compile(r"^\.(?P<stem>.+)\.running-(?P<token>\d+\.\d+)\.ipynb$")


def _start_time(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), else ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] == "Z":  # a zombie has finished
        return -1
    return int(fields[19])


def _owner_token() -> str:
    return f"{os.getpid()}.{_start_time(os.getpid()) or 0}"


def _owner_alive(token: str) -> bool:
    """Whether the process named by ``token`` still runs (unknown formats count as alive)."""
    match = _TOKEN.match(token)
    if match is None:
        return True
    pid, start = int(match.group(1)), int(match.group(2))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    now = _start_time(pid)
    if now == -1:
        return False
    return now is None or start == 0 or now == start  # a new start time: the pid was reused


def _kernels_of(folder: Path) -> list[int]:
    """Pids of the processes whose command line names a file in ``folder`` (its kernels).

    Kernels are started with ``-f <run folder>/<name>.json``; on systems without ``/proc``
    nothing is found.
    """
    needle = (str(folder).rstrip(os.sep) + os.sep).encode()
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in command and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


def _kill(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:  # gone already, or not ours
            continue


_ACTIVE: list[Path] = []  # run folders of this process, innermost last


def clean_stale_runs(out_dirs: Iterable[str | Path] = ()) -> list[Path]:
    """Remove what runner processes that are no longer alive left behind.

    A SIGKILLed runner cannot clean up: its run folder (``<tmp>/repro-run-<pid>...``, with
    progress files, IPC sockets and kernel connection files) and its partial notebooks
    (``.<name>.running-<pid>....ipynb`` under ``out_dirs``) stay. Those whose process is gone
    (or whose pid now belongs to a newer process) are removed, and a kernel still running from
    such a folder is killed (ipykernel normally exits by itself within a second of losing its
    parent); live runs are left alone.

    Args:
        out_dirs: output folders (``runs/<profile>/``) to search for partial notebooks.

    Returns:
        The removed paths.
    """
    removed = []
    temp = Path(tempfile.gettempdir())
    for folder in temp.glob(f"{RUN_PREFIX}*"):
        token = folder.name[len(RUN_PREFIX) :].rsplit("-", 1)[0]
        if folder.is_dir() and not _owner_alive(token):
            _kill(_kernels_of(folder))  # a kernel orphaned by a SIGKILL, if still there
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    for out_dir in out_dirs:
        for path in Path(out_dir).rglob(".*.running-*.ipynb"):
            match = _PARTIAL.match(path.name)
            if match and not _owner_alive(match.group("token")):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


@contextmanager
def run_folder(out_dirs: Iterable[str | Path] = ()) -> Iterator[Path]:
    """One temporary folder for everything temporary of a run, removed at the end.

    Stale run folders and partial notebooks of dead runners are removed first
    (:func:`clean_stale_runs`). ``JUPYTER_RUNTIME_DIR`` points at the folder for the block, so
    kernels' runtime files land there too. The folder's name carries the pid and start time of
    this process (``repro-run-<pid>.<start>-<random>``) and is short enough for IPC socket
    paths.

    Args:
        out_dirs: output folders to clean of stale partial notebooks.

    Yields:
        The folder.
    """
    clean_stale_runs(out_dirs)
    folder = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{_owner_token()}-"))
    _ACTIVE.append(folder)
    try:
        with _environment({"JUPYTER_RUNTIME_DIR": str(folder)}):
            yield folder
    finally:
        _ACTIVE.remove(folder)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _signals_raise() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into :class:`Interrupted`, so that cleanup code runs.

    The running kernels of this run are killed first: a busy kernel asked to shut down would
    print a traceback of its own while its sockets close.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        for folder in _ACTIVE:
            _kill(_kernels_of(folder))
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def kernel_config(folder: str | Path | None = None, name: str = "kernel") -> Iterator[Any]:
    """The traitlets config of a kernel the runner starts: IPC transport on POSIX.

    The IPC sockets (``<folder>/<name>-<n>``) and the kernel's connection file
    (``<folder>/<name>.json``) go to ``folder``, by default a fresh temporary folder removed at
    the end (the defaults would put the sockets in the notebook's folder and the connection
    file in Jupyter's runtime folder, where a killed run leaves them).

    Args:
        folder: where the sockets and the connection file go (the run folder).
        name: their name prefix, distinct per kernel of one run.

    Yields:
        A ``traitlets.config.Config`` for papermill's or nbclient's kernel manager (on Windows,
        where Jupyter kernels only speak TCP, only the connection file is set).
    """
    from traitlets.config import Config

    if folder is None:
        with tempfile.TemporaryDirectory(prefix="repro-kernel-") as tmp:  # short: socket paths
            with kernel_config(tmp, name) as config:
                yield config
        return
    config = Config()
    config.KernelManager.connection_file = str(Path(folder) / f"{name}.json")
    if os.name == "posix":
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(Path(folder) / name)
    yield config


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block (kernels started inside inherit them)."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _ProgressView:
    """Follows a JSON-lines progress file written by :func:`repro.train.fit` in a kernel.

    Several training stages may run at once (the units of a figure on a process pool): on a
    terminal each running stage has its own bar, removed when the stage ends and replaced by
    one line that sums it up; elsewhere, one line per update (at most one per stage every
    ``min_interval`` seconds, plus each stage's start and end). Units that start and finish
    (:func:`repro.train.progress_record`) are shown as lines with a ``done/total`` count.
    """

    def __init__(self, path: Path, stream: IO[str], min_interval: float) -> None:
        self.path, self.stream, self.min_interval = path, stream, min_interval
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.offset, self.tail = 0, b""
        self.bars: dict[str, Any] = {}
        self.last_line: dict[str, float] = {}
        self.first: dict[str, tuple[int, float]] = {}  # a stage's first epoch and train value

    def poll(self) -> None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:  # not written yet, or removed
            return
        self.offset += len(chunk)
        *lines, self.tail = (self.tail + chunk).split(b"\n")
        for line in lines:
            try:
                record = json.loads(line)
                self.show(record)
            except (ValueError, TypeError, KeyError):  # a torn or foreign line: skip it
                continue

    def show(self, record: dict[str, Any]) -> None:
        if "event" in record:
            self._show_event(record)
            return
        desc, epoch, epochs = str(record["desc"]), int(record["epoch"]), int(record["epochs"])
        starting = bool(record.get("start"))
        if self.tty:
            self._show_bar(desc, epoch, epochs, starting, record)
        else:
            self._show_line(desc, epoch, epochs, starting, record)

    def _write(self, text: str) -> None:
        from tqdm.std import tqdm

        tqdm.write(text, file=self.stream)  # clears the bars (and papermill's) first
        self.stream.flush()

    def _show_event(self, record: dict[str, Any]) -> None:
        event, desc = str(record["event"]), str(record["desc"])
        count = f"[{int(record['done'])}/{int(record['total'])}]"
        if event == "unit-start":
            self._write(f"  {desc}: started")
        elif event == "unit-cached":
            self._write(f"  {count} {desc}: finished earlier (its cached result is used)")
        elif event == "unit-done":
            self._write(f"  {count} {desc}: done")

    def _remember(self, desc: str, epoch: int, record: Mapping[str, Any]) -> None:
        """Keep a stage's first epoch with a train value (a new run of the stage starts over)."""
        first = self.first.get(desc)
        if record.get("train") is not None and (first is None or epoch <= first[0]):
            self.first[desc] = (epoch, float(record["train"]))

    def _summary(self, desc: str, epoch: int, epochs: int, record: Mapping[str, Any]) -> str:
        """The epoch line, and the train value's change since the stage's first epoch.

        A large likelihood constant can hide every change at the shown precision (the mmvm
        models print ``train -2119.0`` at every epoch), so the line says how far it moved.
        """
        text = _summary(epoch, epochs, record)
        first = self.first.get(desc)
        if record.get("train") is None or first is None or epoch <= first[0]:
            return text
        return f"{text}  [train {float(record['train']) - first[1]:+.4g} since epoch {first[0]}]"

    def _show_bar(
        self, desc: str, epoch: int, epochs: int, starting: bool, record: dict[str, Any]
    ) -> None:
        from tqdm.std import tqdm

        if not starting:
            self._remember(desc, epoch, record)
        bar = self.bars.get(desc)
        if bar is None or starting or bar.total != epochs or epoch < bar.n:
            if bar is not None:
                bar.close()
            bar = self.bars[desc] = tqdm(
                total=epochs,
                initial=epoch if starting else epoch - 1,
                desc=desc,
                unit="epoch",
                file=self.stream,
                leave=False,
                dynamic_ncols=True,
            )
        if epoch > bar.n:
            bar.set_postfix(_metrics(record), refresh=False)
            bar.update(epoch - bar.n)
            bar.refresh()  # one update per epoch: always shown
        if epoch >= epochs and not starting:  # the stage is over: one line instead of a bar
            bar.close()
            del self.bars[desc]
            self._write(f"    {desc}: {self._summary(desc, epoch, epochs, record)}")

    def _show_line(
        self, desc: str, epoch: int, epochs: int, starting: bool, record: dict[str, Any]
    ) -> None:
        now = time.monotonic()
        if not starting:
            self._remember(desc, epoch, record)
        if starting:
            text = f"resuming after epoch {epoch}/{epochs}" if epoch else f"{epochs} epoch(s)"
        elif epoch == epochs or now - self.last_line.get(desc, -1e9) >= self.min_interval:
            text = self._summary(desc, epoch, epochs, record)
        else:
            return
        self.last_line[desc] = now
        self._write(f"    {desc}: {text}")

    def close_bar(self) -> None:
        """Close every open bar (the end of a notebook)."""
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def _number(value: float) -> str:
    """4 significant digits, but 1 decimal from 1,000 on.

    A large likelihood constant would otherwise hide every change (``-2119`` at every epoch).
    """
    return f"{value:.1f}" if abs(value) >= 1000 else f"{value:.4g}"


def _metrics(record: Mapping[str, Any]) -> dict[str, str]:
    return {k: _number(record[k]) for k in ("train", "val") if record.get(k) is not None}


def _summary(epoch: int, epochs: int, record: Mapping[str, Any]) -> str:
    metrics = "  ".join(f"{k} {v}" for k, v in _metrics(record).items())
    return f"epoch {epoch}/{epochs}  {metrics}  ({record.get('elapsed', 0):.1f} s)"


@contextmanager
def follow_progress(
    path: str | Path,
    stream: IO[str] | None = None,
    interval: float = 0.5,
    min_interval: float = 5.0,
) -> Iterator[None]:
    """Show the training progress that kernels write to ``path`` while the block runs.

    The file is (re)created empty, :data:`repro.train.PROGRESS_ENV` points at it and
    :data:`repro.train.HEADLESS_ENV` is set for the block, so that kernels started inside it
    report there instead of drawing bars into the notebook. A thread polls the file every
    ``interval`` seconds; on a terminal it keeps one tqdm bar per training stage, otherwise it
    writes one line per update (at most one per stage every ``min_interval`` seconds, plus
    each stage's start and last epoch). The file is removed at the end.

    Args:
        path: the progress file (its folder must exist).
        stream: where to show progress (default: ``sys.stderr``).
        interval: polling period in seconds.
        min_interval: minimum seconds between two lines of one stage on a non-terminal stream.

    Yields:
        Nothing.
    """
    path = Path(path).resolve()  # the kernel runs in the notebook's folder
    path.write_bytes(b"")
    view = _ProgressView(path, stream if stream is not None else sys.stderr, min_interval)
    stop = threading.Event()

    def follow() -> None:
        while not stop.wait(interval):
            view.poll()

    thread = threading.Thread(target=follow, name="repro-progress", daemon=True)
    try:
        with _environment({PROGRESS_ENV: str(path), HEADLESS_ENV: "1"}):
            thread.start()
            yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        view.poll()  # what the kernel wrote after the last poll
        view.close_bar()
        path.unlink(missing_ok=True)


def _check_notebook(path: Path, name: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"notebook {path} of figure {name!r} does not exist"
            + ("" if path.parent.is_dir() else f" (its folder {path.parent} is missing too)")
            + "; run from a complete checkout of the repository, or set REPRO_ROOT to one"
        )


def _check_output_folder(out_dir: Path) -> None:
    ensure_writable(
        out_dir,
        "checked before running any notebook, so nothing has run",
        f"make it writable (e.g. chmod -R u+w {out_dir}), remove it so that it is created "
        "again, or run from a checkout you can write to (REPRO_ROOT points at another one).",
    )


def _execute(
    papermill: Any,
    source: Path,
    target: Path,
    parameters: Mapping[str, Any],
    progress: bool,
    config: Any,
) -> None:
    """Execute ``source`` into a partial file beside ``target``; rename it there on success."""
    partial = target.with_name(f".{target.stem}.running-{_owner_token()}.ipynb")
    failed = target.with_name(f"{target.stem}.failed.ipynb")
    failed.unlink(missing_ok=True)  # an older failure: this run replaces or supersedes it
    try:
        papermill.execute_notebook(
            str(source),
            str(partial),
            parameters=dict(parameters),
            kernel_name="python3",
            cwd=str(source.parent),
            progress_bar=progress,
            config=config,
        )
    except BaseException:
        if partial.exists():
            os.replace(partial, failed)
        raise
    os.replace(partial, target)


def _failure(notebook: str, what: str, target: Path) -> str:
    failed = target.with_name(f"{target.stem}.failed.ipynb")
    kept = (
        f"the last complete copy {target} is unchanged"
        if target.exists()
        else f"there is no earlier complete copy at {target}"
    )
    copy = f"executed copy of this run: {failed}" if failed.exists() else "no executed copy"
    return f"{notebook} {what} ({copy}; {kept})"


def has_profile(figure: Figure, profile: str) -> bool:
    """Whether a figure's experiment has a preset for ``profile``.

    ``quick`` and ``full`` exist for every figure; ``intermediate`` only where the full profile
    is out of reach on a CPU. A figure registered without an experiment (tests) has all.
    """
    if not figure.experiment or profile in ("quick", "full"):
        return True
    import importlib

    settings = importlib.import_module(f"repro.papers.{figure.paper}.settings")
    return profile in settings.PRESETS.get(figure.experiment, {})


def run_figures(
    names: Iterable[str] | None = None,
    profile: str = "quick",
    device: str = "auto",
    figures: Mapping[str, Figure] = FIGURES,
    progress: bool = True,
    smoke: bool = False,
) -> dict[str, float]:
    """Execute figure notebooks in order, stopping at the first failure.

    Output folders (``runs/<profile>/``) are created and checked for writing before any
    notebook starts: papermill itself does not create them. While a notebook runs, the
    training progress of its stages is shown on stderr (see :func:`follow_progress`). Each
    executed copy replaces ``runs/<profile>/<name>.ipynb`` only once the notebook completed;
    temporary files live in one run folder (:func:`run_folder`), removed at the end, on
    SIGTERM/SIGINT, or by the next run after a SIGKILL.

    Args:
        names: figures to run (default: all, in registry order).
        profile: ``"quick"``, ``"intermediate"`` or ``"full"``, injected as ``PRESET``
            (all figures: those without the preset are skipped with a line; named figures
            without it are an error).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"``, injected as ``DEVICE``.
        figures: the registry (tests pass their own).
        progress: show papermill's cell progress bar and the training progress.
        smoke: inject ``SMOKE=True``: every stage of every notebook runs a couple of batches
            at the profile's architecture and data shape (:func:`repro.config.smoke`);
            executed copies and figures go to ``runs/<profile>-smoke/``.

    Returns:
        Wall seconds per executed notebook.

    Raises:
        ValueError: for an unknown figure, profile or device (the message lists the valid
            names), or a named figure without a preset for ``profile``.
        FileNotFoundError: for a registered notebook that is missing from the checkout.
        PermissionError: when ``runs/<profile>/`` cannot be created or written (checked
            before any notebook runs; ``OSError`` for a read-only file system or a full disk).
        NotebookFailed: when a notebook fails; earlier outputs stay in place, the failed copy
            is ``<name>.failed.ipynb``.
        Interrupted: on SIGTERM or SIGINT, after cleaning up.
    """
    import papermill

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(PROFILES)}")
    if not DEVICE_PATTERN.match(device):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:<index>")
    explicit = names is not None
    names = list(figures) if names is None else list(names)
    unknown = [n for n in names if n not in figures]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; choose from {sorted(figures)}")
    lacking = [n for n in names if not has_profile(figures[n], profile)]
    if lacking and explicit:
        raise ValueError(
            f"figure(s) {lacking} have no {profile!r} preset; figures that have one: "
            f"{[n for n, f in figures.items() if has_profile(f, profile)]}"
        )
    for name in lacking:  # running every figure: those without the preset are skipped
        sys.stdout.write(f"{name}: no {profile!r} preset, skipped\n")
    names = [n for n in names if n not in lacking]
    out_dir = runs_dir(f"{profile}-smoke" if smoke else profile)
    _check_output_folder(out_dir)
    for name in names:
        _check_notebook(notebooks_dir() / figures[name].notebook, name)
    parameters: dict[str, Any] = {"PRESET": profile, "DEVICE": device}
    if smoke:
        parameters["SMOKE"] = True
    seconds = {}
    with _signals_raise(), run_folder([out_dir]) as tmp:
        for i, name in enumerate(names, 1):
            figure = figures[name]
            source = notebooks_dir() / figure.notebook
            target = out_dir / figure.notebook
            target.parent.mkdir(parents=True, exist_ok=True)  # notebooks may sit in subfolders
            label = f"{profile}{', smoke' if smoke else ''}, device={device}"
            sys.stdout.write(f"[{i}/{len(names)}] {name} ({label}) ...\n")
            sys.stdout.flush()
            tic = time.perf_counter()
            stream = sys.stderr if progress else open(os.devnull, "w")  # noqa: SIM115
            try:
                with (
                    kernel_config(tmp, f"k{i}") as config,
                    follow_progress(tmp / f"progress-{name}.jsonl", stream),
                ):
                    _execute(papermill, source, target, parameters, progress, config)
            except papermill.PapermillExecutionError as exc:
                raise NotebookFailed(
                    _failure(figure.notebook, f"failed: {_failed_cell(exc)}", target)
                ) from exc
            except Interrupted as exc:
                sys.stderr.write(
                    "\n" + _failure(figure.notebook, f"interrupted by {exc.args[0]}", target) + "\n"
                )
                raise
            finally:
                if stream is not sys.stderr:
                    stream.close()
            seconds[name] = time.perf_counter() - tic
            sys.stdout.write(f"[{i}/{len(names)}] {name} done in {seconds[name]:.1f} s\n")
            sys.stdout.write(_verdicts(target))
    return seconds


def _verdicts(executed: Path) -> str:
    """The summary's verdict lines of an executed notebook, and where to read the rest.

    Read from the output of the cell that prints ``<module>.summary(result)``: every line that
    ends with a verdict of :mod:`repro.verdicts` (indented claims). Nothing when the notebook
    has no such cell or cannot be read.
    """
    import nbformat

    from repro import verdicts

    try:
        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError):
        return ""
    words = tuple(f": {v}" for v in verdicts.VERDICTS)
    lines = []
    for cell in nb.cells:
        if cell.cell_type != "code" or ".summary(result)" not in cell.source:
            continue
        for output in cell.get("outputs", []):
            for line in str(output.get("text", "")).splitlines():
                if line.startswith("  ") and (line.endswith(words) or " at " in line):
                    lines.append(f"    {line.strip()}")
    if not lines:
        return f"    (executed notebook: {executed})\n"
    return "\n".join(["  claims:", *lines, f"    (the rest: {executed})"]) + "\n"


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
    ``figures/readme/`` (committed, shown in the README; no other command writes there; the
    folder is created if missing). Kernels run headless, as in :func:`run_figures`: training
    progress is shown on stderr and no progress bar is saved into the notebook.

    Args:
        names: figures whose notebooks to refresh (default: all).
        figures: the registry.

    Returns:
        Wall seconds per notebook.

    Raises:
        ValueError: for an unknown figure.
        FileNotFoundError: for a registered notebook that is missing from the checkout.
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
        _check_notebook(path, name)
        nb = nbformat.read(path, as_version=4)
        tic = time.perf_counter()
        sys.stdout.write(f"executing {path.name} in place ...\n")
        sys.stdout.flush()
        try:
            with (
                _signals_raise(),
                run_folder() as tmp,
                kernel_config(tmp) as config,
                follow_progress(tmp / f"progress-{name}.jsonl"),
            ):
                NotebookClient(
                    nb,
                    kernel_name="python3",
                    timeout=1800,
                    resources={"metadata": {"path": str(path.parent)}},
                    config=config,
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
