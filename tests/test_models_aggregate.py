"""The aggregation models (MVAE, MMVAE, MoPoE, AVG) on tiny two- and three-modality problems."""

import pytest
import torch

import repro.distributions
from repro.config import TrainConfig
from repro.models.avg import AVG
from repro.models.base import MASK, subsets
from repro.models.decoders import MLPDecoder
from repro.models.encoders import MLPEncoder
from repro.models.mmvae import MMVAE
from repro.models.mopoe import MoPoE
from repro.models.mvae import MVAE
from repro.train import fit

SHAPES = {"a": (4,), "b": (3,), "c": (5,)}
D = 2

MODELS = {
    "mvae": lambda e, d: MVAE(e, d, D),
    "mmvae_dreg": lambda e, d: MMVAE(e, d, D, K=4),
    "mmvae_iwae": lambda e, d: MMVAE(e, d, D, K=4, estimator="iwae"),
    "mmvae_elbo": lambda e, d: MMVAE(e, d, D, estimator="elbo"),
    "mopoe": lambda e, d: MoPoE(e, d, D),
    "avg": lambda e, d: AVG(e, d, D),
}


def _nets(names, seed=0):
    torch.manual_seed(seed)
    encoders = {m: MLPEncoder(SHAPES[m], (8,), D) for m in names}
    decoders = {m: MLPDecoder(D, (8,), SHAPES[m], kind="normal", scale=0.3) for m in names}
    return encoders, decoders


def _model(kind, n_modalities, seed=0):
    return MODELS[kind](*_nets("abc"[:n_modalities], seed))


def _data(names, n=64, seed=1):
    """Modalities that share a 2-D latent: x_m = sigmoid(u A_m) + noise."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, 2, generator=g)
    return {
        m: torch.sigmoid(u @ torch.randn(2, SHAPES[m][0], generator=g) * 2)
        + 0.05 * torch.randn(n, *SHAPES[m], generator=g)
        for m in names
    }


@pytest.mark.parametrize("n_modalities", [2, 3])
@pytest.mark.parametrize("kind", list(MODELS))
def test_bound_shape_and_every_parameter_gets_a_gradient(kind, n_modalities):
    model = _model(kind, n_modalities)
    x = _data(model.modalities, n=8)
    value = model.bound(x)
    assert value.shape == (8,) and bool(torch.isfinite(value).all())
    model.zero_grad(set_to_none=True)
    value.mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().max()) > 0, name


@pytest.mark.parametrize("n_modalities", [2, 3])
@pytest.mark.parametrize("kind", list(MODELS))
def test_training_improves_the_bound(kind, n_modalities):
    model = _model(kind, n_modalities)
    data = _data(model.modalities)

    def score():
        model.eval()
        with torch.no_grad():  # common random numbers: the same noise before and after
            return float(model.bound(data, torch.Generator().manual_seed(0)).mean())

    before = score()
    history = fit(model, model.bound, data, TrainConfig(epochs=2, batch_size=16, progress=False))
    assert len(history.train) == 2
    assert score() > before


@pytest.mark.parametrize("n_modalities", [2, 3])
@pytest.mark.parametrize("kind", ["mvae", "mmvae_dreg", "mopoe", "avg"])
def test_generate_from_every_subset_is_seeded(kind, n_modalities):
    model = _model(kind, n_modalities)
    x = _data(model.modalities, n=5)
    for subset in subsets(model.modalities):
        out = model.generate(x, subset, n=3, generator=torch.Generator().manual_seed(4))
        again = model.generate(x, subset, n=3, generator=torch.Generator().manual_seed(4))
        other = model.generate(x, subset, n=3, generator=torch.Generator().manual_seed(5))
        assert sorted(out) == model.modalities
        for m in model.modalities:
            assert out[m].shape == (3, 5, *SHAPES[m])
            torch.testing.assert_close(out[m], again[m], rtol=0, atol=0)
            assert not torch.equal(out[m], other[m])
        assert model.sample_posterior(x, subset, n=2).shape == (2, 5, D)  # global RNG


@pytest.mark.parametrize("n_modalities", [2, 3])
@pytest.mark.parametrize("kind", list(MODELS))
def test_absent_values_are_never_read(kind, n_modalities):
    model = _model(kind, n_modalities)
    x = _data(model.modalities, n=8)
    last = model.modalities[-1]
    mask = torch.ones(8, n_modalities, dtype=torch.bool)
    mask[:4, -1] = False
    values = []
    for fill in (0.0, 7.0):
        placeholder = x[last].clone()
        placeholder[:4] = fill
        batch = {**x, last: placeholder, MASK: mask}
        values.append(model.bound(batch, torch.Generator().manual_seed(3)))
    assert bool(torch.isfinite(values[0]).all())
    torch.testing.assert_close(values[0], values[1], rtol=0, atol=0)
    assert not torch.equal(values[0][4:], model.bound(x, torch.Generator().manual_seed(9))[4:])


@pytest.mark.parametrize("n_modalities", [2, 3])
@pytest.mark.parametrize("kind", list(MODELS))
def test_masked_rows_equal_the_model_without_that_modality(kind, n_modalities, monkeypatch):
    # with the reparameterisation noise switched off every bound is a deterministic function
    # of the data, so "absent" can be compared exactly with "not in the model"; MVAE's random
    # subsets are not defined by the present modalities, so it is compared with k_subsets=0
    monkeypatch.setattr(
        repro.distributions,
        "_noise",
        lambda shape, generator, like: torch.zeros(shape, dtype=like.dtype, device=like.device),
    )
    names = "abc"[:n_modalities]
    encoders, decoders = _nets(names)
    build = MODELS[kind]
    if kind == "mvae":

        def build(e, d):
            return MVAE(e, d, D, k_subsets=0)

    full = build(encoders, decoders)
    reduced = build({m: encoders[m] for m in names[:-1]}, {m: decoders[m] for m in names[:-1]})
    x = _data(names, n=8)
    mask = torch.ones(8, n_modalities, dtype=torch.bool)
    mask[:5, -1] = False
    generator = torch.Generator()
    masked = full.bound({**x, MASK: mask}, generator)
    without = reduced.bound({m: v[:5] for m, v in x.items() if m != names[-1]}, generator)
    torch.testing.assert_close(masked[:5], without)
    torch.testing.assert_close(masked[5:], full.bound({m: v[5:] for m, v in x.items()}, generator))


def test_mvae_random_subsets():
    model = _model("mvae", 3)
    assert model.k_subsets == 1 and _model("mvae", 2).random_subsets() == []
    drawn = model.random_subsets(torch.Generator().manual_seed(0))
    assert len(drawn) == 1 and drawn[0] in [("a", "b"), ("a", "c"), ("b", "c")]
    assert drawn == model.random_subsets(torch.Generator().manual_seed(0))
    model.k_subsets = 5  # capped at the 3 candidates
    assert len(model.random_subsets()) == 3
    x = _data(model.modalities, n=6)
    model.train()
    train = model.bound(x, torch.Generator().manual_seed(1))
    model.eval()
    evaluation = model.bound(x, torch.Generator().manual_seed(1))
    assert not torch.allclose(train, evaluation)  # the subset terms are training-only


def _original_annealing_factor(epoch, batch_idx, n_batches, annealing_epochs):
    """``mhw32/multimodal-vae-public`` ``mnist/train.py:train`` (epochs 1-based)."""
    if epoch < annealing_epochs:
        return (batch_idx + (epoch - 1) * n_batches + 1) / (annealing_epochs * n_batches)
    return 1.0


def test_mvae_warmup_is_the_original_per_batch_ramp():
    model = MVAE(*_nets("ab"), D, beta=2.0, warmup=3, steps_per_epoch=4).train()
    x = _data(model.modalities, n=2)
    for epoch in range(1, 6):
        model.set_epoch(epoch)
        for batch_idx in range(4):
            expected = 2.0 * _original_annealing_factor(epoch, batch_idx, 4, 3)
            assert model.kl_weight() == pytest.approx(expected, rel=1e-15), (epoch, batch_idx)
            model.bound(x)  # one training step
    model.eval()
    model.set_epoch(1)
    assert model.kl_weight() == 2.0  # the original test loop evaluates the full ELBO
    model.bound(x)
    assert model.step == 0  # evaluation does not count as a step


def test_mvae_warmup_through_fit_and_without_set_epoch():
    model = MVAE(*_nets("ab"), D, beta=1.0, warmup=2, steps_per_epoch=3)
    seen = []
    weight = model.kl_weight
    model.kl_weight = lambda: seen.append(weight()) or seen[-1]
    data = _data(model.modalities, n=9)  # 3 batches of 3 per epoch
    fit(model, model.bound, data, TrainConfig(epochs=3, batch_size=3, progress=False))
    per_step = seen[:: 1 + len(model.modalities)]  # joint + unimodal ELBOs share one weight
    expected = [_original_annealing_factor(e, b, 3, 2) for e in (1, 2, 3) for b in range(3)]
    assert per_step == pytest.approx(expected, rel=1e-15)
    assert len(seen) == 9 * (1 + len(model.modalities))
    # without set_epoch (a hand-written loop), the global step count rolls over the epochs
    bare = MVAE(*_nets("ab"), D, warmup=2, steps_per_epoch=3).train()
    values = []
    for _ in range(8):
        values.append(bare.kl_weight())
        bare.bound(data)
    assert values == pytest.approx([1 / 6, 2 / 6, 3 / 6, 1, 1, 1, 1, 1], rel=1e-15)


def test_defaults_follow_the_papers():
    e, d = _nets("ab")
    mmvae = MMVAE(e, d, D)
    assert (mmvae.estimator, mmvae.K) == ("iwae", 30)  # dreg (the paper's) is biased here
    assert MMVAE(e, d, D, estimator="elbo").K == 1
    mopoe = MoPoE(e, d, D)
    assert (mopoe.beta, mopoe.stratified, mopoe.kl_per_modality) == (2.5, "all", False)
    assert mopoe.poe_prior_expert is False
    assert (mopoe.chunk_kl, mopoe.chunk_remainder) == ("mean", "random")
    assert (AVG(e, d, D).beta, AVG(e, d, D).kl_per_modality) == (1.0, False)
    mvae = MVAE(e, d, D)
    assert (mvae.k_subsets, mvae.beta, mvae.warmup, mvae.steps_per_epoch) == (1, 1.0, 0, None)


@pytest.mark.parametrize("kind", ["mopoe", "mmvae_chunks"])
def test_chunk_quirk_in_models(kind):
    e, d = _nets("abc")
    if kind == "mopoe":
        model = MoPoE(e, d, D, stratified="chunks", kl_per_modality=True)
    else:
        model = MMVAE(e, d, D, estimator="elbo", stratified="chunks", kl_per_modality=True)
    x = _data(model.modalities, n=10)
    assert model.bound(x).shape == (10,)
    mask = torch.ones(10, 3, dtype=torch.bool)
    mask[0, 1] = False
    with pytest.raises(ValueError, match="uniform mixture weights"):
        model.bound({**x, MASK: mask})


def test_invalid_arguments():
    e, d = _nets("ab")
    with pytest.raises(ValueError, match="estimator must be"):
        MMVAE(e, d, D, estimator="vimco")
    with pytest.raises(ValueError, match="estimator='elbo' only"):
        MMVAE(e, d, D, estimator="iwae", beta=2.0)
    with pytest.raises(ValueError, match="K must be"):
        MMVAE(e, d, D, K=0)
    with pytest.raises(ValueError, match="stratified must be"):
        MoPoE(e, d, D, stratified="random")
    with pytest.raises(ValueError, match="K must be"):
        AVG(e, d, D, K=0)
    with pytest.raises(ValueError, match="k_subsets"):
        MVAE(e, d, D, k_subsets=-1)
    with pytest.raises(ValueError, match="needs steps_per_epoch"):
        MVAE(e, d, D, warmup=2)
    with pytest.raises(ValueError, match="needs steps_per_epoch"):
        MVAE(e, d, D, warmup=2, steps_per_epoch=0)
    model = AVG(e, d, D)
    with pytest.raises(ValueError, match=r"lacks modalities \['b'\]"):
        model.bound({"a": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match="no expert present"):
        model.bound({**_data("ab", n=2), MASK: torch.tensor([[1, 1], [0, 0]])})


@pytest.mark.parametrize("kind", ["mopoe", "mmvae_chunks"])
def test_chunks_decode_only_the_chosen_component_with_the_same_value(kind, monkeypatch):
    """The efficient chunk path equals decoding every component and keeping row b's chunk."""
    from repro.distributions import stratified_rsample
    from repro.losses.aggregate import chunk_components, stratified_elbo
    from repro.losses.bounds import log_likelihood

    monkeypatch.setattr(
        "repro.distributions._noise", lambda shape, generator, like: torch.zeros(shape).to(like)
    )  # z = the component means on both paths
    e, d = _nets("abc")
    if kind == "mopoe":
        model = MoPoE(e, d, D, stratified="chunks", kl_per_modality=True)
    else:
        model = MMVAE(e, d, D, estimator="elbo", stratified="chunks", kl_per_modality=True)
    x = _data(model.modalities, n=10)
    g = torch.Generator().manual_seed(0)
    q = model.aggregate(model.encode(x))
    z = stratified_rsample(q, (1,), g)  # (1, C, B, D): every component decoded
    log_px = log_likelihood(model.decode(z), x)
    kls = torch.distributions.kl_divergence(q.component_distribution, model.prior()).T
    if kind == "mopoe":  # the official MoPoE: the subset-averaged KL, leftover rows drawn
        index = chunk_components(10, 7, "random", torch.Generator().manual_seed(0))
        full = stratified_elbo(log_px, kls, None, model.beta, "chunks", True, 3, "mean", index)
    else:  # mmvmvae's MoE: the chosen component's KL, leftover rows to the last component
        full = stratified_elbo(log_px, kls, None, model.beta, "chunks", True, 3)
    torch.testing.assert_close(model.bound(x, generator=torch.Generator().manual_seed(0)), full)
    shapes = []
    for dec in model.decoders.values():
        dec.register_forward_pre_hook(lambda mod, inp: shapes.append(tuple(inp[0].shape)))
    model.bound(x, generator=g)
    assert shapes == [(1, 10, D)] * 3  # one decode of the 10 rows per modality, not (1, C, 10, D)
