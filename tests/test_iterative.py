"""Iterative amortized inference: ELBO of parameters, refinement, alignment, IterativeVAE."""

import math

import pytest
import torch
from torch import nn
from torch.distributions import kl_divergence

from repro.config import TrainConfig
from repro.distributions import diag_gaussian, gaussian_params
from repro.losses.aggregate import aggregate_elbo
from repro.losses.bounds import elbo
from repro.losses.iterative import alignment_kl, elbo_gradients, elbo_of_params
from repro.models.decoders import MLPDecoder
from repro.models.encoders import MLPEncoder
from repro.models.iterative import GradientStep, IterativeVAE, Refiner, refine
from repro.train import evaluate, fit_stages
from tests.linear_gaussian import LinearGaussian

# -- linear-Gaussian fixtures ------------------------------------------------------------------


class LGDecoder(nn.Module):
    """The exact likelihood p(x_m|z) of the linear-Gaussian model as a (parameter-free) module."""

    def __init__(self, lg, m):
        super().__init__()
        self.lg, self.m = lg, m

    def forward(self, z):
        return self.lg.decoder(self.m, z)


class LGExpert(nn.Module):
    """The exact likelihood expert of x_m, deliberately miscalibrated (shifted mean, wider)."""

    def __init__(self, lg, m, shift=0.4, widen=1.6):
        super().__init__()
        self.lg, self.m, self.shift, self.widen = lg, m, shift, widen

    def forward(self, x_m):
        loc, scale = gaussian_params(self.lg.likelihood_expert(self.m, x_m))
        return diag_gaussian(loc + self.shift, scale * self.widen)


@pytest.fixture
def lg():
    return LinearGaussian.random()


@pytest.fixture
def x(lg):
    return lg.sample(16, torch.Generator().manual_seed(7))[1]


def _decoders(lg):
    return {m: LGDecoder(lg, m) for m in lg.modalities}


def _lg_model(lg, T=3, **kwargs):
    encoders = {m: LGExpert(lg, m) for m in lg.modalities}
    students = {m: MLPEncoder((lg.dim,), (8,), lg.dim) for m in lg.modalities}
    refiner = kwargs.pop("refiner", Refiner(lg.dim, hidden=(16,)))
    return IterativeVAE(encoders, _decoders(lg), students, lg.dim, refiner=refiner, T=T, **kwargs)


def _antithetic(shape):
    """eps in {+1, -1}: exact mean 0 and variance 1, so MC = expectation for quadratics."""
    ones = torch.ones(shape)
    return torch.stack([ones, -ones])


def _expected_log_lik(lg, x, q):
    """Hand closed form of E_q[sum_m log p(x_m|z)] for the linear-Gaussian model."""
    mu, var = q.mean, q.variance
    total = 0.0
    for m in lg.modalities:
        a, b, psi = lg.a[m], lg.b[m], lg.psi[m]
        sq = (x[m] - a * mu - b) ** 2 + a**2 * var
        total = total + (-0.5 * torch.log(2 * math.pi * psi) - sq / (2 * psi)).sum(-1)
    return total


def _start(lg, x):
    """A wrong initial posterior: the exact one shifted and widened."""
    post = lg.posterior(x)
    return post.mean + 0.5, torch.log(post.variance) + 1.0


# -- elbo_of_params / elbo_gradients -------------------------------------------------------------


def test_elbo_of_params_equals_closed_form_expected_loglik_minus_kl(lg, x):
    loc, logvar = _start(lg, x)
    q = diag_gaussian(loc, torch.exp(0.5 * logvar))
    expected = _expected_log_lik(lg, x, q) - kl_divergence(q, lg.prior())
    # the identity ELBO = log p(X) - KL(q || p(z|X)) holds for the hand closed form too
    torch.testing.assert_close(expected, lg.log_evidence(x) - kl_divergence(q, lg.posterior(x)))
    # antithetic +-1 noise integrates the (separable) quadratic log-likelihood exactly
    exact = elbo_of_params(x, loc, logvar, _decoders(lg), K=2, noise=_antithetic(loc.shape))
    torch.testing.assert_close(exact, expected, atol=1e-10, rtol=0)
    # plain Monte Carlo: standard error of the mean about 0.01 nats with K = 20000
    mc = elbo_of_params(
        x, loc, logvar, _decoders(lg), K=20000, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(mc, expected, atol=0.06, rtol=0)


def test_elbo_of_params_noise_generator_beta_weights_and_errors(lg, x):
    loc, logvar = _start(lg, x)
    dec = _decoders(lg)
    noise = torch.randn((4, *loc.shape), generator=torch.Generator().manual_seed(3))
    drawn = elbo_of_params(x, loc, logvar, dec, K=4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(drawn, elbo_of_params(x, loc, logvar, dec, K=4, noise=noise))
    q = diag_gaussian(loc, torch.exp(0.5 * logvar))
    z = loc + q.stddev * noise
    kl = kl_divergence(q, lg.prior())
    log_px = {m: dec[m](z).log_prob(x[m]) for m in dec}
    value = elbo_of_params(x, loc, logvar, dec, 4, noise, beta=0.3, weights={"m1": 2.0})
    expected = (log_px["m0"] + 2 * log_px["m1"] + log_px["m2"]).mean(0) - 0.3 * kl
    torch.testing.assert_close(value, expected)
    with pytest.raises(ValueError, match="noise must have shape"):
        elbo_of_params(x, loc, logvar, dec, K=3, noise=noise)
    with pytest.raises(ValueError, match="K must be >= 1"):
        elbo_of_params(x, loc, logvar, dec, K=0)
    with pytest.raises(ValueError, match="one shape"):
        elbo_of_params(x, loc, logvar[:, :2], dec)


def test_elbo_gradients_match_closed_form_and_touch_no_parameter(lg, x):
    loc, logvar = _start(lg, x)
    post = lg.posterior(x)
    precision = 1 / post.variance
    with torch.no_grad():  # works inside no-grad evaluation
        value, g_loc, g_logvar = elbo_gradients(
            x, loc, logvar, _decoders(lg), K=2, noise=_antithetic(loc.shape)
        )
    # L = log p(X) - KL(q || p(z|X)), KL = 0.5 sum(s2 P + P (mu - mu*)^2 - 1 - log(s2 P))
    torch.testing.assert_close(g_loc, -precision * (loc - post.mean), atol=1e-10, rtol=0)
    torch.testing.assert_close(g_logvar, -0.5 * (logvar.exp() * precision - 1), atol=1e-10, rtol=0)
    assert not (value.requires_grad or g_loc.requires_grad or g_logvar.requires_grad)
    # a decoder with parameters: their .grad stays empty, a graph on loc is not followed
    dec = {"a": MLPDecoder(3, (8,), (3,), kind="normal")}
    src = loc.clone().requires_grad_(True)
    elbo_gradients({"a": x["m0"]}, src * 2, logvar, dec, K=3)
    assert all(p.grad is None for p in dec["a"].parameters()) and src.grad is None


# -- refinement on the linear-Gaussian model ------------------------------------------------------


def _exact_elbo(lg, x, loc, logvar):
    q = diag_gaussian(loc, torch.exp(0.5 * logvar))
    return lg.log_evidence(x) - kl_divergence(q, lg.posterior(x))


def test_gradient_step_refinement_rises_monotonically_to_the_evidence(lg, x):
    loc0, logvar0 = _start(lg, x)
    precision = 1 + sum(lg.a[m] ** 2 / lg.psi[m] for m in lg.modalities)
    step = GradientStep(1.0 / float(precision.max()))  # stable for the stiffest dimension
    its = refine(x, loc0, logvar0, 100, step, _decoders(lg), K=2, noise=_antithetic(loc0.shape))
    assert len(its) == 101 and its[0][0] is loc0
    curve = torch.stack([_exact_elbo(lg, x, *it) for it in its])  # (T + 1, B)
    evidence = lg.log_evidence(x)
    assert bool((curve[1:] >= curve[:-1] - 1e-12).all()), "ELBO must rise at every step"
    assert bool((curve <= evidence + 1e-10).all())
    assert float((evidence - curve[0]).min()) > 1.0  # a real gap at t = 0 ...
    torch.testing.assert_close(curve[-1], evidence, atol=1e-3, rtol=0)  # ... closed by t = 100
    # the refined parameters are the exact posterior's
    post = lg.posterior(x)
    torch.testing.assert_close(its[-1][0], post.mean, atol=1e-3, rtol=0)


def test_gradient_step_refinement_with_monte_carlo_gradients(lg, x):
    loc0, logvar0 = _start(lg, x)
    step = GradientStep(0.05)
    its = refine(
        x, loc0, logvar0, 60, step, _decoders(lg), K=10, generator=torch.Generator().manual_seed(1)
    )
    exact = torch.stack([_exact_elbo(lg, x, *it) for it in its]).mean(1)
    evidence = float(lg.log_evidence(x).mean())
    assert exact[10] > exact[0] + 1.0 and exact[-1] > exact[10]
    assert evidence - float(exact[-1]) < 0.1  # stationary gap from gradient noise (0.04 here)
    # an MC estimate of the final ELBO stays below log p(X) up to its error (about 0.01 nats)
    mc = elbo_of_params(x, *its[-1], _decoders(lg), K=5000, generator=torch.Generator())
    assert float(mc.mean()) <= evidence + 0.02


def test_elbo_at_lambda0_equals_the_family_poe_elbo(lg, x):
    model = _lg_model(lg)
    q = model.source_posterior(x)
    loc, scale = gaussian_params(q)
    noise = torch.randn((5, *loc.shape), generator=torch.Generator().manual_seed(2))
    z = loc + scale * noise
    family = aggregate_elbo(x, q, model.decode(z), model.prior(), z)
    torch.testing.assert_close(family, elbo(x, q, model.decode(z), model.prior(), z))
    q0 = model.refined(x, T=0)[0]
    loc0, scale0 = gaussian_params(q0)
    torch.testing.assert_close(loc0, loc, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(scale0, scale, rtol=1e-12, atol=1e-12)
    ours = elbo_of_params(x, loc0, 2 * scale0.log(), model.decoders, K=5, noise=noise)
    torch.testing.assert_close(ours, family, rtol=1e-12, atol=1e-10)
    # and it is a true PoE with a prior expert of the (miscalibrated) experts, not the posterior
    gap = lg.log_evidence(x) - family
    assert float(gap.mean()) > 0.5


def test_model_refines_with_a_gradient_step_refiner(lg, x):
    precision = 1 + sum(lg.a[m] ** 2 / lg.psi[m] for m in lg.modalities)
    model = _lg_model(lg, T=100, refiner=GradientStep(1.0 / float(precision.max())))
    noise = _antithetic((x["m0"].shape[0], lg.dim))
    with torch.no_grad():
        qs = model.refined(x, noise=noise)
    assert len(qs) == 101
    gaps = [float(kl_divergence(q, lg.posterior(x)).mean()) for q in qs]
    assert gaps[0] > 0.5 and gaps[-1] < 1e-3
    assert all(b <= a + 1e-12 for a, b in zip(gaps, gaps[1:], strict=False))


# -- refiner ------------------------------------------------------------------------------------


def _fixed_refiner(update, bias_loc=0.3, bias_logvar=-0.2, gate=0.5):
    ref = Refiner(2, hidden=(4,), update=update)
    with torch.no_grad():
        ref.proposal.weight.zero_()
        ref.proposal.bias.copy_(torch.tensor([bias_loc, bias_loc, bias_logvar, bias_logvar]))
        if ref.gate is not None:
            ref.gate.weight.zero_()
            ref.gate.bias.fill_(math.log(gate / (1 - gate)))
    return ref


def test_refiner_update_rules_and_clamp():
    loc, logvar = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.5, 2.0]])
    g = torch.randn(1, 2), torch.randn(1, 2)
    new = _fixed_refiner("gated", gate=0.25)(loc, logvar, *g)
    torch.testing.assert_close(new[0], 0.25 * loc + 0.75 * 0.3)
    torch.testing.assert_close(new[1], 0.25 * logvar + 0.75 * -0.2)
    new = _fixed_refiner("replace")(loc, logvar, *g)
    torch.testing.assert_close(new[0], torch.full((1, 2), 0.3))
    new = _fixed_refiner("residual")(loc, logvar, *g)
    torch.testing.assert_close(new[1], logvar - 0.2)
    new = _fixed_refiner("replace", bias_logvar=40.0)(loc, logvar, *g)
    assert bool((new[1] == 15.0).all())
    new = _fixed_refiner("replace", bias_logvar=-40.0)(loc, logvar, *g)
    assert bool((new[1] == -15.0).all())


def test_refiner_encodings_features_and_errors():
    ref = Refiner(3, hidden=(8,), gradient_encoding="log_sign", features=5)
    g = torch.tensor([[0.5, -2.0, 0.0]])
    enc = ref.encode_gradients(g, -g)
    torch.testing.assert_close(enc[:, :3], torch.log(g.abs() + 1e-5))
    torch.testing.assert_close(enc[:, 6:9], torch.sign(g))
    loc, logvar = ref(
        torch.zeros(4, 3), torch.zeros(4, 3), g.expand(4, 3), g.expand(4, 3), torch.zeros(4, 5)
    )
    assert loc.shape == logvar.shape == (4, 3)
    src = torch.zeros(4, 3, requires_grad=True)  # the refiner detaches its inputs itself
    out = ref(src * 2, src * 3, src * 4, src * 5, torch.zeros(4, 5))
    assert torch.autograd.grad(sum(o.sum() for o in out), src, allow_unused=True) == (None,)
    z = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="needs"):
        ref(z, z, z, z)
    with pytest.raises(ValueError, match="features=0"):
        Refiner(3, hidden=(8,))(z, z, z, z, torch.zeros(4, 5))
    with pytest.raises(ValueError, match="gradient_encoding"):
        Refiner(3, gradient_encoding="l2")
    with pytest.raises(ValueError, match="update"):
        Refiner(3, update="highway")
    with pytest.raises(ValueError, match="eta"):
        GradientStep(0.0)
    with pytest.raises(ValueError, match="T must be"):
        refine({}, z, z, -1, GradientStep(0.1), {})


def test_refine_inputs_are_detached(lg, x):
    loc0, logvar0 = (t.clone().requires_grad_(True) for t in _start(lg, x))
    ref = Refiner(lg.dim, hidden=(8,))
    its = refine(x, loc0, logvar0, 3, ref, _decoders(lg), K=2)
    for t in (1, 2, 3):
        assert all(p.requires_grad for p in its[t])
        grads = torch.autograd.grad(
            its[t][0].sum() + its[t][1].sum(), (loc0, logvar0), allow_unused=True, retain_graph=True
        )
        assert grads == (None, None)  # nothing reaches the source through the loop
    earlier = torch.autograd.grad(
        its[3][0].sum(), (*its[1], *its[2]), allow_unused=True, retain_graph=True
    )
    assert all(g is None for g in earlier)  # nor earlier refiner steps
    grads = torch.autograd.grad(its[3][0].sum(), list(ref.parameters()), allow_unused=True)
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads)


# -- alignment ----------------------------------------------------------------------------------


def test_alignment_kl_closed_form_and_stop_gradient():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    s1, s2 = torch.rand(4, 3, generator=g) + 0.3, torch.rand(4, 3, generator=g) + 0.3

    def hand(ma, sa, mb, sb):  # KL(N(ma, sa^2) || N(mb, sb^2)), summed over D
        return (torch.log(sb / sa) + (sa**2 + (ma - mb) ** 2) / (2 * sb**2) - 0.5).sum(-1)

    teacher, student = diag_gaussian(m1, s1), diag_gaussian(m2, s2)
    torch.testing.assert_close(alignment_kl(teacher, student), hand(m1, s1, m2, s2))
    torch.testing.assert_close(alignment_kl(teacher, student, "reverse"), hand(m2, s2, m1, s1))
    with pytest.raises(ValueError, match="direction"):
        alignment_kl(teacher, student, "both")
    for direction in ("forward", "reverse"):
        t_loc, s_loc = m1.clone().requires_grad_(True), m2.clone().requires_grad_(True)
        value = alignment_kl(diag_gaussian(t_loc, s1), diag_gaussian(s_loc, s2), direction)
        value.sum().backward()
        assert t_loc.grad is None and bool(s_loc.grad.abs().sum() > 0)
        t_loc = m1.clone().requires_grad_(True)
        value = alignment_kl(diag_gaussian(t_loc, s1), student, direction, stop_grad_teacher=False)
        value.sum().backward()
        assert bool(t_loc.grad.abs().sum() > 0)


# -- IterativeVAE -------------------------------------------------------------------------------

SHAPE, D = (1, 3, 3), 2


def _mlp_model(mods=("a", "b", "c"), **kwargs):
    kwargs.setdefault("refiner", Refiner(D, hidden=(8,)))
    return IterativeVAE(
        {m: MLPEncoder(SHAPE, (8,), D) for m in mods},
        {m: MLPDecoder(D, (8,), SHAPE, kind="normal") for m in mods},
        {m: MLPEncoder(SHAPE, (8,), D) for m in mods},
        D,
        **kwargs,
    )


def _data(mods=("a", "b", "c"), n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.rand(n, *SHAPE, generator=g) for m in mods}


def _grads(module):
    return [p.grad for p in module.parameters()]


def _nonzero(grads):
    return any(g is not None and bool(g.abs().sum() > 0) for g in grads)


def _refine_step(model, batch, seed=0):
    model.zero_grad(set_to_none=True)
    model.prepare_stage("refine")
    torch.manual_seed(seed)
    value = model.refine_bound(batch)
    (-value.mean()).backward()
    return value


def test_refine_stage_routes_gradients():
    batch = _data()
    model = _mlp_model(T=2)
    value = _refine_step(model, batch)
    assert value.shape == (12,)
    assert all(g is None for g in _grads(model.encoders))
    assert all(g is None for g in _grads(model.decoders))
    assert _nonzero(_grads(model.refiner)) and _nonzero(_grads(model.students))
    refiner_grads = [g.clone() for g in _grads(model.refiner)]
    student_grads = [g.clone() for g in _grads(model.students)]
    # train_decoder: the decoders get L(lambda_T) only; the refiner and students are unchanged
    model.train_decoder = True
    value_td = _refine_step(model, batch)
    torch.testing.assert_close(value_td, value)
    for a, b in zip(_grads(model.refiner), refiner_grads, strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(_grads(model.students), student_grads, strict=True):
        torch.testing.assert_close(a, b)
    assert all(g is None for g in _grads(model.encoders))
    decoder_grads = [g.clone() for g in _grads(model.decoders)]
    # replay the same random draws: refinement, T ELBO estimates, then the final ELBO
    torch.manual_seed(0)
    its = model._iterates(batch, 2, None, None, detach_source=True)
    frozen = model._frozen_decoders()
    for loc, logvar in its[1:]:
        elbo_of_params(batch, loc, logvar, frozen, model.K)
    loc_t, logvar_t = (t.detach() for t in its[-1])
    final = elbo_of_params(batch, loc_t, logvar_t, model.decoders, model.K)
    expected = torch.autograd.grad(-final.mean(), list(model.decoders.parameters()))
    for a, b in zip(decoder_grads, expected, strict=True):
        torch.testing.assert_close(a, b)
    # without stop-gradient the alignment also reaches the refiner (students unchanged)
    model.train_decoder, model.stop_grad_teacher = False, False
    _refine_step(model, batch)
    assert any(
        not torch.allclose(a, b) for a, b in zip(_grads(model.refiner), refiner_grads, strict=True)
    )
    for a, b in zip(_grads(model.students), student_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_source_stage_trains_encoders_and_decoders_only():
    model = _mlp_model()
    model.prepare_stage("source")
    (-model.source_bound(_data()).mean()).backward()
    assert _nonzero(_grads(model.encoders)) and _nonzero(_grads(model.decoders))
    assert all(g is None for g in _grads(model.students) + _grads(model.refiner))


def test_t0_refine_stage_trains_only_students_aligned_to_the_source_poe():
    model = _mlp_model(T=0)
    batch = _data()
    value = _refine_step(model, batch, seed=4)
    assert all(g is None for g in _grads(model.refiner) + _grads(model.encoders))
    assert all(g is None for g in _grads(model.decoders)) and _nonzero(_grads(model.students))
    with torch.no_grad():
        q0 = model.source_posterior(batch)
        loc0, scale0 = gaussian_params(q0)
        torch.manual_seed(4)
        expected = elbo_of_params(batch, loc0, 2 * scale0.log(), model.decoders, model.K)
        expected = expected - sum(kl_divergence(q0, model.students[m](batch[m])) for m in "abc")
    torch.testing.assert_close(value.detach(), expected)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = TrainConfig(epochs=2, batch_size=6, lr=1e-2, progress=False)
    fit_stages(model, batch, {"refine": cfg})
    changed = {
        n.split(".")[0] for n, p in model.named_parameters() if not torch.equal(p, before[n])
    }
    assert changed == {"students"}
    # lambda_0 is detached: even a trainable source gets nothing, also without stop-gradient
    model.zero_grad(set_to_none=True)
    model.requires_grad_(True)
    model.stop_grad_teacher = False
    (-model.refine_bound(batch).mean()).backward()
    assert all(g is None for g in _grads(model.encoders) + _grads(model.refiner))


def test_posteriors_subsets_and_seeded_generation():
    model = _mlp_model(T=2)
    x = _data(n=5)
    qs = model.refined(x, T=4, generator=torch.Generator().manual_seed(0))
    assert len(qs) == 5 and all(q.batch_shape == (5,) and q.event_shape == (D,) for q in qs)
    student = model.students["b"](x["b"])
    q = model.posterior(x, ["b"])
    torch.testing.assert_close(q.mean, student.mean)
    torch.testing.assert_close(q.stddev, student.stddev)
    with pytest.raises(ValueError, match="partial subset"):
        model.posterior(x, ["a", "c"])
    with pytest.raises(ValueError, match="every modality"):
        model.posterior(x, mask=torch.tensor([[True, False, True]] * 5))
    with pytest.raises(ValueError, match="partial subset"):
        model.generate(x, ["a", "b"])
    # the all-modality posterior is the refined q_{lambda_T}, a deterministic function of X
    full = model.posterior(x)
    again = model.refined(x, generator=torch.Generator().manual_seed(model.posterior_seed))[-1]
    torch.testing.assert_close(full.mean, again.mean)
    assert not torch.allclose(full.mean, model.source_posterior(x).mean)
    for subset in (["a"], None):
        out = model.generate(x, subset, n=2, generator=torch.Generator().manual_seed(5))
        same = model.generate(x, subset, n=2, generator=torch.Generator().manual_seed(5))
        other = model.generate(x, subset, n=2, generator=torch.Generator().manual_seed(6))
        assert set(out) == {"a", "b", "c"} and out["c"].shape == (2, 5, *SHAPE)
        assert all(torch.equal(out[m], same[m]) for m in out)
        assert not torch.equal(out["a"], other["a"])
    assert torch.isfinite(torch.tensor(evaluate(model, model.bound, x, batch_size=5)))


def test_constructor_checks_and_data_features():
    with pytest.raises(ValueError, match="students"):
        IterativeVAE(
            {"a": MLPEncoder(SHAPE, (8,), D)},
            {"a": MLPDecoder(D, (8,), SHAPE)},
            {"b": MLPEncoder(SHAPE, (8,), D)},
            D,
        )
    with pytest.raises(ValueError, match="T >= 0"):
        _mlp_model(T=-1)
    with pytest.raises(ValueError, match="align_direction"):
        _mlp_model(align_direction="sideways")
    with pytest.raises(ValueError, match="refiner.features"):
        _mlp_model(data_features=True)
    model = _mlp_model(data_features=True, refiner=Refiner(D, hidden=(8,), features=3 * D))
    assert model.feature_dim == 3 * D
    _refine_step(model, _data())
    assert _nonzero(_grads(model.refiner))
    default = IterativeVAE(
        {"a": MLPEncoder(SHAPE, (8,), D)},
        {"a": MLPDecoder(D, (8,), SHAPE)},
        {"a": MLPEncoder(SHAPE, (8,), D)},
        D,
    )
    assert isinstance(default.refiner, Refiner) and (default.T, default.K) == (5, 1)
    assert default.stages == ("source", "refine")


def test_end_to_end_learned_refiner_improves_the_elbo():
    # data from a 2-d latent through random sigmoid maps; the source PoE is trained briefly
    mods, shape = ("a", "b"), (1, 4, 4)
    g = torch.Generator().manual_seed(0)
    n = 128
    z = torch.randn(n, 2, generator=g)
    data = {}
    for m in mods:
        w = torch.randn(2, 16, generator=g)
        noise = 0.1 * torch.randn(n, 16, generator=g)
        data[m] = torch.sigmoid(z @ w + noise).reshape(n, *shape)
    model = IterativeVAE(
        {m: MLPEncoder(shape, (16,), 2) for m in mods},
        {m: MLPDecoder(2, (16,), shape, kind="normal", scale=0.1) for m in mods},
        {m: MLPEncoder(shape, (16,), 2) for m in mods},
        2,
        refiner=Refiner(2, hidden=(32, 32)),
        T=3,
    )
    cfg = dict(batch_size=32, progress=False, restore_best=False)
    histories = fit_stages(
        model,
        data,
        {
            "source": TrainConfig(epochs=20, lr=1e-2, **cfg),
            "refine": TrainConfig(epochs=40, lr=3e-3, **cfg),
        },
        generator=g,
    )
    assert histories["refine"].train[-1] > histories["refine"].train[0]
    curve = model.elbo_per_iteration(data, K=50, generator=torch.Generator().manual_seed(1))
    curve = curve.mean(1)  # (T + 1,) mean ELBO per iteration, t = 0 the source PoE
    assert curve.shape == (4,)
    assert float(curve[1:].mean()) > float(curve[0]) + 0.05, curve
    assert all(float(c) > float(curve[0]) for c in curve[1:]), curve
