"""Fig. 4 of the MMVM paper (mmvm_latents): every method at paper scale, and the verdicts."""

import pytest
import torch

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
        == "does not hold"
    )


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown method"):
        latents.build_model("PoE", settings.get("latents", "quick"), dict.fromkeys(RATS, 10))


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")  # a missing data root on purpose
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


def test_binned_counts_is_the_poisson_of_the_counts_on_the_data_scale():
    from repro.papers.mmvm.networks import BinnedCounts

    rate = torch.tensor([[0.2, 1.5, 3.0]])
    x = torch.tensor([[0.0, 0.1, 0.2]])  # counts 0, 1, 2 in 10 one-ms bins
    p = BinnedCounts(rate)
    reference = torch.distributions.Poisson(rate).log_prob(torch.tensor([[0.0, 1.0, 2.0]]))
    torch.testing.assert_close(p.log_prob(x), reference)
    torch.testing.assert_close(p.mean, rate / 10)
    draws = p.sample((50,))
    torch.testing.assert_close(draws * 10, (draws * 10).round())  # multiples of 1/10
    wide = p.expand(torch.Size([4, 3]))
    assert isinstance(wide, BinnedCounts) and wide.batch_shape == (4, 3)


def test_poisson_spike_decoder_builds_every_method_with_a_finite_bound():
    from repro.papers.mmvm.networks import SpikeDecoder

    with pytest.raises(ValueError, match="unknown likelihood"):
        SpikeDecoder(2, 8, 10, likelihood="bernoulli")
    cfg = settings.get("latents", "quick", likelihood="poisson", hidden=8)
    dims = dict.fromkeys(RATS, 10)
    x = {r: torch.randint(0, 3, (5, 10)).double() / 10 for r in RATS}
    for method in latents.METHODS:
        model = latents.build_model(method, cfg, dims)
        value = model.bound(x)
        assert value.shape == (5,) and torch.isfinite(value).all()
        value.mean().backward()
        assert all(p.grad is not None for p in model.decoders.parameters())


def test_spike_encoder_log_variance_is_clamped_not_zero():
    from repro.papers.mmvm.networks import LOGVAR_BOUNDS, SpikeEncoder

    assert SpikeEncoder(6, 4).logvar_bounds is None  # the code: no clamp
    enc = SpikeEncoder(6, 4, logvar_bounds=LOGVAR_BOUNDS).double()
    torch.nn.init.constant_(enc.logvar.bias, -1e4)  # a collapsing head
    q = enc(torch.randn(3, 6, dtype=torch.float64))
    expected = torch.exp(torch.tensor(0.5 * LOGVAR_BOUNDS[0], dtype=torch.float64))
    torch.testing.assert_close(q.base_dist.scale, expected.expand(3, 2))
    torch.nn.init.zeros_(enc.logvar.bias)  # inside the bounds the clamp changes nothing
    torch.nn.init.zeros_(enc.logvar.weight)
    torch.testing.assert_close(enc(torch.randn(3, 6, dtype=torch.float64)).base_dist.scale,
                               torch.ones(3, 2, dtype=torch.float64))  # fmt: skip


def test_spike_encoder_floors_the_log_variance_in_evaluation_only():
    from repro.papers.mmvm.networks import EVAL_LOGVAR_FLOOR, SpikeEncoder
    from repro.train import distribution_validation

    enc = SpikeEncoder(6, 4).float()  # float32, no bounds: as the code trains it
    torch.nn.init.zeros_(enc.logvar.weight)
    torch.nn.init.constant_(enc.logvar.bias, -300.0)  # AVG's drifting expert: exp(-150) == 0
    x = torch.randn(3, 6, dtype=torch.float32)
    with distribution_validation(False), torch.no_grad():  # as in the training loop
        trained = enc.train()(x)
        assert bool((trained.base_dist.scale == 0).all())  # training is untouched
        q = enc.eval()(x)
    floor = torch.exp(torch.tensor(0.5 * EVAL_LOGVAR_FLOOR, dtype=torch.float32))
    torch.testing.assert_close(q.base_dist.scale, floor.expand(3, 2))
    assert bool((q.variance >= torch.finfo(torch.float32).tiny).all())
    torch.testing.assert_close(q.mean, trained.mean, rtol=0, atol=0)
    torch.nn.init.constant_(enc.logvar.bias, -60.0)  # above the floor: eval == train
    with torch.no_grad():
        torch.testing.assert_close(enc.eval()(x).stddev, enc.train()(x).stddev, rtol=0, atol=0)


def tiny(**overrides):
    """A few trials, narrow networks, one epoch: the run's every path in seconds."""
    from repro.config import TrainConfig
    from repro.papers.mmvm.settings import NeuralDataConfig

    return settings.get(
        "latents", "quick", hidden=8, data=NeuralDataConfig(n_trials_per_odor=10),
        train=TrainConfig(epochs=1, batch_size=64, lr=3e-3, restore_best=False, progress=False),
        mlp_hidden=(16,), mlp_epochs=1, **overrides,
    )  # fmt: skip


def _numbers(details):
    """``details`` without the throughput (a timing, not a result)."""
    return {
        k: {kk: vv for kk, vv in v.items() if kk != "train_samples_per_second"}
        if isinstance(v, dict) and "train_samples_per_second" in v
        else v
        for k, v in details.items()
    }


def test_units_on_the_local_pool_give_the_sequential_numbers_bit_for_bit(tmp_path, monkeypatch):
    out = {}
    for executor in ("sequential", "local"):
        monkeypatch.setenv("REPRO_CACHE", str(tmp_path / executor))  # nothing cached
        out[executor] = latents.run(tiny(executor=executor, workers=2))
    seq, pool = out["sequential"], out["local"]
    assert list(seq.metrics) == list(latents.METHODS)
    assert seq.metrics == pool.metrics
    assert _numbers(seq.details) == _numbers(pool.details)
    for method in latents.METHODS:
        for rat in RATS:
            assert torch.equal(seq.means[method][rat], pool.means[method][rat]), (method, rat)
    assert seq.metrics["MMVM"] != seq.metrics["AVG"]


def test_units_are_the_methods_and_a_rerun_reads_them_from_the_cache(tmp_path, monkeypatch):
    from repro import jobs

    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    cfg = tiny(methods=("independent", "MMVM"), executor="sequential")
    assert [u.name for u in latents.units(cfg)] == ["independent", "MMVM"]
    first = latents.run(cfg)
    for unit in latents.units(cfg):
        assert jobs.result_path(cfg.name, unit).is_file()
    calls = []
    monkeypatch.setattr(latents, "fit_stages", lambda *a, **k: calls.append(a))
    again = latents.run(cfg)  # every unit finished: nothing is trained
    assert not calls and again.metrics == first.metrics
