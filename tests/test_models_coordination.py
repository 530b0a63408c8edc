"""JMVAE, MVTCAE and CRMVAE on tiny two- and three-modality data."""

import pytest
import torch

from repro.config import TrainConfig
from repro.distributions import gaussian_params, product_of_experts
from repro.losses.coordination import jmvae_kl
from repro.models.base import MASK, subsets
from repro.models.crmvae import CRMVAE
from repro.models.decoders import MLPDecoder
from repro.models.encoders import JointMLPEncoder, MLPEncoder
from repro.models.jmvae import JMVAE
from repro.models.mvtcae import MVTCAE
from repro.train import evaluate, fit

DIM, D = 6, 2  # observation size, latent size
KINDS = ("jmvae", "mvtcae", "crmvae", "crmvae_half")


def _mods(n):
    return tuple("abc"[:n])


def _nets(mods):
    encoders = {m: MLPEncoder((DIM,), (16,), D) for m in mods}
    decoders = {m: MLPDecoder(D, (16,), (DIM,), kind="normal", scale=0.1) for m in mods}
    return encoders, decoders


def _model(kind, n=2, **kwargs):
    mods = _mods(n)
    encoders, decoders = _nets(mods)
    if kind == "jmvae":
        joint = JointMLPEncoder({m: (DIM,) for m in mods}, D, hidden=16, joint_hidden=(16,))
        return JMVAE(joint, encoders, decoders, D, **{"warmup": 2, **kwargs})
    if kind == "mvtcae":
        return MVTCAE(encoders, decoders, D, **kwargs)
    kwargs.setdefault("recon_weight", "half" if kind == "crmvae_half" else "docstring")
    return CRMVAE(encoders, decoders, D, **kwargs)


def _data(n_mods=2, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, D, generator=g)
    return {
        m: torch.sigmoid(z @ torch.randn(D, DIM, generator=g))
        + 0.05 * torch.randn(n, DIM, generator=g)
        for m in _mods(n_mods)
    }


@pytest.mark.parametrize("n_mods", [2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_bound_shape_and_every_parameter_gets_a_gradient(kind, n_mods):
    model = _model(kind, n_mods)
    model.set_epoch(model.warmup if kind == "jmvae" else 1)  # JMVAE: after warm-up
    value = model.bound(_data(n_mods, 8))
    assert value.shape == (8,) and bool(torch.isfinite(value).all())
    value.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


@pytest.mark.parametrize("n_mods", [2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_fit_improves_the_bound(kind, n_mods):
    model = _model(kind, n_mods)
    data = _data(n_mods)
    model.set_epoch(3)  # JMVAE (warm-up 2): compare the fully weighted bound before and after
    before = evaluate(model, model.bound, data, 64)
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-2, progress=False)
    history = fit(model, model.bound, data, cfg)
    assert model.epoch == 3  # fit drives the warm-up through set_epoch
    after = evaluate(model, model.bound, data, 64)
    assert len(history.train) == 3
    assert after - before > 0.1 * abs(before)  # seen: 14-26 % on these seeds


@pytest.mark.parametrize("n_mods", [2, 3])
@pytest.mark.parametrize("kind", [*KINDS, "jmvae_hmc"])
def test_generate_from_every_subset_is_seeded(kind, n_mods):
    if kind == "jmvae_hmc":
        hmc = {"n_steps": 2, "n_leapfrog": 2, "step_size": 0.05}
        model = _model("jmvae", n_mods, subset_posterior="hmc", hmc_kwargs=hmc)
    else:
        model = _model(kind, n_mods)
    x = _data(n_mods, 5)
    for subset in subsets(model.modalities):
        out = model.generate(x, subset, n=3, generator=torch.Generator().manual_seed(1))
        again = model.generate(x, subset, n=3, generator=torch.Generator().manual_seed(1))
        other = model.generate(x, subset, n=3, generator=torch.Generator().manual_seed(2))
        assert sorted(out) == model.modalities
        for m in model.modalities:
            assert out[m].shape == (3, 5, DIM)
            torch.testing.assert_close(out[m], again[m])
            assert not torch.equal(out[m], other[m])


# -- JMVAE -----------------------------------------------------------------------------------
def test_jmvae_annealing_follows_multivae():
    model = _model("jmvae", warmup=10)
    # jmvae_model.py:178-181: epoch / warmup while epoch < warmup, then 1 (1-based epochs)
    expected = {0: 0.0, 1: 0.1, 5: 0.5, 9: 0.9, 10: 1.0, 25: 1.0}
    assert {e: model.annealing_factor(e) for e in expected} == pytest.approx(expected)
    model.set_epoch(4)
    assert model.annealing_factor() == pytest.approx(0.4)
    assert _model("jmvae", warmup=0).annealing_factor(0) == 1.0


def _jmvae_bound_by_hand(model, x, w, seed):
    torch.manual_seed(seed)
    qz_x = model.joint_encoder(x)
    z = qz_x.rsample()
    log_px = {m: model.decoders[m](z).log_prob(x[m]) for m in model.modalities}
    rec = sum(log_px.values())
    full = jmvae_kl(log_px, qz_x, model.encode(x), model.prior(), alpha=0.1 * w, beta=w, z=z)
    return rec, full


@pytest.mark.parametrize("epoch,w", [(0, 0.0), (1, 0.5), (2, 1.0), (7, 1.0)])
def test_jmvae_warmup_weights_both_kl_terms(epoch, w):
    model = _model("jmvae", 3, warmup=2)
    x = _data(3, 8)
    model.set_epoch(epoch)
    torch.manual_seed(3)
    value = model.bound(x)
    rec, expected = _jmvae_bound_by_hand(model, x, w, 3)
    torch.testing.assert_close(value, expected)
    if w == 0:
        torch.testing.assert_close(value, rec)
    else:
        assert bool((value < rec).all())


def test_jmvae_unimodal_encoders_train_only_once_the_warmup_starts():
    model = _model("jmvae", 2, warmup=2)
    x = _data(2, 8)
    for epoch, trained in ((0, False), (1, True), (2, True)):
        model.zero_grad(set_to_none=True)
        model.set_epoch(epoch)
        model.bound(x).mean().backward()
        grads = [p.grad for p in model.encoders.parameters()]
        assert all(g is not None for g in grads)
        assert any(bool(g.any()) for g in grads) == trained, epoch


def test_jmvae_partial_subsets_are_multivae_poe():
    model = _model("jmvae", 3)
    x = _data(3, 5)
    q = model.posterior(x, ["a", "c"])
    expected = product_of_experts([model.encoders["a"](x["a"]), model.encoders["c"](x["c"])])
    for got, want in zip(gaussian_params(q), gaussian_params(expected), strict=True):
        torch.testing.assert_close(got, want)
    assert type(_model("jmvae", 3, subset_posterior="hmc").posterior(x, ["a", "c"])).__name__ == (
        "SubsetPosterior"
    )
    loc, _ = gaussian_params(model.posterior(x))
    torch.testing.assert_close(loc, gaussian_params(model.joint_encoder(x))[0])


def test_jmvae_needs_complete_batches():
    model = _model("jmvae", 2)
    batch = {**_data(2, 4), MASK: torch.tensor([[True, True], [True, False]] * 2)}
    with pytest.raises(ValueError, match="complete batches"):
        model.bound(batch)


# -- masks (MVTCAE, CRMVAE) ------------------------------------------------------------------
MASKED_KINDS = ("mvtcae", "crmvae", "crmvae_half")


def _mask(n, n_mods, seed=4):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, n_mods, generator=g) < 0.5
    mask[torch.arange(n), torch.randint(n_mods, (n,), generator=g)] = True
    return mask


@pytest.mark.parametrize("kind", MASKED_KINDS)
def test_masked_posterior_is_the_product_of_present_experts(kind):
    model = _model(kind, 3)
    x, mask = _data(3, 12), _mask(12, 3)
    no_prior = product_of_experts([model.encoders[m](x[m]) for m in model.modalities])
    for got, want in zip(
        gaussian_params(model.posterior(x)), gaussian_params(no_prior), strict=True
    ):
        torch.testing.assert_close(got, want)  # PoE without prior expert
    loc, scale = gaussian_params(model.posterior(x, mask=mask))
    for b in range(12):
        present = [m for m, p in zip(model.modalities, mask[b], strict=True) if p]
        q = model.posterior({m: x[m][b : b + 1] for m in present}, present)
        torch.testing.assert_close(loc[b], q.mean[0])
        torch.testing.assert_close(scale[b], q.stddev[0])


@pytest.mark.parametrize("kind", MASKED_KINDS)
def test_masked_bound_ignores_absent_values_and_equals_the_submodel_bound(kind):
    model = _model(kind, 3)
    x, mask = _data(3, 12), _mask(12, 3)
    torch.manual_seed(5)
    value = model.bound({**x, MASK: mask})
    poisoned = {m: torch.where(mask[:, i, None], x[m], 1e3) for i, m in enumerate(model.modalities)}
    torch.manual_seed(5)
    torch.testing.assert_close(model.bound({**poisoned, MASK: mask}), value)
    # every sample without "c" (last, so the noise sequence is unchanged): the sub-model on
    # (a, b) with the same modules and noise
    mask[:, 2] = False
    mask[:, 0] = True
    torch.manual_seed(6)
    value = model.bound({**x, MASK: mask})
    sub = type(model)(
        {m: model.encoders[m] for m in "ab"},
        {m: model.decoders[m] for m in "ab"},
        D,
        **({"recon_weight": model.recon_weight} if kind != "mvtcae" else {}),
    )
    torch.manual_seed(6)
    sub_value = sub.bound({m: x[m] for m in "ab"} | {MASK: mask[:, :2]})
    torch.testing.assert_close(value, sub_value)
    torch.manual_seed(6)
    complete = mask[:, 1]  # rows with a and b present: the unmasked sub-model
    assert 0 < int(complete.sum()) < 12
    unmasked = sub.bound({m: x[m] for m in "ab"})
    torch.testing.assert_close(unmasked[complete], sub_value[complete])


@pytest.mark.parametrize("kind", MASKED_KINDS)
def test_multivae_modality_count_differs_only_under_masks(kind):
    present, total = _model(kind, 3), _model(kind, 3, modality_count="all")
    total.load_state_dict(present.state_dict())
    x, mask = _data(3, 12), _mask(12, 3)
    values = []
    for model, batch in ((present, x), (total, x), (present, {**x, MASK: mask})):
        torch.manual_seed(7)
        values.append(model.bound(batch))
    torch.manual_seed(7)
    masked_total = total.bound({**x, MASK: mask})
    torch.testing.assert_close(values[0], values[1])
    partial = mask.sum(-1) < 3
    assert not torch.allclose(values[2][partial], masked_total[partial])
    torch.testing.assert_close(values[2][~partial], masked_total[~partial])


@pytest.mark.parametrize("kind", MASKED_KINDS)
def test_masked_training_step_reaches_every_parameter(kind):
    model = _model(kind, 3)
    x, mask = _data(3, 16), _mask(16, 3)
    model.bound({**x, MASK: mask}).mean().backward()
    assert all(p.grad is not None and p.grad.any() for p in model.parameters())


def test_crmvae_recon_weight_halves_only_the_reconstruction():
    doc, half = _model("crmvae", 2, beta=1.0), _model("crmvae_half", 2, beta=1.0)
    half.load_state_dict(doc.state_dict())
    x = _data(2, 8)
    torch.manual_seed(8)
    a = doc.bound(x)
    torch.manual_seed(8)
    b = half.bound(x)
    rec_only = _model("crmvae", 2, beta=0.0)
    rec_only.load_state_dict(doc.state_dict())
    torch.manual_seed(8)
    r = rec_only.bound(x)  # beta = 0: the reconstruction terms alone, pi-weighted
    torch.testing.assert_close(a - b, r / 2)


# -- argument checks -------------------------------------------------------------------------
def test_invalid_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="alpha=2"):
        _model("mvtcae", alpha=2)
    with pytest.raises(ValueError, match="'third'"):
        _model("crmvae", recon_weight="third")
    with pytest.raises(ValueError, match="'some'"):
        _model("mvtcae", modality_count="some")
    with pytest.raises(ValueError, match="warmup=-1"):
        _model("jmvae", warmup=-1)
    with pytest.raises(ValueError, match="'exact'"):
        _model("jmvae", subset_posterior="exact")
    with pytest.raises(ValueError, match=r"\['z'\]"):
        _model("mvtcae", weights={"z": 2.0})
    with pytest.raises(ValueError, match=r"lacks modalities \['b'\]"):
        _model("mvtcae").bound({"a": torch.zeros(2, DIM)})
