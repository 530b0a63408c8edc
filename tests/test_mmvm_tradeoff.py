"""Fig. 3 of the MMVM paper (mmvm_beta_tradeoff): aggregation over seeds, verdicts, full smoke."""

import pytest

from repro.papers.mmvm import settings, tradeoff


def _run(method, beta, seed, **values):
    row = {"method": method, "beta": beta, "seed": seed}
    row.update({k: values.get(k, 0.5) for k in tradeoff.METRICS})
    return row


def test_aggregate_gives_seed_mean_and_sample_std_per_method_and_beta():
    runs = [
        _run("MMVM", 1e-3, 0, within_rat_accuracy=0.4, reconstruction_error=1.0),
        _run("MMVM", 1e-3, 1, within_rat_accuracy=0.6, reconstruction_error=3.0),
        _run("MMVM", 1e-2, 0, within_rat_accuracy=0.3),
    ]
    agg = tradeoff.aggregate(runs)
    cell = agg["MMVM"]["0.001"]
    assert cell["within_rat_accuracy"]["mean"] == pytest.approx(0.5)
    assert cell["within_rat_accuracy"]["std"] == pytest.approx(0.1 * 2**0.5)  # sample sd
    assert cell["reconstruction_error"] == {"mean": 2.0, "std": pytest.approx(2**0.5), "n": 2}
    assert agg["MMVM"]["0.01"]["within_rat_accuracy"] == {"mean": 0.3, "std": 0.0, "n": 1}


def test_verdicts_count_betas_with_ties_on_held_out_trials():
    runs = []
    for beta, (a, b) in {1e-4: (0.80, 0.30), 1e-3: (0.33, 0.31), 1e-2: (0.10, 0.60)}.items():
        runs += [_run("MMVM", beta, 0, within_rat_accuracy=a),
                 _run("independent", beta, 0, within_rat_accuracy=b)]  # fmt: skip
    verdicts = tradeoff.check_predictions(tradeoff.aggregate(runs), n_trials=40)
    assert verdicts["MMVM > independent in latent accuracy"] == (
        "holds at 1, tie at 1, does not hold at 1 of 3 betas"
    )
    assert (
        verdicts["MMVM > independent in coherence"]
        == "holds at 0, tie at 3, does not hold at 0 of 3 betas"
    )
    assert tradeoff.check_predictions(tradeoff.aggregate(runs[1::2]), 40) == {}  # no MMVM


def test_bad_grid_is_refused():
    with pytest.raises(ValueError, match="betas"):
        tradeoff.run(settings.get("tradeoff", "quick", betas=()))
    with pytest.raises(ValueError, match="n_seeds"):
        tradeoff.run(settings.get("tradeoff", "quick", n_seeds=0))


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")  # a missing data root on purpose
def test_full_profile_smoke_runs_every_method_beta_and_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))  # no recordings: the simulator
    cfg = settings.get(
        "tradeoff", "full", device="cpu", threads=1, smoke=True, betas=(1e-4, 1e-2), n_seeds=2
    )
    assert cfg.hidden == 0 and cfg.train.max_steps == 2  # the paper's widths, two steps
    result = tradeoff.run(cfg)
    assert len(result.runs) == 4 * 2 * 2  # methods x betas x seeds
    assert set(result.metrics) == {"independent", "AVG", "MoPoE", "MMVM"}
    for by_beta in result.metrics.values():
        assert sorted(by_beta) == ["0.0001", "0.01"]
        for cell in by_beta.values():
            assert cell["within_rat_accuracy"]["n"] == 2
            assert 0 <= cell["coherence"]["mean"] <= 1
            assert cell["reconstruction_error"]["mean"] > 0
    assert "paper's claim" in tradeoff.summary(result)


def tiny(**overrides):
    """Two methods, two betas, two seeds, narrow networks, one epoch."""
    from repro.config import TrainConfig
    from repro.papers.mmvm.settings import NeuralDataConfig

    fields = {
        "methods": ("AVG", "MMVM"), "betas": (1e-3, 1e-2), "n_seeds": 2, "hidden": 8,
        "data": NeuralDataConfig(n_trials_per_odor=10), "mlp_hidden": (16,), "mlp_epochs": 1,
        "train": TrainConfig(epochs=1, batch_size=64, lr=1e-2, restore_best=False, progress=False),
    }  # fmt: skip
    return settings.get("tradeoff", "quick", **{**fields, **overrides})


def _numbers(runs):
    return [{k: v for k, v in r.items() if k != "train_samples_per_second"} for r in runs]


def test_units_on_the_local_pool_give_the_sequential_numbers_bit_for_bit(tmp_path, monkeypatch):
    out = {}
    for executor in ("sequential", "local"):
        monkeypatch.setenv("REPRO_CACHE", str(tmp_path / executor))  # nothing cached
        out[executor] = tradeoff.run(tiny(executor=executor, workers=2))
    seq, pool = out["sequential"], out["local"]
    assert [(r["method"], r["beta"], r["seed"]) for r in seq.runs] == [
        (m, b, s) for m in ("AVG", "MMVM") for b in (1e-3, 1e-2) for s in (0, 1)
    ]
    assert _numbers(seq.runs) == _numbers(pool.runs)
    assert seq.metrics == pool.metrics
    assert seq.details["classifier_test_accuracy"] == pool.details["classifier_test_accuracy"]
    assert seq.runs[0]["reconstruction_error"] != seq.runs[1]["reconstruction_error"]  # seeds


def test_a_unit_is_one_method_beta_and_seed_independent_of_the_others(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    cfg = tiny(executor="sequential")
    names = [u.name for u in tradeoff.units(cfg)]
    assert len(names) == 8 and names[0] == "AVG beta 0.001 seed 0"
    alone = tradeoff.run(tiny(methods=("MMVM",), betas=(1e-2,), n_seeds=2, executor="sequential"))
    both = tradeoff.run(cfg)
    mmvm = [r for r in both.runs if r["method"] == "MMVM" and r["beta"] == 1e-2]
    assert _numbers(alone.runs) == _numbers(mmvm)
