"""The MMVM VAE on tiny two- and three-modality problems."""

import pytest
import torch

import repro.distributions
from repro.config import TrainConfig
from repro.distributions import rsample
from repro.losses.bounds import elbo
from repro.models.base import MASK, subsets
from repro.models.decoders import MLPDecoder
from repro.models.encoders import MLPEncoder
from repro.models.mmvm import MMVMVAE, independent_vaes
from repro.train import fit

SHAPES = {"a": (4,), "b": (3,), "c": (5,)}
D = 2


def _nets(names, seed=0):
    torch.manual_seed(seed)
    encoders = {m: MLPEncoder(SHAPES[m], (8,), D) for m in names}
    decoders = {m: MLPDecoder(D, (8,), SHAPES[m], kind="normal", scale=0.3) for m in names}
    return encoders, decoders


def _data(names, n=64, seed=1):
    """Modalities that share a 2-D latent: x_m = sigmoid(u A_m) + noise."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, 2, generator=g)
    return {
        m: torch.sigmoid(u @ torch.randn(2, SHAPES[m][0], generator=g) * 2)
        + 0.05 * torch.randn(n, *SHAPES[m], generator=g)
        for m in names
    }


def _zero_noise(monkeypatch):
    monkeypatch.setattr(
        repro.distributions,
        "_noise",
        lambda shape, generator, like: torch.zeros(shape, dtype=like.dtype, device=like.device),
    )


@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_alpha_one_is_the_sum_of_independent_elbos(beta):
    model = independent_vaes(*_nets("abc"), D, beta=beta)
    assert (model.alpha, model.mixture_kl) == (1.0, "pairwise_bound")
    x = _data(model.modalities, n=8)
    value = model.bound(x, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # same noise, drawn in modality order
    expected = 0.0
    for m in model.modalities:
        q = model.encoders[m](x[m])
        z = rsample(q, (1,), g)
        expected = expected + elbo({m: x[m]}, q, {m: model.decoders[m](z)}, model.prior(), z, beta)
    torch.testing.assert_close(value, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mixture_kl", ["pairwise_bound", "mc"])
@pytest.mark.parametrize("n_modalities", [2, 3])
def test_bound_shape_and_every_parameter_gets_a_gradient(n_modalities, mixture_kl):
    model = MMVMVAE(*_nets("abc"[:n_modalities]), D, mixture_kl=mixture_kl)
    value = model.bound(_data(model.modalities, n=8))
    assert value.shape == (8,) and bool(torch.isfinite(value).all())
    value.mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().max()) > 0, name


@pytest.mark.parametrize("mixture_kl", ["pairwise_bound", "mc"])
def test_training_improves_the_bound(mixture_kl):
    model = MMVMVAE(*_nets("abc"), D, mixture_kl=mixture_kl)
    data = _data(model.modalities)

    def score():
        with torch.no_grad():  # common random numbers: the same noise before and after
            return float(model.bound(data, torch.Generator().manual_seed(0)).mean())

    before = score()
    history = fit(model, model.bound, data, TrainConfig(epochs=2, batch_size=16, progress=False))
    assert len(history.train) == 2
    assert score() > before


def test_generate_from_every_subset_is_seeded():
    model = MMVMVAE(*_nets("abc"), D)
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


def test_posterior_is_the_uniform_mixture_of_the_subset():
    model = MMVMVAE(*_nets("abc"), D)
    x = _data(model.modalities, n=5)
    q = model.posterior(x, ["a", "c"])
    probs = q.mixture_distribution.probs
    torch.testing.assert_close(probs, torch.full((5, 2), 0.5))
    torch.testing.assert_close(
        q.component_distribution.base_dist.loc[:, 1], model.encoders["c"](x["c"]).base_dist.loc
    )


@pytest.mark.parametrize("mixture_kl", ["pairwise_bound", "mc"])
def test_masked_rows_equal_the_model_without_that_modality(mixture_kl, monkeypatch):
    # without reparameterisation noise the bound is a deterministic function of the data
    _zero_noise(monkeypatch)
    encoders, decoders = _nets("abc")
    full = MMVMVAE(encoders, decoders, D, mixture_kl=mixture_kl)
    reduced = MMVMVAE(
        {m: encoders[m] for m in "ab"}, {m: decoders[m] for m in "ab"}, D, mixture_kl=mixture_kl
    )
    x = _data("abc", n=8)
    mask = torch.ones(8, 3, dtype=torch.bool)
    mask[:5, -1] = False
    placeholder = x["c"].clone()
    placeholder[:5] = 7.0  # never read
    generator = torch.Generator()
    masked = full.bound({**x, "c": placeholder, MASK: mask}, generator)
    without = reduced.bound({m: v[:5] for m, v in x.items() if m != "c"}, generator)
    torch.testing.assert_close(masked[:5], without)
    torch.testing.assert_close(masked[5:], full.bound({m: v[5:] for m, v in x.items()}, generator))


def test_mc_differs_from_and_lies_below_the_pairwise_bound():
    encoders, decoders = _nets("abc")
    pairwise = MMVMVAE(encoders, decoders, D)
    mc = MMVMVAE(encoders, decoders, D, mixture_kl="mc", mc_samples=64)
    x = _data("abc", n=32)
    with torch.no_grad():
        experts = pairwise.encode(x)
        upper = pairwise.regularisers(experts)
        estimate = mc.regularisers(experts, generator=torch.Generator().manual_seed(0))
        assert upper.shape == estimate.shape == (3, 32)
        assert not torch.allclose(upper, estimate)
        assert float(estimate.mean()) < float(upper.mean())
        g = torch.Generator().manual_seed(1)
        assert not torch.allclose(pairwise.bound(x, g), mc.bound(x, torch.Generator()))


def test_defaults_and_argument_errors():
    e, d = _nets("ab")
    model = MMVMVAE(e, d, D)
    assert (model.beta, model.alpha, model.mixture_kl) == (1.0, 0.0, "pairwise_bound")
    for kwargs, match in [
        ({"mixture_kl": "exact"}, "mixture_kl"),
        ({"alpha": -0.1}, "alpha"),
        ({"beta": -1.0}, "beta"),
        ({"mc_samples": 0}, "mc_samples"),
    ]:
        with pytest.raises(ValueError, match=match):
            MMVMVAE(e, d, D, **kwargs)
