import io
import json
from dataclasses import replace

import pytest
import torch
from torch.distributions import Distribution
from tqdm.std import tqdm as std_tqdm

from repro import train
from repro.config import TrainConfig
from repro.models.base import Stage
from repro.runtime import resolve_device
from repro.train import batches, fit, fit_stages


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


# -- checkpoints that cannot be resumed ---------------------------------------------------------


def _good_checkpoint(path):
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.1, progress=False, checkpoint=True)
    model = Quadratic()
    fit(model, model.bound, _data(), cfg, checkpoint=path)
    return cfg, path.read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_damaged_checkpoint_names_file_stage_and_recovery(tmp_path, damage):
    ckpt = tmp_path / "joint.pt"
    cfg, good = _good_checkpoint(ckpt)
    damaged = {
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "garbage": b"not a checkpoint\x00" * 9,
    }
    ckpt.write_bytes(damaged[damage])
    other = tmp_path / "projectors.pt"
    other.write_bytes(good)
    with pytest.raises(train.CheckpointError) as info:
        fit(Quadratic(), Quadratic().bound, _data(), cfg, checkpoint=ckpt, desc="stage 1: joint")
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert str(ckpt) in message and "stage 1: joint" in message and "delete" in message
    assert "other stages" in message
    assert ckpt.read_bytes() == damaged[damage]  # nothing deleted behind the user's back
    assert other.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == [
        "joint.pt",
        "projectors.pt",
    ]


def test_checkpoint_missing_keys_is_a_checkpoint_error(tmp_path):
    ckpt = tmp_path / "c.pt"
    cfg, _ = _good_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)
    del state["optimizer"], state["rng"]
    torch.save(state, ckpt)
    with pytest.raises(train.CheckpointError, match=r"lacks the keys \['optimizer', 'rng'\]"):
        fit(Quadratic(), Quadratic().bound, _data(), cfg, checkpoint=ckpt, desc="quad")
    torch.save([1, 2, 3], ckpt)
    with pytest.raises(train.CheckpointError, match="quad.*delete"):
        fit(Quadratic(), Quadratic().bound, _data(), cfg, checkpoint=ckpt, desc="quad")


# -- NaN guard, progress bar, epoch hook ---------------------------------------------------------


def test_nan_validation_value_raises_naming_stage_epoch_and_validation():
    model = Quadratic()
    val = {"x": torch.tensor([[0.0, 0.0], [float("nan"), 1.0]])}
    with pytest.raises(FloatingPointError, match="quad: validation value is nan at epoch 1"):
        fit(model, model.bound, _data(), CFG, val_data=val, desc="quad")
    val = {"x": torch.tensor([[float("inf"), 0.0]])}
    with pytest.raises(FloatingPointError, match="validation"):
        fit(Quadratic(), model.bound, _data(), CFG, val_data=val)


def test_nan_guard_without_per_step_sync_still_names_epoch_and_step(monkeypatch):
    monkeypatch.setattr(train, "_check_each_step", lambda device: False)  # the GPU path
    model = Quadratic()
    calls = {"n": 0}

    def objective(batch):
        calls["n"] += 1
        value = model.bound(batch)
        return value * float("nan") if calls["n"] in (7, 8) else value

    with pytest.raises(FloatingPointError, match="loss is nan at epoch 2, step 3"):
        fit(model, objective, _data(), CFG, desc="quad")

    def raises_on_nan(batch):  # an objective that fails on NaN parameters, mid-epoch
        calls["n"] += 1
        if calls["n"] > 2 and torch.isnan(model.w).any():
            raise RuntimeError("cholesky failed")
        return model.bound(batch) * (float("nan") if calls["n"] == 2 else 1.0)

    calls["n"], model = 0, Quadratic()
    with pytest.raises(FloatingPointError, match="epoch 1, step 2") as info:
        fit(model, raises_on_nan, _data(), CFG)
    assert "cholesky" in str(info.value.__cause__)


class _Bars:
    """Stand-in for tqdm that records its arguments and renders to a string."""

    def __init__(self):
        self.kwargs, self.text = [], io.StringIO()

    def __call__(self, *args, **kwargs):
        self.kwargs.append(kwargs)
        return std_tqdm(*args, file=self.text, mininterval=0, **kwargs)


def test_progress_bar_counts_all_epochs_after_resume(tmp_path, monkeypatch):
    monkeypatch.delenv(train.PROGRESS_ENV, raising=False)
    monkeypatch.delenv(train.HEADLESS_ENV, raising=False)
    cfg = TrainConfig(epochs=5, batch_size=16, lr=0.1, progress=True, checkpoint=True)
    model = Quadratic()
    calls = {"n": 0}

    def dies_in_epoch_3(batch):
        calls["n"] += 1
        if calls["n"] == 2 * 4 + 1:
            raise KeyboardInterrupt
        return model.bound(batch)

    with pytest.raises(KeyboardInterrupt):
        fit(
            model, dies_in_epoch_3, _data(), replace(cfg, progress=False), checkpoint=tmp_path / "c"
        )
    bars = _Bars()
    monkeypatch.setattr(train, "tqdm", bars)
    history = fit(model, model.bound, _data(), cfg, checkpoint=tmp_path / "c")
    assert history.resumed_from == 2
    assert bars.kwargs[0]["total"] == 5 and bars.kwargs[0]["initial"] == 2
    assert not bars.kwargs[0]["disable"]
    text = bars.text.getvalue()
    assert "2/5" in text and "5/5" in text and "0/3" not in text


def test_headless_runs_draw_no_progress_bar(monkeypatch):
    bars = _Bars()
    monkeypatch.setattr(train, "tqdm", bars)
    monkeypatch.delenv(train.PROGRESS_ENV, raising=False)
    monkeypatch.setenv(train.HEADLESS_ENV, "1")
    model = Quadratic()
    fit(model, model.bound, _data(), replace(CFG, progress=True))
    assert bars.kwargs[-1]["disable"] and bars.text.getvalue() == ""


class WarmUp(Quadratic):
    """Records the epochs passed to set_epoch, and the epoch each step saw."""

    def __init__(self):
        super().__init__()
        self.epoch, self.calls, self.seen = 0, [], []

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.calls.append(epoch)

    def bound(self, batch):
        self.seen.append((self.training, self.epoch))
        return super().bound(batch)


def test_set_epoch_is_called_every_epoch_and_after_resume(tmp_path):
    model = WarmUp()
    val = {"x": torch.zeros(8, 2)}
    fit(model, model.bound, _data(), CFG, val_data=val)
    assert model.calls == [1, 2, 3, 4]
    assert (False, 2) in model.seen and (True, 4) in model.seen  # validation sees its epoch
    assert all(e >= 1 for _, e in model.seen)
    cfg = replace(CFG, checkpoint=True)
    first = WarmUp()
    fit(first, first.bound, _data(), replace(cfg, epochs=2), checkpoint=tmp_path / "c.pt")
    resumed = WarmUp()
    with pytest.raises(ValueError, match="another config"):  # epochs are part of the identity
        fit(resumed, resumed.bound, _data(), cfg, checkpoint=tmp_path / "c.pt")
    fit(resumed, resumed.bound, _data(), replace(cfg, epochs=2), checkpoint=tmp_path / "c.pt")
    assert resumed.calls == [2]  # a finished run: the schedule is left at its last epoch
    hook = []
    fit(Quadratic(), Quadratic().bound, _data(), CFG, on_epoch=hook.append)
    assert hook == [1, 2, 3, 4]


# -- speed: optimiser kernels, distribution validation -------------------------------------------


def test_adam_uses_fused_kernel_where_supported_and_falls_back():
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert train._optimizer(params, CFG).param_groups[0]["fused"] is True
    meta = [torch.nn.Parameter(torch.zeros(3, device="meta"))]
    assert not train._optimizer(meta, CFG).param_groups[0]["fused"]
    rms = train._optimizer(params, replace(CFG, optimizer="rmsprop"))
    assert isinstance(rms, torch.optim.RMSprop)


def test_distribution_validation_is_off_in_fit_and_restored_even_on_error():
    before = Distribution._validate_args
    model = Quadratic()
    seen = []

    def objective(batch):
        seen.append(Distribution._validate_args)
        return model.bound(batch)

    fit(model, objective, _data(), CFG, val_data={"x": torch.zeros(4, 2)})
    assert seen and not any(seen) and Distribution._validate_args is before

    def boom(batch):
        raise KeyError("boom")

    with pytest.raises(KeyError):
        fit(Quadratic(), boom, _data(), CFG)
    assert Distribution._validate_args is before
    with pytest.raises(ZeroDivisionError), train.distribution_validation(not before):
        assert Distribution._validate_args is (not before)
        raise ZeroDivisionError
    assert Distribution._validate_args is before


def test_training_values_are_exact_sums_of_step_losses():
    model = Quadratic()
    data = _data()
    losses = []

    def objective(batch):
        value = model.bound(batch)
        losses.append(float(value.detach().sum()))
        return value

    history = fit(model, objective, data, replace(CFG, epochs=1))
    assert history.train[0] == pytest.approx(sum(losses) / 64, rel=1e-12)


# -- fit_stages ---------------------------------------------------------------------------------


class TwoStages(torch.nn.Module):
    """``first`` fits w to the data mean; ``second`` fits v to the prepared key ``y = 2x``."""

    stages = ("first", "second")

    def __init__(self):
        super().__init__()
        self.a, self.b = Quadratic(), Quadratic()
        self.epochs = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def prepare_stage(self, stage):
        self.requires_grad_(False)
        if stage == "first":
            self.a.requires_grad_(True)
            return self.a, self.a.bound  # a plain pair, as older models return

        def bound(batch):
            return -(batch["y"] - self.b.w).pow(2).sum(-1)

        self.b.requires_grad_(True)
        return Stage(self.b, bound, lambda data: {"y": 2 * data["x"]})


def test_fit_stages_trains_named_stages_in_order_with_prepared_data(tmp_path):
    model = TwoStages()
    cfg = TrainConfig(
        epochs=30, batch_size=16, lr=0.1, progress=False, checkpoint=True, restore_best=False
    )
    histories = fit_stages(
        model,
        _data(),
        {"second": cfg, "first": replace(cfg, epochs=2)},
        val_data={"x": torch.ones(4, 2)},
        checkpoints={"second": tmp_path / "second.pt"},
        descs={"first": "stage 1"},
    )
    assert list(histories) == ["first", "second"]
    assert model.epochs == [1, 2, *range(1, 31)]
    assert len(histories["second"].val) == 30 and (tmp_path / "second.pt").exists()
    assert not (tmp_path / "first.pt").exists()
    target = 2 * _data()["x"].mean(0)  # the prepared data reached the bound
    torch.testing.assert_close(model.b.w.detach(), target, atol=0.1, rtol=0)
    only = TwoStages()
    assert list(fit_stages(only, _data(), {"second": replace(cfg, epochs=1)})) == ["second"]
    assert torch.equal(only.a.w, torch.zeros(2))
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['third'\]"):
        fit_stages(TwoStages(), _data(), {"third": cfg})


# -- progress records for the batch runner -------------------------------------------------------


def test_progress_file_gets_one_record_per_epoch(tmp_path, monkeypatch):
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(train.PROGRESS_ENV, str(path))
    model = Quadratic()
    fit(model, model.bound, _data(), CFG, val_data={"x": torch.zeros(4, 2)}, desc="quad")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2, 3, 4]
    assert {r["desc"] for r in records} == {"quad"} and {r["epochs"] for r in records} == {4}
    assert [r["start"] for r in records] == [True, False, False, False, False]
    assert records[0]["train"] is None and all(isinstance(r["train"], float) for r in records[1:])
    assert all(isinstance(r["val"], float) for r in records[1:])
    assert all(r["elapsed"] >= 0 for r in records)


def test_unwritable_progress_file_never_fails_training(tmp_path, monkeypatch):
    monkeypatch.setenv(train.PROGRESS_ENV, str(tmp_path / "missing" / "folder" / "p.jsonl"))
    model = Quadratic()
    history = fit(model, model.bound, _data(), CFG)
    assert len(history.train) == 4
    monkeypatch.setenv(train.PROGRESS_ENV, str(tmp_path))  # a folder, not a file
    assert len(fit(model, model.bound, _data(), CFG).train) == 4


def test_resume_across_optimizer_kernels(tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.1, progress=False, checkpoint=True)
    straight = Quadratic()
    fit(straight, straight.bound, _data(), cfg)
    with monkeypatch.context() as patch:  # a checkpoint from an unfused Adam (older versions)
        patch.setattr(train, "_fused_devices", set)
        killed = Quadratic()
        fit(killed, killed.bound, _data(), replace(cfg, epochs=2), checkpoint=tmp_path / "a.pt")
        state = torch.load(tmp_path / "a.pt", weights_only=True)
        assert not state["optimizer"]["param_groups"][0]["fused"]
        state["cfg"]["epochs"] = 4  # continue it as a 4-epoch run
        torch.save(state, tmp_path / "a.pt")
    resumed = Quadratic()
    history = fit(resumed, resumed.bound, _data(), cfg, checkpoint=tmp_path / "a.pt")
    assert history.resumed_from == 2 and len(history.train) == 4
    saved = torch.load(tmp_path / "a.pt", weights_only=True)["optimizer"]["param_groups"][0]
    assert saved["fused"] is True
    torch.testing.assert_close(resumed.w, straight.w, atol=0.2, rtol=0)


def test_max_steps_limits_the_steps_of_every_epoch():
    model = Quadratic()
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.1, progress=False, max_steps=2)
    history = fit(model, model.bound, _data(64), cfg)
    assert history.samples == 3 * 2 * 16 and len(history.train) == 3
    with pytest.raises(ValueError, match="max_steps >= 0"):
        TrainConfig(max_steps=-1)


def test_smoke_config_keeps_the_architecture_and_cuts_the_work():
    from repro.config import smoke
    from repro.papers.jnf import settings

    full = settings.get("toy_posteriors", "full")
    small = smoke(full)
    assert small.smoke and small.hidden == full.hidden and small.flow_hidden == full.flow_hidden
    assert small.data.n_train == 64 and small.data.size == full.data.size
    for name in ("joint_train", "unimodal_train", "dcca_train"):
        tc = getattr(small, name)
        assert (tc.epochs, tc.max_steps, tc.checkpoint) == (1, 2, False)
        assert tc.batch_size == getattr(full, name).batch_size
