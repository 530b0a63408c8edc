from dataclasses import replace

import pytest
import torch

from repro.config import TrainConfig
from repro.runtime import resolve_device
from repro.train import batches, fit


class Quadratic(torch.nn.Module):
    """Maximise -(w - x)^2: the optimum is the data mean."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))

    def bound(self, batch):
        return -(batch["x"] - self.w).pow(2).sum(-1) + 0.01 * torch.randn(len(batch["x"]))


def _data(n=64):
    return {"x": torch.randn(n, 2, generator=torch.Generator().manual_seed(0)) + 3.0}


CFG = TrainConfig(epochs=4, batch_size=16, lr=0.1, progress=False)


def test_fit_converges_and_records_history():
    model = Quadratic()
    history = fit(
        model, model.bound, _data(), TrainConfig(epochs=60, batch_size=16, lr=0.1, progress=False)
    )
    torch.testing.assert_close(model.w.detach(), _data()["x"].mean(0), atol=0.1, rtol=0)
    assert (
        len(history.train) == 60 and history.samples == 60 * 64 and history.samples_per_second > 0
    )


def test_nan_guard_names_epoch_and_step():
    model = Quadratic()
    calls = {"n": 0}

    def objective(batch):
        calls["n"] += 1
        value = model.bound(batch)
        return value * float("nan") if calls["n"] == 7 else value

    with pytest.raises(FloatingPointError, match="epoch 2, step 3"):
        fit(model, objective, _data(), CFG, desc="quad")


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.1, progress=False, checkpoint=True)
    torch.manual_seed(1)
    straight = Quadratic()
    h1 = fit(straight, straight.bound, _data(), cfg, generator=torch.Generator().manual_seed(5))

    torch.manual_seed(1)
    killed = Quadratic()
    calls = {"n": 0}

    def dies_in_epoch_3(batch):
        calls["n"] += 1
        if calls["n"] == 2 * 4 + 2:  # 4 steps per epoch: dies at epoch 3, step 2
            raise KeyboardInterrupt
        return killed.bound(batch)

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(
            killed,
            dies_in_epoch_3,
            _data(),
            cfg,
            generator=torch.Generator().manual_seed(5),
            checkpoint=ckpt,
        )
    assert ckpt.exists()
    resumed = Quadratic()  # a fresh process: new model, generator and RNG state
    torch.manual_seed(999)
    h2 = fit(
        resumed,
        resumed.bound,
        _data(),
        cfg,
        generator=torch.Generator().manual_seed(0),
        checkpoint=ckpt,
    )
    assert h2.resumed_from == 2
    torch.testing.assert_close(resumed.w, straight.w, rtol=0, atol=0)
    assert h2.train == h1.train
    with pytest.raises(ValueError, match="another config"):
        fit(
            Quadratic(),
            resumed.bound,
            _data(),
            TrainConfig(epochs=5, checkpoint=True, progress=False),
            checkpoint=ckpt,
        )


def test_restore_best_keeps_best_validation_epoch():
    model = Quadratic()
    val = {"x": torch.zeros(8, 2)}  # validation prefers w = 0: the first epoch is best
    history = fit(model, model.bound, _data(), CFG, val_data=val)
    assert history.best_epoch == 1 and len(history.val) == 4
    assert max(history.val) == history.val[0]


def test_no_trainable_parameter_and_bad_inputs():
    model = Quadratic()
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        fit(model, model.bound, _data(), CFG)
    with pytest.raises(ValueError, match="equal length"):
        list(batches({"a": torch.zeros(3), "b": torch.zeros(4)}, 2))
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_batches_cover_data_once_and_accept_iterables():
    data = {"x": torch.arange(10)}
    seen = torch.cat([b["x"] for b in batches(data, 3, torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
    loader = [{"x": torch.ones(2)}, {"x": torch.zeros(2)}]
    assert list(batches(loader, 99)) == loader


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda"}
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


def test_resume_ignores_runtime_only_fields(tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.1, progress=False, checkpoint=True)
    model = Quadratic()
    fit(model, model.bound, _data(), cfg, checkpoint=tmp_path / "c.pt")
    again = Quadratic()
    history = fit(
        again, again.bound, _data(), replace(cfg, progress=True), checkpoint=tmp_path / "c.pt"
    )
    assert history.resumed_from == 2
    torch.testing.assert_close(again.w, model.w, rtol=0, atol=0)
