import pytest
import torch

from repro.config import TrainConfig
from repro.distributions import product_of_experts
from repro.flows import FlowPosterior
from repro.models.decoders import (
    ConvDecoder,
    FixedScaleLaplace,
    FixedScaleNormal,
    MLPDecoder,
    likelihood,
)
from repro.models.encoders import ConvEncoder, JointMLPEncoder, MLPEncoder, ProjectedEncoder, mlp
from repro.models.jnf import JNF, QZ_LOC
from repro.models.joint import JointVAE, SubsetPosterior
from repro.train import evaluate, fit

SHAPE = (1, 6, 6)
MODS = ("a", "b", "c")


def _model(flows=True, projectors=False, d=2):
    joint_encoder = JointMLPEncoder({m: SHAPE for m in MODS}, d, hidden=16, joint_hidden=(16,))
    decoders = {m: MLPDecoder(d, (16,), SHAPE, kind="normal") for m in MODS}
    proj = {m: torch.nn.Sequential(torch.nn.Flatten(), mlp((36, 8, 1))) for m in MODS}

    def uni(m):
        enc = (
            ProjectedEncoder(proj[m], MLPEncoder((1,), (8,), d))
            if projectors
            else MLPEncoder(SHAPE, (16,), d)
        )
        return FlowPosterior(enc, d, hidden=(8,)) if flows else enc

    return JNF(
        joint_encoder,
        {m: uni(m) for m in MODS},
        decoders,
        d,
        projectors=proj if projectors else None,
        beta=0.5,
    )


def _data(n=40):
    g = torch.Generator().manual_seed(0)
    return {m: torch.rand(n, *SHAPE, generator=g) for m in MODS}


def test_encoder_decoder_shapes():
    x = torch.rand(5, 3, 32, 32)
    q = ConvEncoder(3, 32, 4)(x)
    assert q.batch_shape == (5,) and q.event_shape == (4,)
    p = ConvDecoder(4, 3, 32, kind="laplace", scale=0.75)(q.rsample((2,)))
    assert p.batch_shape == (2, 5) and p.event_shape == (3, 32, 32)
    assert p.mean.min() >= 0 and p.mean.max() <= 1
    p = MLPDecoder(4, (8,), (1, 6, 6))(torch.zeros(7, 4))
    assert p.batch_shape == (7,) and p.event_shape == (1, 6, 6)
    with pytest.raises(ValueError, match="unknown likelihood"):
        likelihood(torch.zeros(2), "poisson", 1.0, 1)
    with pytest.raises(ValueError, match="divisible"):
        ConvDecoder(4, 1, 28)
    with pytest.raises(ValueError, match="every modality"):
        JointMLPEncoder({"a": SHAPE, "b": SHAPE}, 2)({"a": torch.zeros(1, *SHAPE)})


@pytest.mark.parametrize("flows,projectors", [(False, False), (True, False), (True, True)])
def test_every_stage_parameter_gets_a_gradient(flows, projectors):
    model = _model(flows, projectors)
    x = _data(8)
    bounds = {"joint": model.joint_bound, "unimodal": model.unimodal_bound}
    if projectors:
        bounds["projectors"] = model.projector_bound
    modules = {
        "joint": model.joint_modules(),
        "unimodal": model.encoders,
        "projectors": model.projectors,
    }
    for stage, bound in bounds.items():
        model.set_stage(stage)
        model.zero_grad(set_to_none=True)
        bound(x).mean().backward()
        trainable = [(n, p) for n, p in modules[stage].named_parameters() if p.requires_grad]
        assert trainable, stage
        assert all(p.grad is not None for _, p in trainable), stage
        # correlations are shift-invariant: the projector's output bias has zero gradient
        invariant = {f"{m}.1.2.bias" for m in MODS} if stage == "projectors" else set()
        zero = {n for n, p in trainable if float(p.grad.abs().max()) < 1e-10}
        assert zero == invariant, (stage, zero)


@pytest.mark.parametrize("stage", ["projectors", "joint", "unimodal"])
def test_training_step_changes_exactly_the_stage_parameters(stage):
    model = _model(flows=True, projectors=True)
    module, bound = model.prepare_stage(stage)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    fit(module, bound, _data(), TrainConfig(epochs=1, batch_size=20, progress=False))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable
    params = dict(model.named_parameters())
    stage_ids = {id(p) for p in module.parameters()}
    if stage == "unimodal":  # the projectors inside the unimodal encoders stay frozen
        stage_ids -= {id(p) for p in model.projectors.parameters()}
    assert {id(params[n]) for n in trainable} == stage_ids


def test_evaluation_does_not_change_weights():
    model = _model()
    model.set_stage("joint")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    evaluate(model, model.joint_bound, _data(), batch_size=16)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_stage_errors():
    model = _model()
    with pytest.raises(ValueError, match="unknown stage"):
        model.set_stage("projectors")
    with pytest.raises(ValueError, match="no projectors"):
        model.projector_bound(_data(4))
    with pytest.raises(ValueError, match="must name the same modalities"):
        JNF(model.joint_encoder, {"a": model.encoders["a"]}, model.decoders, 2)
    with pytest.raises(ValueError, match="subset"):
        model.sample_posterior(_data(4), ["z"])


def test_sample_posterior_and_generate_cover_every_subset_size():
    model = _model()
    x = _data(4)
    g = torch.Generator().manual_seed(0)
    assert model.sample_posterior(x, MODS, n=3, generator=g).shape == (3, 4, 2)
    assert model.sample_posterior(x, ["b"], n=3, generator=g).shape == (3, 4, 2)
    z = model.sample_posterior(x, ["a", "c"], n=3, generator=g, n_steps=5, n_leapfrog=3)
    assert z.shape == (3, 4, 2) and bool(torch.isfinite(z).all())
    out = model.generate(x, ["a", "c"], n=2, generator=g, n_steps=3)
    assert set(out) == set(MODS) and out["b"].shape == (2, 4, *SHAPE)


def test_hmc_subset_sampling_targets_the_poe_with_exponent():
    # With Gaussian unimodal posteriors the subset target is Gaussian: HMC must hit its mean.
    model = _model(flows=False)
    x = {m: v[:1] for m, v in _data(1).items()}
    subset = ["a", "b", "c"][:2]
    # prod_j q_j / p^(|S|-1) is Gaussian: precision sum_j 1/s_j^2 - (|S|-1)
    exact = product_of_experts([model.posterior(x, [m]) for m in subset])
    var = 1 / (exact.stddev.pow(-2) - (len(subset) - 1))
    mean = var * (exact.mean * exact.stddev.pow(-2))
    xs = {m: v.expand(3000, *v.shape[1:]) for m, v in x.items()}
    z = model.sample_posterior(
        xs, subset, generator=torch.Generator().manual_seed(1), step_size=0.1
    )
    torch.testing.assert_close(z[0].mean(0), mean[0], atol=0.05, rtol=0)
    torch.testing.assert_close(z[0].var(0), var[0], rtol=0.1, atol=0)


def test_prior_exponent_flag_changes_the_target():
    model = _model()
    x = _data(2)
    z = torch.randn(5, 2, 2)
    exact = model.subset_log_density(x, MODS[:2], z)
    model.prior_exponent = 1.0
    same_for_two = model.subset_log_density(x, MODS[:2], z)
    torch.testing.assert_close(exact, same_for_two)
    differs = model.subset_log_density(x, MODS, z)
    model.prior_exponent = None
    assert not torch.allclose(differs, model.subset_log_density(x, MODS, z))


def test_joint_vae_interface_posteriors_and_bound():
    """JointVAE on the base interface: joint, unimodal and subset posteriors; per-sample bound."""
    model = _model(flows=False)
    x = _data(5)
    assert model.posterior(x).batch_shape == (5,)
    assert model.posterior(x, ["a"]).batch_shape == (5,)
    q = model.posterior(x, ["a", "b"])
    assert isinstance(q, SubsetPosterior)
    z = torch.randn(5, 2)
    torch.testing.assert_close(q.log_prob(z), model.subset_log_density(x, ["a", "b"], z))
    draws = q.sample((3,), generator=torch.Generator().manual_seed(0))
    assert draws.shape == (3, 5, 2)
    assert JointVAE.bound(model, x).shape == (5,)
    assert model.bound(x).shape == (5,)  # ELBO - sum_j KL(q(z|X) || q_j)
    torch.manual_seed(0)
    joint_only = JointVAE.bound(model, x)
    torch.manual_seed(0)
    qz_x = model.posterior(x)
    z = qz_x.rsample()  # the same z the bounds draw under the same seed
    gap = sum(qz_x.log_prob(z) - model.posterior(x, [m]).log_prob(z) for m in MODS)
    torch.manual_seed(0)
    torch.testing.assert_close(model.bound(x), joint_only - gap)
    mask = torch.ones(5, 3, dtype=torch.bool)
    mask[0, 1] = False
    with pytest.raises(ValueError, match="complete batches"):
        model.bound({**x, "mask": mask})


@pytest.mark.parametrize(
    "fixed,reference",
    [
        (FixedScaleNormal, torch.distributions.Normal),
        (FixedScaleLaplace, torch.distributions.Laplace),
    ],
)
def test_fixed_scale_likelihoods_equal_torch_distributions(fixed, reference):
    """Every public method a user can call, against torch's own distribution."""
    loc = torch.rand(4, 3)
    x = torch.randn(2, 4, 3)
    mine, ref = fixed(loc, 0.75), reference(loc, 0.75)
    torch.testing.assert_close(mine.log_prob(x), ref.log_prob(x))
    torch.testing.assert_close(mine.mean, ref.mean)
    torch.testing.assert_close(mine.variance, ref.variance)
    torch.testing.assert_close(mine.entropy(), ref.entropy())
    torch.manual_seed(0)
    a = mine.rsample((5,))
    torch.manual_seed(0)
    torch.testing.assert_close(a, ref.rsample((5,)))
    assert mine.sample((2,)).shape == (2, 4, 3)
    wide = mine.expand(torch.Size([2, 4, 3]))
    assert isinstance(wide, fixed) and wide.batch_shape == (2, 4, 3)
    torch.testing.assert_close(wide.log_prob(x), ref.expand((2, 4, 3)).log_prob(x))
    with pytest.raises(ValueError, match="scale must be > 0"):
        fixed(loc, 0.0)


def test_unimodal_stage_with_precomputed_joint_posterior_is_the_same_bound():
    """Stage 2 draws z from q(z|X) computed once per sample: the same bound, same random numbers."""
    model = _model()
    stage = model.prepare_stage("unimodal")
    x = _data(12)
    prepared = stage.prepare(x)
    assert prepared[QZ_LOC].shape == (12, 2) and set(x) < set(prepared)
    torch.manual_seed(3)
    direct = stage.bound(x)
    torch.manual_seed(3)
    torch.testing.assert_close(stage.bound(prepared), direct)
    history = fit(stage.module, stage.bound, prepared, TrainConfig(epochs=1, progress=False))
    assert len(history.train) == 1


def test_categorical_likelihood_is_the_sum_of_log_softmax_at_the_true_characters():
    from repro.models.decoders import MLPDecoder

    dec = MLPDecoder(3, (8,), (5, 7), kind="categorical")
    z = torch.randn(2, 4, 3)
    p = dec(z)
    assert p.batch_shape == (2, 4) and p.event_shape == (5, 7)
    idx = torch.randint(0, 7, (2, 4, 5))
    x = torch.nn.functional.one_hot(idx, 7).to(z.dtype)
    logits = dec.net(z).unflatten(-1, (5, 7))
    expected = logits.log_softmax(-1).gather(-1, idx.unsqueeze(-1)).squeeze(-1).sum(-1)
    torch.testing.assert_close(p.log_prob(x), expected)
    torch.testing.assert_close(p.mean, logits.softmax(-1))  # the character probabilities
    assert p.sample().sum(-1).eq(1).all()  # one-hot draws
