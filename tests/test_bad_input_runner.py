"""The batch runner and its CLI on bad input and interruptions (issue 14).

Unwritable runs/<profile>/ is refused before any notebook runs; --device takes cuda:<i>; a
failed notebook never replaces the last complete copy; SIGKILL leaves its temporary files in
one run folder that the next run removes, and SIGTERM cleans up at once.
"""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from repro import __main__ as cli
from repro import runner
from repro.registry import Figure
from tests.test_runner import _notebook

FIGS = {"slow": Figure("slow", "jnf", "test", "slow.ipynb")}


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """Notebooks, runs and the temp folder of this test only."""
    (tmp_path / "nb").mkdir()
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(runner, "notebooks_dir", lambda: tmp_path / "nb")
    monkeypatch.setattr(runner, "runs_dir", lambda profile: tmp_path / "runs" / profile)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path


def _run_folders(repo):
    return sorted((repo / "tmp").glob("repro-run-*"))


# -- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_accepts_cuda_index(device):
    args = cli._parser(FIGS).parse_args(["figures", "--device", device])
    assert args.device == device


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "CUDA", "cpu:0"])
def test_bad_device_exits_2_with_a_clear_message(device, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["figures", "--device", device], figures=FIGS)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"invalid device {device!r}" in err and "cuda:<index>" in err


def test_every_option_has_a_help_text(capsys):
    for command in ("figures", "notebooks"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"], figures=FIGS)
        text = capsys.readouterr().out
        assert "--only" in text and "default: all" in text
    with pytest.raises(SystemExit):
        cli.main(["figures", "--help"], figures=FIGS)
    text = " ".join(capsys.readouterr().out.split())
    assert "cuda:<index>" in text and "--smoke" in text and "quick (the" in text


def test_value_error_from_the_runner_exits_2(monkeypatch, capsys):
    def bad(*args, **kwargs):
        raise ValueError("unknown figure(s) ['x']")

    monkeypatch.setattr(runner, "run_figures", bad)
    assert cli.main(["figures"], figures=FIGS) == 2
    assert "error: unknown figure(s)" in capsys.readouterr().err


# -- output folder ------------------------------------------------------------------------------


def test_unwritable_runs_folder_is_refused_before_any_notebook(repo, monkeypatch, capsys):
    _notebook(repo / "nb" / "slow.ipynb", "raise SystemExit('must not run')")

    def refuse(folder, stage, fix):
        raise PermissionError(13, f"the output folder {folder} is not writable; {stage}. {fix}")

    monkeypatch.setattr(runner, "ensure_writable", refuse)
    assert cli.main(["figures", "--device", "cpu"], figures=FIGS) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(repo / "runs" / "quick") in err
    assert "before running any notebook" in err and "Traceback" not in err
    assert not (repo / "runs" / "quick" / "slow.ipynb").exists()


def test_read_only_runs_folder_for_real(repo, capsys):
    if os.geteuid() != 0:
        (repo / "runs" / "quick").mkdir(parents=True)
        (repo / "runs" / "quick").chmod(0o555)
    else:
        (repo / "runs" / "quick").mkdir(parents=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(repo / "runs" / "quick")],
            capture_output=True,
        )
        if done.returncode != 0:
            pytest.skip("cannot mount a read-only tmpfs")
    try:
        _notebook(repo / "nb" / "slow.ipynb", "print(1)")
        assert cli.main(["figures", "--device", "cpu"], figures=FIGS) == 1
        err = capsys.readouterr().err
        assert "runs/quick" in err and "not writable" in err and "Fix" in err
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(repo / "runs" / "quick")], check=False)
        else:
            (repo / "runs" / "quick").chmod(0o755)


# -- a failed notebook keeps the last complete copy ---------------------------------------------


def test_failure_keeps_previous_copy_and_the_failed_one_apart(repo, capsys):
    _notebook(repo / "nb" / "slow.ipynb", "print('version 1')")
    assert cli.main(["figures", "--device", "cpu"], figures=FIGS) == 0
    target = repo / "runs" / "quick" / "slow.ipynb"
    before = target.read_bytes()
    _notebook(repo / "nb" / "slow.ipynb", "raise ValueError('broken on purpose')")
    assert cli.main(["figures", "--device", "cpu"], figures=FIGS) == 1
    err = capsys.readouterr().err
    failed = repo / "runs" / "quick" / "slow.failed.ipynb"
    assert target.read_bytes() == before  # the complete copy of the earlier run
    assert str(failed) in err and str(target) in err and "unchanged" in err
    cells = nbformat.read(failed, as_version=4).cells
    errors = [o.evalue for c in cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == ["broken on purpose"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["slow.failed.ipynb", "slow.ipynb"]
    assert _run_folders(repo) == []
    _notebook(repo / "nb" / "slow.ipynb", "print('version 2')")
    assert cli.main(["figures", "--device", "cpu"], figures=FIGS) == 0
    assert sorted(p.name for p in target.parent.iterdir()) == ["slow.ipynb"]  # superseded


# -- kills --------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from repro import __main__ as cli
    from repro import runner
    from repro.registry import Figure

    root = Path(sys.argv[1])
    runner.notebooks_dir = lambda: root / "nb"
    runner.runs_dir = lambda profile: root / "runs" / profile
    figures = {"slow": Figure("slow", "jnf", "test", "slow.ipynb")}
    sys.exit(cli.main(["figures", "--device", "cpu"], figures=figures))
    """
)

SLOW = (
    "import os, pathlib, time\n"
    "pathlib.Path({marker!r}).write_text(str(os.getpid()))\n"
    "time.sleep(120)"
)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


def _wait(condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _start_slow_run(repo):
    """A complete earlier copy, then a runner child stuck in a slow notebook."""
    _notebook(repo / "nb" / "slow.ipynb", "print('complete run')")
    assert cli.main(["figures", "--device", "cpu"], figures=FIGS) == 0
    before = (repo / "runs" / "quick" / "slow.ipynb").read_bytes()
    marker = repo / "kernel.pid"
    _notebook(repo / "nb" / "slow.ipynb", SLOW.format(marker=str(marker)))
    (repo / "child.py").write_text(CHILD)
    env = dict(os.environ, TMPDIR=str(repo / "tmp"), JUPYTER_RUNTIME_DIR=str(repo / "jrt"))
    env["PYTHONPATH"] = os.pathsep.join([str(Path.cwd()), env.get("PYTHONPATH", "")])
    child = subprocess.Popen(
        [sys.executable, str(repo / "child.py"), str(repo)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not _wait(marker.exists, 90):
        child.kill()
        pytest.fail(f"the slow notebook never started: {child.communicate()}")
    _wait(lambda: marker.read_text().strip() != "", 5)
    return child, int(marker.read_text()), before


def _reap_kernel(kernel):
    """The orphaned kernel exits by itself (ipykernel polls its parent); never leave it."""
    if _wait(lambda: not _alive(kernel), 20):
        return True
    os.kill(kernel, signal.SIGKILL)
    return False


def test_sigkill_leftovers_sit_in_one_run_folder_that_the_next_run_removes(repo):
    child, kernel, before = _start_slow_run(repo)
    out = repo / "runs" / "quick"
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert _reap_kernel(kernel), "the orphaned kernel did not exit by itself"
    # what the kill left: one run folder (progress, sockets, connection file), one partial
    (left,) = _run_folders(repo)
    assert left.name.startswith(f"repro-run-{child.pid}.")
    names = sorted(p.name for p in left.iterdir())
    assert "progress-slow.jsonl" in names and "k1.json" in names
    assert not (repo / "jrt").exists() or not list((repo / "jrt").iterdir())
    partial = [p.name for p in out.iterdir() if p.name.startswith(".slow.running-")]
    assert partial and str(child.pid) in partial[0]
    assert (out / "slow.ipynb").read_bytes() == before  # the complete copy is intact
    # the next run removes the dead run's leftovers and leaves nothing of its own
    _notebook(repo / "nb" / "slow.ipynb", "print('next run')")
    assert cli.main(["figures", "--device", "cpu"], figures=FIGS) == 0
    assert _run_folders(repo) == []
    assert sorted(p.name for p in out.iterdir()) == ["slow.ipynb"]
    nb = nbformat.read(out / "slow.ipynb", as_version=4)
    assert nb.cells[-1].outputs[0].text == "next run\n"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_clean_up_at_once(repo, sig):
    child, kernel, before = _start_slow_run(repo)
    out = repo / "runs" / "quick"
    child.send_signal(sig)
    try:
        _, err = child.communicate(timeout=60)
    finally:
        _reap_kernel(kernel)
    assert child.returncode == 128 + sig, err
    assert f"interrupted by {sig.name}" in err and "Traceback" not in err
    assert str(out / "slow.ipynb") in err and "unchanged" in err
    assert _run_folders(repo) == []
    assert (out / "slow.ipynb").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["slow.failed.ipynb", "slow.ipynb"]


def test_live_runs_are_left_alone(repo):
    mine = Path(tempfile.mkdtemp(prefix=f"repro-run-{runner._owner_token()}-"))
    dead = repo / "tmp" / "repro-run-999999999.1-abc"
    dead.mkdir()
    foreign = repo / "tmp" / "repro-run-something-else"
    foreign.mkdir()
    reused = repo / "tmp" / f"repro-run-{os.getpid()}.1-abc"  # my pid, another start time
    reused.mkdir()
    removed = runner.clean_stale_runs()
    assert sorted(removed) == sorted([dead, reused])
    assert mine.exists() and foreign.exists()
