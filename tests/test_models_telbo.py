"""TELBO: the triple ELBO on the exact linear-Gaussian model, its two stages, subsets."""

import pytest
import torch
from torch import nn
from torch.distributions import Distribution, kl_divergence

import repro.models
from repro.config import TrainConfig
from repro.distributions import diag_gaussian, gaussian_params, product_of_experts
from repro.models.base import MASK, subsets
from repro.models.decoders import MLPDecoder
from repro.models.encoders import JointMLPEncoder, MLPEncoder
from repro.models.telbo import TELBO
from repro.train import fit, fit_stages
from tests.linear_gaussian import LinearGaussian

DIM, D = 6, 2  # observation size, latent size of the MLP models
B = 8


# -- the exact linear-Gaussian model as encoders and decoders ----------------------------------
class NoClosedForm(Distribution):
    """Hides the closed-form KL: ``repro.losses.kl`` then estimates it at the model's sample."""

    arg_constraints = {}
    has_rsample = True

    def __init__(self, d):
        super().__init__(d.batch_shape, d.event_shape, validate_args=False)
        self.d = d

    def rsample(self, sample_shape=()):
        return self.d.rsample(sample_shape)

    def log_prob(self, value):
        return self.d.log_prob(value)


def _perturb(q, shift, stretch):
    return diag_gaussian(q.mean + shift, q.stddev * stretch)


class LGEncoder(nn.Module):
    """``p(z|x_m)`` (or ``p(z|X)`` for ``m=None``), optionally perturbed or without closed KL."""

    def __init__(self, lg, m=None, shift=0.0, stretch=1.0, hide_kl=False):
        super().__init__()
        self.lg, self.m, self.shift, self.stretch, self.hide_kl = lg, m, shift, stretch, hide_kl

    def forward(self, x):
        q = self.lg.posterior(x) if self.m is None else self.lg.posterior({self.m: x}, [self.m])
        q = _perturb(q, self.shift, self.stretch)
        return NoClosedForm(q) if self.hide_kl else q


class LGDecoder(nn.Module):
    def __init__(self, lg, m):
        super().__init__()
        self.lg, self.m = lg, m

    def forward(self, z):
        return self.lg.decoder(self.m, z)


@pytest.fixture(params=[2, 3], ids=["M2", "M3"])
def lg(request):
    return LinearGaussian.random(modalities=tuple(f"m{i}" for i in range(request.param)))


@pytest.fixture
def x(lg):
    return lg.sample(B, torch.Generator().manual_seed(7))[1]


def _lg_telbo(lg, joint=(0.0, 1.0), uni=(0.0, 1.0), hide_kl=False, **kwargs):
    encoders = {m: LGEncoder(lg, m, *uni, hide_kl=hide_kl) for m in lg.modalities}
    decoders = {m: LGDecoder(lg, m) for m in lg.modalities}
    return TELBO(LGEncoder(lg, None, *joint, hide_kl=hide_kl), encoders, decoders, lg.dim, **kwargs)


def _evidences(lg, x):
    joint = lg.log_evidence(x)
    unimodal = sum(lg.log_evidence(x, [m]) for m in lg.modalities)
    return joint, unimodal


# -- closed form -------------------------------------------------------------------------------
def test_bound_is_the_sum_of_evidences_per_sample_at_exact_posteriors(lg, x):
    # at the exact posteriors log p(x|z) + log p(z) - log q(z) = log p(x) for every z: with the
    # KLs estimated at the model's own samples, one sample gives the evidences exactly
    model = _lg_telbo(lg, hide_kl=True)
    joint, unimodal = _evidences(lg, x)
    torch.testing.assert_close(model.bound(x), joint + unimodal)
    torch.testing.assert_close(model.joint_bound(x), joint)
    torch.testing.assert_close(model.unimodal_bound(x), unimodal)
    for m, value in model.unimodal_elbos(x).items():
        torch.testing.assert_close(value, lg.log_evidence(x, [m]))


def _repeat(x, n):
    return {m: v.repeat(n, 1) for m, v in x.items()}


def _mc_mean(values, n):
    """Mean over the ``n`` repeats of each sample, and 5 standard errors (plus float slack)."""
    values = values.reshape(n, -1)
    return values.mean(0), 5 * values.std(0) / n**0.5 + 1e-9


@pytest.mark.parametrize("perturbed", [False, True], ids=["exact", "perturbed"])
def test_bound_with_closed_form_kls_matches_evidences_minus_kl_gaps(lg, x, perturbed):
    # E[bound] = log p(X) - KL(q(z|X) || p(z|X)) + sum_m [log p(x_m) - KL(q_m || p(z|x_m))]
    joint_q, uni_q = ((0.3, 1.4), (-0.2, 0.7)) if perturbed else ((0.0, 1.0), (0.0, 1.0))
    model = _lg_telbo(lg, joint_q, uni_q)
    n = 4000
    joint, unimodal = _evidences(lg, x)
    gap = kl_divergence(_perturb(lg.posterior(x), *joint_q), lg.posterior(x))
    for m in lg.modalities:
        exact = lg.posterior(x, [m])
        gap = gap + kl_divergence(_perturb(exact, *uni_q), exact)
    assert bool((gap > 0.1).all()) == perturbed
    mean, tol = _mc_mean(model.bound(_repeat(x, n)), n)
    assert bool(((mean - (joint + unimodal - gap)).abs() < tol).all())
    if perturbed:
        assert bool((mean + tol < joint + unimodal).all())


def test_unimodal_weights_scale_only_the_self_reconstructions(lg, x):
    plain, weighted = _lg_telbo(lg), _lg_telbo(lg, unimodal_weights={m: 2.0 for m in lg.modalities})
    torch.manual_seed(3)
    a = plain.bound(x)
    torch.manual_seed(3)
    b = weighted.bound(x)
    torch.manual_seed(3)
    z = plain.joint_encoder(x).rsample()  # the same draws, in the order bound() takes them
    assert z.shape == (B, lg.dim)
    uni = {m: q.rsample() for m, q in plain.encode(x).items()}
    rec = sum(lg.decoder(m, uni[m]).log_prob(x[m]) for m in lg.modalities)
    torch.testing.assert_close(b - a, rec)


# -- tiny MLP models ---------------------------------------------------------------------------
def _mods(n):
    return tuple("abc"[:n])


def _model(n=2, **kwargs):
    mods = _mods(n)
    encoders = {m: MLPEncoder((DIM,), (16,), D) for m in mods}
    decoders = {m: MLPDecoder(D, (16,), (DIM,), kind="normal", scale=0.1) for m in mods}
    joint = JointMLPEncoder({m: (DIM,) for m in mods}, D, hidden=16, joint_hidden=(16,))
    return TELBO(joint, encoders, decoders, D, **kwargs)


def _data(n_mods=2, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, D, generator=g)
    return {
        m: torch.sigmoid(z @ torch.randn(D, DIM, generator=g))
        + 0.05 * torch.randn(n, DIM, generator=g)
        for m in _mods(n_mods)
    }


def _groups(model):
    return {
        "joint_encoder": list(model.joint_encoder.parameters()),
        "decoders": list(model.decoders.parameters()),
        "encoders": list(model.encoders.parameters()),
    }


TRAINS = {"joint": ("joint_encoder", "decoders"), "unimodal": ("encoders",)}


@pytest.mark.parametrize("n_mods", [2, 3])
def test_shapes(n_mods):
    model = _model(n_mods)
    x = _data(n_mods, B)
    assert model.stages == ("joint", "unimodal")
    for value in (model.bound(x), model.joint_bound(x), model.unimodal_bound(x)):
        assert value.shape == (B,) and bool(torch.isfinite(value).all())
    for subset in subsets(model.modalities):
        q = model.posterior(x, subset)
        assert q.batch_shape == (B,) and q.event_shape == (D,)


@pytest.mark.parametrize("stage", ["joint", "unimodal"])
def test_each_stage_gives_gradients_only_to_its_parameters(stage):
    model = _model(3)
    prepared = model.prepare_stage(stage)
    trainable = {id(p) for p in prepared.module.parameters() if p.requires_grad}
    everything = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == everything  # nothing outside the stage's module is trainable
    prepared.bound(_data(3, B)).mean().backward()
    for group, params in _groups(model).items():
        if group in TRAINS[stage]:
            assert all(id(p) in trainable for p in params)
            assert all(p.grad is not None and p.grad.any() for p in params), group
        else:
            assert not any(p.requires_grad for p in params), group
            assert all(p.grad is None for p in params), group


def test_stage_two_loss_never_moves_the_decoders_or_the_joint_encoder():
    # even an optimiser over every parameter of the model leaves them where they are
    model = _model(2)
    model.prepare_stage("unimodal")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        (-model.unimodal_bound(_data(2, B)).mean()).backward()
        optimizer.step()
    for key, value in model.state_dict().items():
        moved = not torch.equal(value, before[key])
        assert moved == key.startswith("encoders."), key


def test_fit_stages_trains_each_stage_and_changes_only_its_weights():
    model = _model(2)
    data = _data(2)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2, progress=False)
    snapshots = [{k: v.clone() for k, v in model.state_dict().items()}]
    for stage in model.stages:
        before_stage = model.prepare_stage(stage).bound
        torch.manual_seed(1)
        start = before_stage(data).mean()
        fit_stages(model, data, {stage: cfg})
        torch.manual_seed(1)
        assert before_stage(data).mean() > start  # each stage improves its own objective
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
    prefixes = {"joint": ("joint_encoder.", "decoders."), "unimodal": ("encoders.",)}
    for stage, before, after in zip(model.stages, snapshots[:-1], snapshots[1:], strict=True):
        for key in before:
            moved = not torch.equal(before[key], after[key])
            assert moved == key.startswith(prefixes[stage]), (stage, key)


def test_a_joint_train_step_changes_weights_and_an_eval_does_not():
    model = _model(2)
    data = _data(2, 16)
    before = [p.clone() for p in model.joint_encoder.parameters()]

    def unchanged():
        params = model.joint_encoder.parameters()
        return [torch.equal(a, b) for a, b in zip(before, params, strict=True)]

    model.bound(data)
    assert all(unchanged())
    stage = model.prepare_stage("joint")
    fit(stage.module, stage.bound, data, TrainConfig(epochs=1, batch_size=16, progress=False))
    assert not any(unchanged())


# -- posteriors and generation -----------------------------------------------------------------
def test_posterior_routes_to_joint_unimodal_and_prior_product():
    model = _model(3)
    x = _data(3, 5)
    pairs = [
        (model.posterior(x), model.joint_encoder(x)),
        (model.posterior(x, ["b"]), model.encoders["b"](x["b"])),
        (
            model.posterior(x, ["a", "c"]),
            product_of_experts(
                [model.encoders["a"](x["a"]), model.encoders["c"](x["c"])], prior=model.prior()
            ),
        ),
    ]
    for got, want in pairs:
        for g, w in zip(gaussian_params(got), gaussian_params(want), strict=True):
            torch.testing.assert_close(g, w)
    hmc = _model(3, subset_posterior="hmc").posterior(x, ["a", "c"])
    assert type(hmc).__name__ == "SubsetPosterior"


@pytest.mark.parametrize("n_mods", [2, 3])
@pytest.mark.parametrize("subset_posterior", ["poe_prior", "hmc"])
def test_generate_from_every_subset_is_seeded(n_mods, subset_posterior):
    hmc = {"n_steps": 2, "n_leapfrog": 2, "step_size": 0.05}
    model = _model(n_mods, subset_posterior=subset_posterior, hmc_kwargs=hmc)
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


# -- MultiVae's stage-2 KL ---------------------------------------------------------------------
def test_multivae_unimodal_kl_reproduces_its_expression():
    exact, multivae = _model(2), _model(2, unimodal_kl="multivae")
    multivae.load_state_dict(exact.state_dict())
    x = _data(2, B)
    torch.manual_seed(4)
    value = multivae.unimodal_bound(x)
    torch.manual_seed(4)
    reference = exact.unimodal_bound(x)
    # telbo_model.py:105-122 (negated loss): sum_m log p(x_m|z_m) + 1/2 sum(1 + log s_J^2
    # - mu_m^2 - s_m^2), with the *joint* log-variance
    torch.manual_seed(4)
    _, joint_scale = gaussian_params(exact.joint_encoder(x))
    hand = 0.0
    for m in exact.modalities:
        q_m = exact.encoders[m](x[m])
        mu, scale = gaussian_params(q_m)
        rec = exact.decoders[m](q_m.rsample()).log_prob(x[m])
        hand = hand + rec + 0.5 * (1 + 2 * joint_scale.log() - mu**2 - scale**2).sum(-1)
    torch.testing.assert_close(value, hand)
    assert not torch.allclose(value, reference)
    torch.manual_seed(5)
    true_bound = multivae.bound(x)  # bound() is the triple ELBO whatever the stage-2 KL
    torch.manual_seed(5)
    torch.testing.assert_close(true_bound, exact.bound(x))


# -- refusals ----------------------------------------------------------------------------------
def test_needs_complete_batches_and_valid_arguments():
    model = _model(2)
    batch = {**_data(2, 4), MASK: torch.tensor([[True, True], [True, False]] * 2)}
    for method in (model.bound, model.joint_bound, model.unimodal_bound):
        with pytest.raises(ValueError, match="complete batches"):
            method(batch)
    with pytest.raises(ValueError, match="'exact'"):
        _model(2, subset_posterior="exact")
    with pytest.raises(ValueError, match="'wrong'"):
        _model(2, unimodal_kl="wrong")
    with pytest.raises(ValueError, match=r"\['z'\]"):
        _model(2, unimodal_weights={"z": 2.0})
    with pytest.raises(ValueError, match="unknown stage 'train'"):
        model.prepare_stage("train")
    assert repro.models.TELBO is TELBO
