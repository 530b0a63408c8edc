import subprocess
import sys
import textwrap

import pytest
import torch
from jobs_units import calls, counted, train_tiny  # noqa: I001  (tests/ is on sys.path)

from repro import jobs
from repro.jobs import Unit, UnitFailed, resolve_executor, run_units


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_pool_and_sequential_runs_give_identical_bits():
    units = [Unit(f"seed {s}", train_tiny, (s,)) for s in range(3)]
    seq = run_units("fig", units, "sequential", cache=False)
    pool = run_units("fig", units, "local", workers=2, cache=False)
    assert list(seq) == list(pool) == ["seed 0", "seed 1", "seed 2"]
    for name in seq:
        for key in seq[name]:
            assert torch.equal(seq[name][key], pool[name][key]), (name, key)
    assert not torch.equal(seq["seed 0"]["0.weight"], seq["seed 1"]["0.weight"])


def test_finished_units_are_cached_and_a_rerun_resumes_after_them(tmp_path):
    marks = str(tmp_path)
    units = [Unit(n, counted, (marks, n, n == "b")) for n in ("a", "b", "c")]
    with pytest.raises(UnitFailed, match=r"fig: unit 'b' failed \(ValueError: unit b was told"):
        run_units("fig", units, "sequential")
    assert (calls(marks, "a"), calls(marks, "b"), calls(marks, "c")) == (1, 1, 0)  # stopped
    fixed = [Unit(n, counted, (marks, n)) for n in ("a", "b", "c")]
    fixed[0] = units[0]  # same function and arguments as the finished unit
    out = run_units("fig", fixed, "sequential")
    assert out == {"a": "result of a", "b": "result of b", "c": "result of c"}
    assert (calls(marks, "a"), calls(marks, "b"), calls(marks, "c")) == (1, 2, 1)  # a: cached
    run_units("fig", fixed, "local", workers=2)  # all cached: nothing runs
    assert (calls(marks, "a"), calls(marks, "b"), calls(marks, "c")) == (1, 2, 1)


def test_a_failing_unit_in_the_pool_names_itself_and_stops_the_run(tmp_path):
    marks = str(tmp_path)
    units = [Unit("bad", counted, (marks, "bad", True))]
    units += [Unit(f"ok{i}", counted, (marks, f"ok{i}", False, 1.0)) for i in range(6)]
    with pytest.raises(UnitFailed, match="fig: unit 'bad' failed .*other units were stopped") as e:
        run_units("fig", units, "local", workers=2, cache=False)
    assert isinstance(e.value.__cause__, ValueError)
    assert sum(calls(marks, f"ok{i}") for i in range(6)) < 6  # queued units were cancelled


def test_a_corrupt_result_file_is_a_cache_miss(tmp_path):
    marks = str(tmp_path)
    unit = Unit("a", counted, (marks, "a"))
    run_units("fig", [unit], "sequential")
    jobs.result_path("fig", unit).write_bytes(b"not a torch file")
    assert run_units("fig", [unit], "sequential") == {"a": "result of a"}
    assert calls(marks, "a") == 2


def test_the_key_changes_with_arguments_configs_and_code(monkeypatch):
    from repro.papers.jnf import settings

    cfg = settings.get("coherence_fid", "quick")
    a = jobs.unit_key(Unit("x", counted, ("m", "x")))
    assert a == jobs.unit_key(Unit("other name", counted, ("m", "x")))  # the name is a label
    assert a != jobs.unit_key(Unit("x", counted, ("m", "y")))
    k1 = jobs.unit_key(Unit("x", counted, (cfg,)))
    assert k1 == jobs.unit_key(
        Unit("x", counted, (settings.get("coherence_fid", "quick", workers=7),))
    )
    assert k1 != jobs.unit_key(
        Unit("x", counted, (settings.get("coherence_fid", "quick", seed=3),))
    )
    monkeypatch.setattr(jobs, "code_version", lambda: "another version")
    assert a != jobs.unit_key(Unit("x", counted, ("m", "x")))


def test_argument_errors_and_executor_resolution():
    with pytest.raises(ValueError, match="unique, repeated: \\['a'\\]"):
        run_units("fig", [Unit("a", counted, ("m", "a"))] * 2, "sequential")
    with pytest.raises(ValueError, match="unknown executor 'slurmish'"):
        run_units("fig", [Unit("a", counted, ("m", "a"))], "slurmish")
    with pytest.raises(ValueError, match="workers must be >= 0"):
        run_units("fig", [], "local", workers=-1)
    assert resolve_executor("sequential", 10) == "sequential"
    assert resolve_executor("auto", 1) == "sequential"  # one unit: no pool
    expected = "local" if jobs.cores() > 1 else "sequential"
    assert resolve_executor("auto", 5, "cpu") == expected


def test_a_script_without_a_main_guard_can_use_the_pool(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
            from jobs_units import train_tiny
            from repro.jobs import Unit, run_units
            out = run_units("fig", [Unit(f"s{{i}}", train_tiny, (i, 3)) for i in range(2)],
                            "local", workers=2, cache=False)
            print(sorted(out))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "['s0', 's1']" in done.stdout


def test_workers_stop_when_their_parent_is_killed(tmp_path):
    import os
    import signal
    import time

    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, os
            sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
            from jobs_units import sleepy
            from repro.jobs import Unit, run_units
            run_units("fig", [Unit(f"s{{i}}", sleepy, ({str(tmp_path)!r}, i)) for i in range(2)],
                      "local", workers=2, cache=False)
            """
        )
    )
    parent = subprocess.Popen([sys.executable, str(script)])
    deadline = time.time() + 120
    while len(list(tmp_path.glob("*.pid"))) < 2 and time.time() < deadline:
        time.sleep(0.2)
    pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2, "the workers did not start"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    time.sleep(3)
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "workers outlived their killed parent"
