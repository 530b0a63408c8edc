import dataclasses

import pytest
import torch

from repro.config import TrainConfig
from repro.metrics.coherence import within_noise
from repro.papers.jnf import settings, toy_posteriors
from repro.papers.jnf.settings import ToyDataConfig


def tiny(seed=0, **overrides):
    quiet = {"progress": False}
    return settings.get(
        "toy_posteriors", "quick", seed=seed, hidden=32, flow_hidden=(16,), dcca_hidden=(16,),
        dcca_encoder_hidden=(16,), grid_points=21, n_scatter=50, n_shown=4,
        data=ToyDataConfig(n_train=256, n_val=64, n_test=128),
        joint_train=TrainConfig(epochs=2, **quiet), unimodal_train=TrainConfig(epochs=1, **quiet),
        dcca_train=TrainConfig(epochs=1, batch_size=128, optimizer="rmsprop", **quiet),
        **overrides,
    )  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    """The units' results in a folder of this module (a test that reruns takes its own)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def result():
    return toy_posteriors.run(tiny())


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
    # a correlation is at most 1; the regularised DCCA objective is reported under its own name
    assert 0.0 <= result.details["dcca_val_correlation"] <= 1.0
    assert "dcca_val_objective" in result.details
    text = toy_posteriors.summary(result)
    assert "gaussian" in text and "paper's predictions" in text


def test_same_seed_gives_identical_metrics(result, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))  # trained again, not read from the cache
    again = toy_posteriors.run(tiny())
    assert again.metrics == result.metrics
    assert torch.equal(again.density["flow"], result.density["flow"])


def test_another_seed_gives_other_numbers(result):
    other = toy_posteriors.run(tiny(seed=1))
    assert other.metrics != result.metrics


def test_check_predictions_reads_unrounded_values():
    m = {k: {"heldout_log_q": 0.0, "class_coherence": 0.5} for k in ("gaussian", "flow", "dcca")}
    m["flow"]["class_coherence"] = 0.5001
    m["dcca"]["class_coherence"] = 0.4999
    out = toy_posteriors.check_predictions(m, n_test=10**9)  # huge n: no tie
    assert out["flow > gaussian on class_coherence"] == "holds"
    assert out["flow >= gaussian on heldout_log_q"] == "holds"
    assert out["dcca > gaussian on class_coherence"] == "does not hold"
    tied = toy_posteriors.check_predictions(m, n_test=2000)  # 1e-4 apart: within 2 SE
    assert tied["flow > gaussian on class_coherence"] == "tie"
    assert tied["flow >= gaussian on heldout_log_q"] == "holds"  # a mean, never a tie


def test_config_get_errors():
    with pytest.raises(ValueError, match="unknown experiment"):
        settings.get("nope")
    with pytest.raises(ValueError, match="unknown profile"):
        settings.get("toy_posteriors", "medium")
    with pytest.raises(ValueError, match="no fields"):
        settings.get("toy_posteriors", "quick", epochs=3)
    cfg = settings.get("toy_posteriors", "full")
    assert cfg.profile == "full" and settings.get("toy_posteriors", "quick").profile == "quick"
    assert cfg.data.n_train + cfg.data.n_val + cfg.data.n_test == 200_000
    assert cfg.joint_train.epochs == cfg.unimodal_train.epochs == 150
    assert dataclasses.replace(cfg, seed=3).seed == 3


def test_within_noise_flags_ties_between_shares():
    assert within_noise(0.937, 0.936, 2000)  # 0.001 apart, SE about 0.0077
    assert not within_noise(0.95, 0.81, 30000)
    assert not within_noise(0.5, 0.4, 2000)


def test_full_profile_smoke_runs_every_stage_at_paper_architecture():
    cfg = settings.get("toy_posteriors", "full", device="cpu", smoke=True)
    assert cfg.smoke and cfg.profile == "full" and cfg.hidden == 512  # the paper's networks
    assert cfg.data.n_train == 64 and cfg.joint_train.epochs == 1
    assert cfg.joint_train.max_steps == 2 and not cfg.joint_train.checkpoint
    result = toy_posteriors.run(dataclasses.replace(cfg, threads=1))
    assert set(result.histories) == {"projectors", "joint", "gaussian", "flow", "dcca"}
    for history in result.histories.values():
        assert len(history.train) == 1 and history.samples <= 2 * 256
    assert set(result.metrics) == {"gaussian", "flow", "dcca"}


def _same(a, b, path=""):
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            _same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, (path, a, b)


def test_units_on_the_local_pool_give_the_sequential_numbers_bit_for_bit(tmp_path, monkeypatch):
    out = {}
    for executor in ("sequential", "local"):
        monkeypatch.setenv("REPRO_CACHE", str(tmp_path / executor))  # nothing cached
        out[executor] = toy_posteriors.run(tiny(executor=executor, workers=2))
    seq, pool = out["sequential"], out["local"]
    assert [u.name for u in toy_posteriors.units(seq.cfg)] == ["gaussian", "flow", "dcca"]
    timing = ("train_samples_per_second", "train_seconds")
    _same(
        {k: v for k, v in seq.details.items() if k not in timing},
        {k: v for k, v in pool.details.items() if k not in timing},
    )
    assert seq.metrics == pool.metrics
    for field in ("embedding", "colour", "grid"):
        assert torch.equal(getattr(seq, field), getattr(pool, field)), field
    _same(seq.density, pool.density)
    _same(seq.shown, pool.shown)
    _same(seq.shown_realistic, pool.shown_realistic)


def test_each_posterior_continues_from_stage_1_alone(tmp_path, monkeypatch):
    """A posterior's unit does not depend on the others: each starts where stage 1 ended."""
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    cfg = tiny(executor="sequential")
    first = toy_posteriors.train_joint(cfg)
    assert set(first["histories"]) == {"projectors", "joint"}
    dcca = toy_posteriors.train_posterior(cfg, "dcca")  # without the Gaussian and flow units
    result = toy_posteriors.run(cfg)
    assert dcca["metrics"] == result.metrics["dcca"]
    assert torch.equal(dcca["density"], result.density["dcca"])
