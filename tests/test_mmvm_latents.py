"""Fig. 4 of the MMVM paper (mmvm_latents): every method at paper scale, and the verdicts."""

import pytest

from repro.data.neural import RATS
from repro.papers.mmvm import latents, settings


def test_verdicts_compare_across_rat_accuracies_with_ties():
    m = {k: {"across_rat_accuracy": v} for k, v in
         {"independent": 0.30, "AVG": 0.31, "MoPoE": 0.60, "MMVM": 0.62}.items()}  # fmt: skip
    assert set(latents.check_predictions(m, 40).values()) == {"holds"}
    m["MMVM"]["across_rat_accuracy"] = 0.32  # 0.02 above independent on 40 trials: a tie
    assert latents.check_predictions(m, 40)["MMVM > independent in across-rat accuracy"] == "tie"
    m["MMVM"]["across_rat_accuracy"] = 0.05
    assert (
        latents.check_predictions(m, 1000)["MMVM > independent in across-rat accuracy"]
        == "does NOT hold"
    )


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown method"):
        latents.build_model("PoE", settings.get("latents", "quick"), dict.fromkeys(RATS, 10))


def test_full_profile_smoke_runs_every_method(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))  # no recordings: the simulator
    cfg = settings.get("latents", "full", device="cpu", threads=1, smoke=True)
    assert cfg.hidden == 0 and cfg.train.max_steps == 2  # the paper's widths, two steps
    result = latents.run(cfg)
    assert set(result.metrics) == set(latents.METHODS)
    for m in result.metrics.values():
        assert 0 <= m["within_rat_accuracy"] <= 1 and 0 <= m["across_rat_accuracy"] <= 1
    assert result.means["MMVM"]["barat"].shape[1] == 2 and "simulator" in result.source
    assert "paper's claim" in latents.summary(result)
