"""Fig. 4 (jnf_coherence_fid): every model and stage at paper architecture, and the verdicts."""

import pytest

from repro.papers.jnf import coherence_fid, settings


def _metrics(one, flat=True, worst="MMVAE"):
    out = {}
    for name, c in one.items():
        by = {f"coherence_{k}_inputs": c + (0 if flat and name == "MMVAE" else 0.05 * (k - 1))
              for k in (1, 2, 3, 4)}  # fmt: skip
        out[name] = {**by, "joint_coherence": 0.5, "fd": 50.0}
    out[worst]["fd"] = 99.0
    return out


def test_verdicts_follow_the_numbers_with_ties_and_chance():
    good = {"JNF-DCCA": 0.8, "JNF": 0.7, "JMVAE": 0.6, "MoPoE": 0.61, "MVTCAE": 0.5, "MMVAE": 0.6}
    verdicts = coherence_fid.check_predictions(_metrics(good), "fd", 10_000)
    assert set(verdicts.values()) == {"holds"}
    swapped = dict(good, JNF=0.85)
    assert (
        coherence_fid.check_predictions(_metrics(swapped), "fd", 10_000)[
            "JNF-DCCA > JNF at one input"
        ]
        == "does not hold"
    )
    close = dict(good, JNF=0.795)  # 0.005 apart on 500 tuples: within 2 standard errors
    assert (
        coherence_fid.check_predictions(_metrics(close), "fd", 500)["JNF-DCCA > JNF at one input"]
        == "tie"
    )
    chance = {k: 0.1 for k in good}
    assert coherence_fid.at_chance(_metrics(chance), 500)
    assert set(coherence_fid.check_predictions(_metrics(chance), "fd", 500).values()) == {
        "not testable"
    }


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="unknown model"):
        coherence_fid.build_model("VAE", settings.get("coherence_fid", "quick"))


@pytest.mark.parametrize("name", coherence_fid.MODEL_NAMES)
def test_every_model_builds_at_paper_scale(name):
    cfg = settings.get("coherence_fid", "full")
    model = coherence_fid.build_model(name, cfg)
    assert model.latent_dim == 128 and model.modalities == ["m0", "m1", "m2", "m3", "m4"]
    assert set(coherence_fid.stage_configs(name, model, cfg)) == set(model.stages)


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")  # a missing data root on purpose
def test_full_profile_smoke_runs_every_model_and_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))  # no real data: the stand-in
    cfg = settings.get(
        "coherence_fid", "full", device="cpu", threads=1, smoke=True,
        models=("JNF-DCCA", "MoPoE", "MMVAE"),
    )  # fmt: skip
    result = coherence_fid.run(cfg)
    assert set(result.metrics) == {"JNF-DCCA", "MoPoE", "MMVAE"}
    assert {k.split("/")[2] for k in result.histories if k.startswith("JNF-DCCA")} == {
        "projectors", "joint", "unimodal"
    }  # fmt: skip
    for m in result.metrics.values():
        assert {"coherence_1_inputs", "coherence_4_inputs", "joint_coherence"} <= set(m)
        assert 0 <= m["coherence_1_inputs"] <= 1
    assert result.fd_key in next(iter(result.metrics.values()))
    assert "FD-proxy" in result.fd_label and "stand-in" in result.source
    text = coherence_fid.summary(result)
    assert "MultiVae benchmark's ordering" in text and result.fd_label in text
