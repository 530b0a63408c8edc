"""Every notebook is thin, runs its quick profile by default, and is wired into CI and docs."""

import json
import re
from pathlib import Path

import pytest

from repro.registry import FIGURES

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FORBIDDEN = {
    "pip install": r"[!%]\s*pip\b",
    "os.environ switch": r"os\.environ",
    ".cuda()": r"\.cuda\(\)",
    "absolute path": r"['\"](/home/|/work/|/Users/|[A-Za-z]:\\\\)",
    "download": r"urlretrieve|wget |curl |download=True",
    "CI switch": r"['\"]CI['\"]",
}


def _load(path):
    return json.loads(path.read_text())


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_structure(path):
    nb = _load(path)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    # what JupyterLab writes when it opens a notebook: saved so, opening it changes nothing
    assert nb["metadata"]["kernelspec"]["display_name"] == "Python 3 (ipykernel)"
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown"
    intro = "".join(cells[0]["source"])
    assert "arXiv" in intro or "doi" in intro.lower()
    assert "Deviations from the paper" in intro
    code = [c for c in cells if c["cell_type"] == "code"]
    params = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1 and code[0] is params[0], (
        "the first code cell must be the parameters cell"
    )
    source = "".join(params[0]["source"])
    assert re.search(r'^PRESET = "quick"', source, re.M), "saved defaults must be the quick profile"
    assert "DEVICE" in source and "SEED" in source
    assert len(code) <= 7, (
        "notebooks stay thin: at most 6 code cells after the parameters (set-up, run, figure, "
        "summary, reference check, explorer)"
    )
    for cell in code:
        text = "".join(cell["source"])
        for what, pattern in FORBIDDEN.items():
            assert not re.search(pattern, text), f"{path.name}: forbidden {what}"
        defs = re.findall(r"^(def|class) .*?(?=^\S|\Z)", text, re.M | re.S)
        assert all(len(d.splitlines()) <= 5 for d in defs), "definitions belong in repro/"
        assert "execution" not in cell["metadata"], "run `python -m repro notebooks` to clean"
    assert "widgets" not in nb["metadata"]
    explorer = [c for c in code if "explore.show(" in "".join(c["source"])]
    assert len(explorer) == 1, "one explorer cell, a call into repro"
    assert "nbval-ignore-output" in explorer[0]["metadata"].get("tags", [])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_executed_with_a_compared_summary(path):
    code = [c for c in _load(path)["cells"] if c["cell_type"] == "code"]
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not any(o["output_type"] == "error" for o in outputs)
    assert not any("image/svg+xml" in o.get("data", {}) for o in outputs), "inline PNG, not SVG"
    compared = [
        o
        for c in code
        if "nbval-ignore-output" not in c["metadata"].get("tags", [])
        for o in c.get("outputs", [])
    ]
    assert any(o["output_type"] == "stream" and o["name"] == "stdout" for o in compared), (
        "a printed summary that nbval compares"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_what_nbval_compares_does_not_depend_on_the_cpu(path):
    """The rounded summary is for the reader; the compared line is the reference check."""
    code = [c for c in _load(path)["cells"] if c["cell_type"] == "code"]
    summary = [c for c in code if ".summary(result)" in "".join(c["source"])]
    check = [c for c in code if "reference.check(result)" in "".join(c["source"])]
    assert len(summary) == 1 and "nbval-ignore-output" in summary[0]["metadata"].get("tags", [])
    assert len(check) == 1 and "nbval-ignore-output" not in check[0]["metadata"].get("tags", [])
    printed = "".join(t for o in check[0]["outputs"] for t in o.get("text", ""))
    assert "metrics within their tolerances" in printed, printed
    for cell in code:
        if "nbval-ignore-output" in cell["metadata"].get("tags", []):
            continue
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", "")) + "".join(
                output.get("data", {}).get("text/plain", "")
            )
            assert not re.search(r"\d\.\d{2,}", text.replace(".quick.json", "")), (
                f"{path.name}: a compared output prints digits that vary across CPUs: {text!r}"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_inline_figures_fit_jupyterlab_width(path):
    """JupyterLab shows about 1,100 px of output at 100 % zoom: wider figures get scaled down."""
    import base64
    import struct

    for cell in _load(path)["cells"]:
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                width = struct.unpack(">I", base64.b64decode(png)[16:20])[0]  # IHDR width
                assert width <= 1100, f"{path.name}: an inline figure is {width} px wide"


@pytest.mark.parametrize("figure", sorted(FIGURES), ids=str)
def test_every_figure_has_reference_values_with_tolerances(figure):
    ref = json.loads((ROOT / "notebooks" / "reference" / f"{figure}.quick.json").read_text())
    assert ref["figure"] == figure and ref["profile"] == "quick" and "how" in ref
    assert ref["metrics"] and all(
        {"value", "tolerance"} <= set(e) and e["tolerance"] >= 0 for e in ref["metrics"].values()
    )
    assert all(e["value"] in e["accepted"] for e in ref["verdicts"].values())


def test_every_notebook_is_registered_in_readme_and_ci():
    registered = {f.notebook for f in FIGURES.values()}
    assert {p.name for p in NOTEBOOKS} == registered
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert re.search(r"pytest tests notebooks .*\$\(NBVAL\)", makefile), (
        "nbval must cover notebooks/"
    )
    for figure in FIGURES.values():
        assert f"notebooks/{figure.notebook}" in readme, (
            f"{figure.name} missing from the README table"
        )
        assert figure.name.split("_")[0] == figure.paper
