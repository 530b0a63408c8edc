import io
import json
import os
import subprocess
import sys

import nbformat
import pytest

from repro import __main__ as cli
from repro import runner, train
from repro.registry import FIGURES, Figure

TCP_WARNING = "running over TCP without encryption"


def test_list_names_every_figure(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in FIGURES)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["figures", "--only", "nope"], "invalid choice: 'nope'"),
        (["figures", "--profile", "medium"], "quick"),
    ],
)
def test_bad_arguments_exit_2_and_list_valid_names(argv, needle):
    proc = subprocess.run([sys.executable, "-m", "repro", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert needle in proc.stderr and "jnf_toy_posteriors" in proc.stderr or "full" in proc.stderr


def test_run_figures_rejects_unknown_names():
    with pytest.raises(ValueError, match="choose from"):
        runner.run_figures(["nope"])
    with pytest.raises(ValueError, match="unknown profile"):
        runner.run_figures(profile="medium")


def _notebook(path, source):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            'PRESET = "quick"\nDEVICE = "cpu"', metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell(source),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def test_failing_notebook_stops_batch_naming_notebook_and_cell(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "notebooks_dir", lambda: tmp_path)
    monkeypatch.setattr(runner, "runs_dir", lambda profile: tmp_path / "runs" / profile)
    _notebook(tmp_path / "bad.ipynb", "raise ValueError('broken on purpose')")
    _notebook(tmp_path / "never.ipynb", "print('should not run')")
    figures = {
        "bad_fig": Figure("bad_fig", "jnf", "test", "bad.ipynb"),
        "never_fig": Figure("never_fig", "jnf", "test", "never.ipynb"),
    }
    code = cli.main(["figures", "--device", "cpu"], figures=figures)
    err = capsys.readouterr().err
    assert code == 1
    assert (
        "bad.ipynb" in err and "ValueError" in err and "broken on purpose" in err and "cell" in err
    )
    assert not (tmp_path / "runs" / "quick" / "never.ipynb").exists()


def test_clean_notebook_strips_volatile_parts():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(
        "x", metadata={"tags": ["parameters"], "execution": {"iopub.status.busy": "2026-01-01"}}
    )
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={"application/vnd.jupyter.widget-view+json": {}, "text/plain": "bar"},
        ),
        nbformat.v4.new_output("stream", text="kept\n"),
    ]
    nb.cells = [cell]
    nb.metadata["widgets"] = {"state": 1}
    runner.clean_notebook(nb)
    assert cell.metadata == {"tags": ["parameters"]} and "widgets" not in nb.metadata
    assert [o.output_type for o in cell.outputs] == ["stream"]


def test_refresh_executes_in_place_cleans_and_snapshots(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(runner, "notebooks_dir", lambda: tmp_path / "nb")
    monkeypatch.setattr(runner, "figures_dir", lambda profile: tmp_path / "figures" / profile)
    (tmp_path / "nb").mkdir()
    (tmp_path / "figures" / "quick").mkdir(parents=True)
    (tmp_path / "figures" / "quick" / "ok_fig.png").write_bytes(b"png")
    source = "import os\nprint(PRESET, 6 * 7, os.environ.get('REPRO_HEADLESS'))"
    _notebook(tmp_path / "nb" / "ok.ipynb", source)
    figures = {"ok_fig": Figure("ok_fig", "jnf", "test", "ok.ipynb")}
    assert cli.main(["notebooks"], figures=figures) == 0
    nb = nbformat.read(tmp_path / "nb" / "ok.ipynb", as_version=4)
    assert nb.cells[1].outputs[0].text == "quick 42 1\n"  # headless: fit draws no bar
    assert TCP_WARNING not in capfd.readouterr().err
    assert sorted(p.name for p in (tmp_path / "nb").iterdir()) == ["ok.ipynb"]  # no IPC files
    assert all(set(c.metadata) <= {"tags"} for c in nb.cells)
    assert (tmp_path / "figures" / "readme" / "ok_fig.png").read_bytes() == b"png"


# -- training progress in the terminal, headless kernels ---------------------------------------

TRAINING_CELL = """
import torch
from repro.config import TrainConfig
from repro.train import fit

torch.set_num_threads(1)
model = torch.nn.Linear(2, 1)
data = {"x": torch.randn(32, 2, generator=torch.Generator().manual_seed(0))}
cfg = TrainConfig(epochs=3, batch_size=8, progress=True)
history = fit(model, lambda b: -model(b["x"]).pow(2).sum(-1), data, cfg, desc="toy stage")
print(len(history.train))
"""


def test_run_figures_shows_training_in_terminal_not_in_notebook(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(runner, "notebooks_dir", lambda: tmp_path / "nb")
    monkeypatch.setattr(runner, "runs_dir", lambda profile: tmp_path / "runs" / profile)
    (tmp_path / "nb").mkdir()
    _notebook(tmp_path / "nb" / "train.ipynb", TRAINING_CELL)
    figures = {"train_fig": Figure("train_fig", "jnf", "test", "train.ipynb")}
    assert not (tmp_path / "runs").exists()  # a fresh clone: the runner creates runs/<profile>/
    assert cli.main(["figures", "--device", "cpu"], figures=figures) == 0
    err = capfd.readouterr().err
    assert "toy stage: 3 epoch(s)" in err and "toy stage: epoch 3/3  train" in err
    assert TCP_WARNING not in err
    assert train.PROGRESS_ENV not in os.environ and train.HEADLESS_ENV not in os.environ
    assert sorted(p.name for p in (tmp_path / "runs" / "quick").iterdir()) == ["train.ipynb"]
    assert sorted(p.name for p in (tmp_path / "nb").iterdir()) == ["train.ipynb"]
    nb = nbformat.read(tmp_path / "runs" / "quick" / "train.ipynb", as_version=4)
    outputs = nb.cells[-1].outputs
    assert [o.get("text") for o in outputs] == ["3\n"]  # no frozen widget, no bar text


def _records(path, *records):
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")


def test_follow_progress_writes_one_line_per_update_on_a_pipe(tmp_path):
    stream = io.StringIO()
    path = tmp_path / ".progress-x.jsonl"
    with runner.follow_progress(path, stream, interval=0.01, min_interval=0):
        assert os.environ[train.PROGRESS_ENV] == str(path) and os.environ[train.HEADLESS_ENV]
        log = train._ProgressLog("stage 1: joint", 3)  # what fit writes, in the kernel
        log.write(0)
        log.write(1, -5.0, -6.0)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write('{"desc": "stage 1: joint", "epoch": 2, "ep')  # a torn line ...
            handle.flush()
            runner._ProgressView(path, io.StringIO(), 0).poll()
            handle.write('ochs": 3, "train": -4.0, "val": null, "elapsed": 1.0}\n')  # ... done
        log.write(3, -3.0)
        _records(path, {"desc": "stage 2", "epoch": 4, "epochs": 9, "start": True})
    lines = stream.getvalue().splitlines()
    assert lines[0] == "    stage 1: joint: 3 epoch(s)"
    assert lines[1].startswith("    stage 1: joint: epoch 1/3  train -5  val -6  (")
    assert lines[2] == "    stage 1: joint: epoch 2/3  train -4  (1.0 s)  [train +1 since epoch 1]"
    assert lines[3].startswith("    stage 1: joint: epoch 3/3  train -3  (")
    assert lines[4] == "    stage 2: resuming after epoch 4/9" and len(lines) == 5
    assert not path.exists() and train.PROGRESS_ENV not in os.environ


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_follow_progress_keeps_a_bar_per_stage_on_a_terminal(tmp_path):
    stream = _Terminal()
    path = tmp_path / "p.jsonl"
    with runner.follow_progress(path, stream, interval=0.01):
        _records(
            path,
            {"desc": "stage 1", "epoch": 5, "epochs": 10, "start": True},  # resumed after 5
            *({"desc": "stage 1", "epoch": e, "epochs": 10, "train": -1.0} for e in (6, 10)),
            {"desc": "stage 2", "epoch": 0, "epochs": 4, "start": True},
            {"desc": "stage 2", "epoch": 1, "epochs": 4, "train": -2.0, "val": -3.0},
        )
    text = stream.getvalue()
    assert "stage 1:  50%" in text and "5/10" in text and "0/5" not in text
    assert "stage 2:  25%" in text and "1/4" in text and "val=-3" in text
    # a finished stage leaves one line, not its bar a second time
    assert text.count("    stage 1: epoch 10/10  train -1  (") == 1


def test_follow_progress_shows_concurrent_stages_and_units(tmp_path):
    stream = _Terminal()
    path = tmp_path / "p.jsonl"
    with runner.follow_progress(path, stream, interval=0.01):
        _records(
            path,
            {"desc": "fig unit A", "event": "unit-start", "done": 0, "total": 2},
            {"desc": "fig unit B", "event": "unit-start", "done": 0, "total": 2},
            {"desc": "A: train", "epoch": 0, "epochs": 2, "start": True},
            {"desc": "B: train", "epoch": 0, "epochs": 2, "start": True},
            {"desc": "A: train", "epoch": 1, "epochs": 2, "train": -2119.37},
            {"desc": "B: train", "epoch": 1, "epochs": 2, "train": -5.0},
            {"desc": "A: train", "epoch": 2, "epochs": 2, "train": -2118.91},
            {"desc": "fig unit A", "event": "unit-done", "done": 1, "total": 2},
        )
    text = stream.getvalue()
    assert "A: train:  50%" in text and "B: train:  50%" in text  # two bars at once
    assert "train=-2119.4" in text  # large values keep a decimal: the change shows
    assert "    A: train: epoch 2/2  train -2118.9" in text
    assert "[train +0.46 since epoch 1]" in text  # the change that the constant hides
    assert "  fig unit A: started" in text and "  [1/2] fig unit A: done" in text


def test_missing_notebook_says_which_file_and_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "notebooks_dir", lambda: tmp_path / "gone")
    monkeypatch.setattr(runner, "runs_dir", lambda profile: tmp_path / "runs" / profile)
    figures = {"x": Figure("x", "jnf", "test", "x.ipynb")}
    assert cli.main(["figures"], figures=figures) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "gone" / "x.ipynb") in err and "folder" in err and "missing" in err
    with pytest.raises(FileNotFoundError, match="x.ipynb"):
        runner.refresh_notebooks(figures=figures)


def test_smoke_flag_injects_smoke_and_writes_apart(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "notebooks_dir", lambda: tmp_path)
    monkeypatch.setattr(runner, "runs_dir", lambda profile: tmp_path / "runs" / profile)
    _notebook(tmp_path / "s.ipynb", "print(PRESET, SMOKE)")
    figures = {"s_fig": Figure("s_fig", "jnf", "test", "s.ipynb")}
    code = cli.main(["figures", "--profile", "full", "--smoke", "--device", "cpu"], figures=figures)
    assert code == 0
    out = nbformat.read(tmp_path / "runs" / "full-smoke" / "s.ipynb", as_version=4)
    assert out.cells[-1].outputs[0].text == "full True\n"
    assert "runs/full-smoke/" in capsys.readouterr().out
    assert not (tmp_path / "runs" / "full").exists()


def test_a_profile_only_some_figures_have(tmp_path, monkeypatch):
    from repro.registry import FIGURES

    assert runner.has_profile(FIGURES["jnf_coherence_fid"], "intermediate")
    assert not runner.has_profile(FIGURES["jnf_toy_posteriors"], "intermediate")
    assert runner.has_profile(FIGURES["jnf_toy_posteriors"], "full")
    with pytest.raises(ValueError, match=r"\['jnf_toy_posteriors'\] have no 'intermediate'"):
        runner.run_figures(["jnf_toy_posteriors"], profile="intermediate", figures=FIGURES)


def test_the_run_ends_with_each_figures_verdicts(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(toy.summary(result))")
    text = "model  0.93\nclaims:\n  flow > gaussian: tie\n"
    text += "  a > b: holds at 2, tie at 1 of 3 betas\n"
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    nb.cells = [cell]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    out = runner._verdicts(path)
    assert "    flow > gaussian: tie" in out and "holds at 2, tie at 1 of 3 betas" in out
    assert "model  0.93" not in out and str(path) in out
    assert runner._verdicts(tmp_path / "absent.ipynb") == ""
