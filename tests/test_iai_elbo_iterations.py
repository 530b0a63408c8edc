"""The iai figure (iai_elbo_iterations): networks, verdicts, validation, the full-profile smoke."""

import math

import pytest
import torch

from repro.papers.iai import elbo_iterations as ei
from repro.papers.iai import settings


def test_networks_give_the_modalities_likelihoods_of_the_data_shapes():
    for networks in ("mlp", "conv"):
        cfg = settings.get("elbo_iterations", "quick", networks=networks, latent_dim=4)
        enc, dec = ei.build_networks(cfg)
        assert sorted(enc) == sorted(dec) == sorted(ei.MODALITIES)
        z = torch.randn(2, 4)
        for m, shape in ei.SHAPES.items():
            q = enc[m](torch.rand(2, *shape))
            assert q.batch_shape == (2,) and q.event_shape == (4,)
            p = dec[m](z)
            assert p.event_shape == shape and p.batch_shape == (2,)
        text = torch.nn.functional.one_hot(torch.randint(0, shape[-1], (2, 8)), shape[-1])
        assert torch.isfinite(dec["text"](z).log_prob(text.float())).all()
    with pytest.raises(ValueError, match="networks"):
        ei.build_networks(settings.get("elbo_iterations", "quick", networks="resnet"))


def test_likelihood_weights_are_mopoe_rec_weights():
    w = ei.likelihood_weights(settings.get("elbo_iterations", "quick"))
    assert w["svhn"] == 1.0
    assert w["mnist"] == pytest.approx(3072 / 784) and w["text"] == pytest.approx(3072 / 568)
    assert (
        ei.likelihood_weights(settings.get("elbo_iterations", "quick", rescale_likelihoods=False))
        is None
    )


def _seed(diff, cos_gain):
    n = len(diff)
    table = {
        "aligned T=3": {"_cosine_refined_per_sample": torch.full((n,), 0.5) + cos_gain},
        "aligned T=0": {"_cosine_refined_per_sample": torch.full((n,), 0.5)},
    }
    return {"diffs": diff, "table": table}


def _table(a, b, c):
    return {
        "aligned T=3": {"probe_accuracy": {"mean": a}},
        "aligned T=0": {"probe_accuracy": {"mean": b}},
        ei.SOURCE: {"probe_accuracy": {"mean": c}},
    }


def test_verdicts_use_paired_differences_per_seed_and_ties_on_shares():
    g = torch.Generator().manual_seed(0)
    up = 5.0 + torch.randn(400, generator=g)  # clearly positive
    flat = torch.randn(400, generator=g) * 10  # mean ~0 within 2 SE
    out = ei.check_predictions(
        [_seed(up, 0.1), _seed(up + 1, 0.1)], _table(0.60, 0.50, 0.62), 1000, 3
    )
    assert out["ELBO at t=3 > source model (t=0)"] == "holds"
    assert out["probe accuracy: aligned T=3 > aligned T=0"] == "holds"
    assert out["probe accuracy: aligned T=3 > PoE source"] == "tie"  # 0.02 on 1000 tuples
    assert out["cosine to refined mean: aligned T=3 > aligned T=0"] == "holds"
    out = ei.check_predictions([_seed(-up, -0.1), _seed(-up, -0.1)], _table(0.3, 0.5, 0.2), 1000, 3)
    assert out["ELBO at t=3 > source model (t=0)"] == "does not hold"
    assert out["probe accuracy: aligned T=3 > aligned T=0"] == "does not hold"
    mixed = ei.check_predictions([_seed(up, 0.1), _seed(flat, 0.1)], _table(0.5, 0.5, 0.5), 1000, 3)
    assert mixed["ELBO at t=3 > source model (t=0)"] == "tie"  # the seeds disagree
    assert ei.check_predictions([], {}, 10, 0) == {}  # no refinement: no claim


def test_bad_iteration_settings_are_refused():
    with pytest.raises(ValueError, match="T_eval"):
        ei.run(settings.get("elbo_iterations", "quick", T_train=(0, 3), T_eval=5))
    with pytest.raises(ValueError, match="T_train"):
        ei.run(settings.get("elbo_iterations", "quick", T_train=()))
    with pytest.raises(ValueError, match="n_seeds"):
        ei.run(settings.get("elbo_iterations", "quick", n_seeds=0))


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")  # a missing data root on purpose
def test_full_profile_smoke_runs_every_stage_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))  # no MNIST/SVHN: the stand-in
    cfg = settings.get("elbo_iterations", "full", device="cpu", threads=1, smoke=True, n_seeds=2)
    assert cfg.networks == "conv" and cfg.source.max_steps == 2 and cfg.refine.max_steps == 2
    result = ei.run(cfg)
    assert "stand-in" in result.source and result.details["n_test"] == 64
    assert sorted(result.metrics["elbo"]) == [1, 5]  # the T = 0 refiner is never trained
    for curve in result.metrics["elbo"].values():
        assert len(curve) == cfg.T_eval + 1 and all(math.isfinite(c["mean"]) for c in curve)
    for gain in result.metrics["elbo_gain"].values():
        assert gain[0] == {"mean": 0.0, "std": 0.0}  # t = 0 is the source model itself
    rows = result.metrics["table"]
    assert list(rows) == [ei.SOURCE, "aligned T=0", "aligned T=1", "aligned T=5"]
    for cols in rows.values():
        assert 0 <= cols["probe_accuracy"]["mean"] <= 1
        assert -1 <= cols["cosine_refined"]["mean"] <= 1 and 0 <= cols["coherence"]["mean"] <= 1
    pairs = result.details["per_seed"][0]["table"][ei.SOURCE]["coherence"]
    expected = [f"{a}->{b}" for a in ei.MODALITIES for b in ei.MODALITIES if a != b]
    assert sorted(pairs) == sorted(expected)
    assert set(result.details["classifier_test_accuracy"]) == {"mnist", "svhn"}
    gens = result.generations
    assert gens["aligned T=5"]["svhn"].shape == (cfg.n_generations, 3, 32, 32)
    assert len(gens[ei.SOURCE]["text"]) == cfg.n_generations
    assert "paper's claims" in ei.summary(result)


def tiny(**overrides):
    """Two seeds of a small MLP model on a few hundred stand-in tuples, one epoch per stage."""
    from repro.config import TrainConfig
    from repro.papers.iai.settings import MSTDataConfig

    quiet = {"restore_best": False, "progress": False}
    fields = {
        "data": MSTDataConfig(n_train=256, n_test=128, n_images=500), "latent_dim": 4,
        "hidden": 16, "refiner_hidden": (16,), "T_train": (0, 1, 2), "T_eval": 4, "K_eval": 2,
        "source": TrainConfig(epochs=1, batch_size=64, **quiet),
        "refine": TrainConfig(epochs=1, batch_size=64, **quiet), "clf_epochs": 1,
        "probe_train": 100, "n_generations": 2,
    }  # fmt: skip
    return settings.get("elbo_iterations", "quick", **{**fields, **overrides})


def _numbers(result):
    return {
        "metrics": result.metrics,
        "details": result.details,
        "generations": result.generations,
    }


def _same(a, b, path=""):
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            _same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, (path, a, b)


@pytest.mark.filterwarnings("ignore:REPRO_DATA=:UserWarning")  # a missing data root on purpose
def test_units_on_the_local_pool_give_the_sequential_numbers_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))  # no MNIST/SVHN: the stand-in
    out = {}
    for executor in ("sequential", "local"):
        monkeypatch.setenv("REPRO_CACHE", str(tmp_path / executor))  # nothing cached
        out[executor] = ei.run(tiny(executor=executor, workers=2))
    seq, pool = out["sequential"], out["local"]
    assert [u.name for u in ei.units(seq.cfg)] == ["seed 0", "seed 1"]
    _same(_numbers(seq), _numbers(pool))
    curves = [s["curves"] for s in seq.details["per_seed"]]
    assert curves[0] != curves[1]  # the seeds differ


def test_the_extrapolation_claim_is_stated_over_seeds():
    g = torch.Generator().manual_seed(1)
    up = 5.0 + torch.randn(400, generator=g)
    seeds = [dict(_seed(up, 0.1), beyond=-up), dict(_seed(up, 0.1), beyond=up)]  # signs differ
    claim = "ELBO keeps rising past the training T (t=T_eval > t=3)"
    assert ei.check_predictions(seeds, _table(0.5, 0.5, 0.5), 1000, 3)[claim] == "tie"
    both = [dict(_seed(up, 0.1), beyond=-up), dict(_seed(up, 0.1), beyond=-up - 1)]
    assert ei.check_predictions(both, _table(0.5, 0.5, 0.5), 1000, 3)[claim] == "does not hold"
