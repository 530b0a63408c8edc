import json
from dataclasses import dataclass, field

import pytest

from repro import reference
from repro.reference import ReferenceMismatch, check, flatten


@dataclass
class _Cfg:
    name: str = "fig"
    profile: str = "quick"
    smoke: bool = False


@dataclass
class _Result:
    metrics: dict
    details: dict = field(default_factory=dict)
    cfg: _Cfg = field(default_factory=_Cfg)


def _file(tmp_path, metrics, verdicts):
    blob = {
        "figure": "fig",
        "profile": "quick",
        "how": "test",
        "metrics": {k: {"value": v, "tolerance": t} for k, (v, t) in metrics.items()},
        "verdicts": {k: {"value": v, "accepted": a} for k, (v, a) in verdicts.items()},
    }
    path = tmp_path / "fig.quick.json"
    path.write_text(json.dumps(blob))
    return path


def test_flatten_keeps_numeric_leaves():
    m = {"A": {"x": 1, "y": {"mean": 0.5, "sd": 0.1}, "label": "no", "flag": True}, "b": 2.0}
    assert flatten(m) == {"A/x": 1.0, "A/y/mean": 0.5, "A/y/sd": 0.1, "b": 2.0}


def test_check_passes_within_tolerance_and_prints_no_digits_that_vary(tmp_path):
    path = _file(tmp_path, {"A/x": (0.50, 0.02)}, {"A > B": ("holds", ["holds", "tie"])})
    result = _Result({"A": {"x": 0.515}}, {"paper_predictions": {"A > B": "tie"}})
    line = check(result, path)
    assert (
        line == "fig (quick): 1 metrics within their tolerances and 1 verdicts as in fig.quick.json"
    )


def test_check_names_figure_metric_values_and_tolerance(tmp_path):
    path = _file(
        tmp_path, {"A/x": (0.50, 0.02), "A/y": (3.0, 0.1)}, {"A > B": ("holds", ["holds"])}
    )
    result = _Result({"A": {"x": 0.53, "y": 3.05}}, {"paper_predictions": {"A > B": "tie"}})
    with pytest.raises(ReferenceMismatch) as err:
        check(result, path)
    text = str(err.value)
    assert text.startswith("fig (quick): 2 difference(s) from fig.quick.json")
    assert "A/x = 0.53, reference 0.5 +- 0.02 (off by 0.03)" in text
    assert "claim 'A > B': verdict 'tie', reference 'holds'" in text
    assert "A/y" not in text  # within its tolerance
    assert "python -m repro.reference measure fig" in text


def test_check_reports_missing_and_extra_metrics_and_claims(tmp_path):
    path = _file(tmp_path, {"A/x": (0.5, 0.1)}, {"c": ("holds", ["holds"])})
    result = _Result({"A": {"z": 1.0}}, {"paper_predictions": {"d": "holds"}})
    with pytest.raises(ReferenceMismatch, match="missing from the result") as err:
        check(result, path)
    text = str(err.value)
    assert "without a reference value: ['A/z']" in text and "without a reference verdict" in text


def test_no_file_or_a_smoke_run_is_said_not_compared(tmp_path):
    assert "no reference values" in check(_Result({}), tmp_path / "absent.json")
    assert "smoke run" in check(_Result({}, cfg=_Cfg(smoke=True)), tmp_path / "absent.json")


def test_measure_takes_k_times_the_larger_rms_deviation(tmp_path, monkeypatch):
    runs = iter(
        [
            {"metrics": {"a": 1.0, "b": 5.0}, "verdicts": {"c": "holds"}, "seconds": 1.0},
            {"metrics": {"a": 1.2, "b": 5.0}, "verdicts": {"c": "tie"}, "seconds": 1.0},  # seed
            {"metrics": {"a": 0.8, "b": 5.0}, "verdicts": {"c": "holds"}, "seconds": 1.0},  # seed
            {"metrics": {"a": 1.05, "b": 5.3}, "verdicts": {"c": "holds"}, "seconds": 1.0},  # cpu
        ]
    )
    monkeypatch.setattr(
        reference, "_run_subprocess", lambda jobs, *a, **k: [next(runs) for _ in jobs]
    )
    out = reference.measure(
        "jnf_toy_posteriors", seeds=(1, 2), perturbations=("avx2",), path=tmp_path / "r.json"
    )
    blob = json.loads(out.read_text())
    assert blob["metrics"]["a"]["value"] == 1.0
    assert blob["metrics"]["a"]["tolerance"] == pytest.approx(reference.K * 0.2)  # seeds' RMS
    assert blob["metrics"]["b"]["tolerance"] == pytest.approx(reference.K * 0.3)  # CPU path
    assert blob["verdicts"]["c"] == {"value": "holds", "accepted": ["holds", "tie"]}
    assert "avx2" in blob["how"] and blob["figure"] == "jnf_toy_posteriors"


def test_figures_measured_together_run_in_order_in_each_condition(tmp_path, monkeypatch):
    calls = []

    def fake(jobs, profile, env):
        calls.append((list(jobs), dict(env)))
        return [{"metrics": {"x": float(len(calls))}, "verdicts": {}, "seconds": 1.0} for _ in jobs]

    monkeypatch.setattr(reference, "_run_subprocess", fake)
    paths = reference.measure_together(
        ["coord_cross_coherence", "coord_bound_hierarchy"], seeds=(7,), perturbations=("sse",),
        paths=[tmp_path / "a.json", tmp_path / "b.json"],
    )  # fmt: skip
    assert [[n for n, _ in jobs] for jobs, _ in calls] == [
        ["coord_cross_coherence", "coord_bound_hierarchy"]
    ] * 3
    assert {s for _, s in calls[1][0]} == {7}  # the seed condition runs both at seed 7
    assert calls[2][1] == reference.PERTURBATIONS["sse"]
    a = json.loads(paths[0].read_text())
    assert a["metrics"]["x"]["value"] == 1.0
    assert a["metrics"]["x"]["tolerance"] == pytest.approx(reference.K * 2.0)  # |3 - 1| = 2 > 1
