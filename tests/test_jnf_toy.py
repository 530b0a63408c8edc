import dataclasses

import pytest
import torch

from repro import config
from repro.config import ToyDataConfig, TrainConfig
from repro.experiments import jnf_toy


def tiny(seed=0):
    quiet = {"progress": False}
    return config.get(
        "jnf_toy_posteriors", "quick", seed=seed, hidden=32, flow_hidden=(16,), dcca_hidden=(16,),
        dcca_encoder_hidden=(16,), grid_points=21, n_scatter=50, n_shown=4,
        data=ToyDataConfig(n_train=256, n_val=64, n_test=128),
        joint_train=TrainConfig(epochs=2, **quiet), unimodal_train=TrainConfig(epochs=1, **quiet),
        dcca_train=TrainConfig(epochs=1, batch_size=128, optimizer="rmsprop", **quiet),
    )  # fmt: skip


@pytest.fixture(scope="module")
def result():
    return jnf_toy.run_jnf_toy(tiny())


def test_result_has_all_metrics_and_panels(result):
    assert set(result.metrics) == {"gaussian", "flow", "dcca"}
    for m in result.metrics.values():
        assert set(m) == {"class_coherence", "heldout_log_q", "unrealistic_rate"}
        assert 0 <= m["class_coherence"] <= 1 and 0 <= m["unrealistic_rate"] <= 1
    assert result.embedding.shape == (50, 2) and result.density["flow"].shape == (21, 21)
    assert result.shown["dcca"].shape == (4, 1, 32, 32)
    assert set(result.details["paper_predictions"]) == {
        "flow >= gaussian on heldout_log_q",
        "flow > gaussian on class_coherence",
        "dcca > gaussian on class_coherence",
    }
    text = jnf_toy.summary(result)
    assert "gaussian" in text and "paper's predictions" in text


def test_same_seed_gives_identical_metrics(result):
    again = jnf_toy.run_jnf_toy(tiny())
    assert again.metrics == result.metrics
    assert torch.equal(again.density["flow"], result.density["flow"])


def test_another_seed_gives_other_numbers(result):
    other = jnf_toy.run_jnf_toy(tiny(seed=1))
    assert other.metrics != result.metrics


def test_check_predictions_reads_unrounded_values():
    m = {k: {"heldout_log_q": 0.0, "class_coherence": 0.5} for k in ("gaussian", "flow", "dcca")}
    m["flow"]["class_coherence"] = 0.5001
    out = jnf_toy.check_predictions(m)
    assert out["flow > gaussian on class_coherence"] and out["flow >= gaussian on heldout_log_q"]
    assert not out["dcca > gaussian on class_coherence"]


def test_config_get_errors():
    with pytest.raises(ValueError, match="unknown experiment"):
        config.get("nope")
    with pytest.raises(ValueError, match="unknown profile"):
        config.get("jnf_toy_posteriors", "medium")
    with pytest.raises(ValueError, match="no fields"):
        config.get("jnf_toy_posteriors", "quick", epochs=3)
    cfg = config.get("jnf_toy_posteriors", "full")
    assert cfg.data.n_train + cfg.data.n_val + cfg.data.n_test == 200_000
    assert cfg.joint_train.epochs == cfg.unimodal_train.epochs == 150
    assert dataclasses.replace(cfg, seed=3).seed == 3
