import subprocess
import sys

import nbformat
import pytest

from repro import __main__ as cli
from repro import runner
from repro.registry import FIGURES, Figure


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


def test_refresh_executes_in_place_cleans_and_snapshots(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "notebooks_dir", lambda: tmp_path / "nb")
    monkeypatch.setattr(runner, "figures_dir", lambda profile: tmp_path / "figures" / profile)
    (tmp_path / "nb").mkdir()
    (tmp_path / "figures" / "quick").mkdir(parents=True)
    (tmp_path / "figures" / "quick" / "ok_fig.png").write_bytes(b"png")
    _notebook(tmp_path / "nb" / "ok.ipynb", "print(PRESET, 6 * 7)")
    figures = {"ok_fig": Figure("ok_fig", "jnf", "test", "ok.ipynb")}
    assert cli.main(["notebooks"], figures=figures) == 0
    nb = nbformat.read(tmp_path / "nb" / "ok.ipynb", as_version=4)
    assert nb.cells[1].outputs[0].text == "quick 42\n"
    assert all(set(c.metadata) <= {"tags"} for c in nb.cells)
    assert (tmp_path / "figures" / "readme" / "ok_fig.png").read_bytes() == b"png"
