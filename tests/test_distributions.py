import math

import pytest
import torch

from repro.distributions import (
    average_of_experts,
    diag_gaussian,
    gaussian_params,
    mixture_of_experts,
    mixture_of_products,
    product_of_experts,
    rsample,
    standard_normal,
    stratified_rsample,
)
from repro.flows import FlowPosterior
from repro.models.encoders import MLPEncoder
from tests.linear_gaussian import LinearGaussian


@pytest.fixture
def model_and_data():
    lg = LinearGaussian.random()
    _, x = lg.sample(64, torch.Generator().manual_seed(1))
    return lg, x


def test_poe_with_prior_expert_is_exact_posterior(model_and_data):
    lg, x = model_and_data
    experts = [lg.likelihood_expert(m, x[m]) for m in lg.modalities]
    poe = product_of_experts(experts, prior=lg.prior())
    exact = lg.posterior(x)
    torch.testing.assert_close(poe.mean, exact.mean)
    torch.testing.assert_close(poe.stddev, exact.stddev)


def test_poe_without_prior_expert_of_unimodal_posteriors(model_and_data):
    # prod_m p(z|x_m) ∝ p(z)^M prod_m p(x_m|z): the exact posterior of the same likelihoods
    # under the prior N(0, I/M) (the MVTCAE/CRMVAE convention counts the prior M times).
    lg, x = model_and_data
    experts = [lg.posterior(x, [m]) for m in lg.modalities]
    poe = product_of_experts(experts)
    exact = LinearGaussian(lg.a, lg.b, lg.psi, prior_var=1.0 / len(lg.modalities)).posterior(x)
    torch.testing.assert_close(poe.mean, exact.mean)
    torch.testing.assert_close(poe.stddev, exact.stddev)
    # ... and is not the posterior under N(0, I) when M > 1
    assert not torch.allclose(poe.stddev, lg.posterior(x).stddev)


def test_poe_mask_drops_missing_experts(model_and_data):
    lg, x = model_and_data
    experts = [lg.likelihood_expert(m, x[m]) for m in lg.modalities]
    mask = torch.ones(64, 3, dtype=torch.bool)
    mask[:32, 1] = False
    poe = product_of_experts(experts, prior=lg.prior(), mask=mask)
    sub = lg.posterior({m: x[m][:32] for m in lg.modalities}, ["m0", "m2"])
    full = lg.posterior({m: x[m][32:] for m in lg.modalities})
    torch.testing.assert_close(poe.mean[:32], sub.mean)
    torch.testing.assert_close(poe.mean[32:], full.mean)


def test_poe_errors():
    e = diag_gaussian(torch.zeros(4, 2), torch.ones(4, 2))
    with pytest.raises(ValueError, match="at least one"):
        product_of_experts([])
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        product_of_experts([e, e], mask=torch.ones(4, 3))
    with pytest.raises(ValueError, match="empty product"):
        product_of_experts([e, e], mask=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="diagonal Gaussian"):
        gaussian_params(torch.distributions.Normal(0.0, 1.0))


def test_mixture_log_prob_matches_direct_computation():
    g = torch.Generator().manual_seed(0)
    locs = torch.randn(3, 5, 2, generator=g)
    scales = 0.3 + torch.rand(3, 5, 2, generator=g)
    weights = torch.tensor([0.2, 0.5, 0.3])
    mix = mixture_of_experts([diag_gaussian(locs[i], scales[i]) for i in range(3)], weights)
    z = torch.randn(7, 5, 2, generator=g)
    direct = torch.zeros(7, 5)
    for i in range(3):
        quad = (((z - locs[i]) / scales[i]) ** 2).sum(-1)
        logdet = torch.log(scales[i]).sum(-1)
        density = torch.exp(-0.5 * quad - logdet - math.log(2 * math.pi))
        direct = direct + weights[i] * density
    torch.testing.assert_close(mix.log_prob(z), torch.log(direct))
    uniform = mixture_of_experts([diag_gaussian(locs[i], scales[i]) for i in range(3)])
    torch.testing.assert_close(uniform.mixture_distribution.probs, torch.full((5, 3), 1 / 3))


def test_rsample_with_generator_is_reproducible_and_correct():
    q = diag_gaussian(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0]))
    a = rsample(q, (20000,), torch.Generator().manual_seed(3))
    b = rsample(q, (20000,), torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a.mean(0), q.mean, atol=0.05, rtol=0)
    torch.testing.assert_close(a.std(0), q.stddev, atol=0.05, rtol=0)


def test_rsample_flow_uses_generator_and_matches_zuko():
    flow = FlowPosterior(MLPEncoder((3,), (8,), 2), 2, hidden=(16,))
    q = flow(torch.randn(4, 3))
    a = rsample(q, (5,), torch.Generator().manual_seed(0))
    b = rsample(q, (5,), torch.Generator().manual_seed(0))
    assert a.shape == (5, 4, 2)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the sample is f^{-1}(u) with u from the base: mapping back gives the base draw
    u = rsample(q.base, (5,), torch.Generator().manual_seed(0))
    torch.testing.assert_close(q.transform(a), u)


def test_standard_normal_follows_like():
    like = torch.zeros(2, dtype=torch.float32)
    p = standard_normal(3, like)
    assert p.event_shape == (3,) and p.mean.dtype == torch.float32


# -- mixtures: every method for every batch and weight shape --------------------------------


def test_mixture_sample_with_batched_experts_and_shared_weights():
    # regression: the mixing Categorical kept batch shape () while the components had (B, M),
    # so sample() failed in gather for experts of batch (B,) with default or (M,) weights
    experts = [diag_gaussian(torch.randn(5, 2), torch.ones(5, 2)) for _ in range(3)]
    for weights in (None, torch.tensor([0.2, 0.5, 0.3])):
        mix = mixture_of_experts(experts, weights)
        assert mix.mixture_distribution.batch_shape == (5,)
        assert mix.sample((4,)).shape == (4, 5, 2)


def _mixture_case(batch, weights_kind, g):
    locs = torch.randn(3, *batch, 2, generator=g) * 2
    scales = 0.3 + torch.rand(3, *batch, 2, generator=g)
    if weights_kind is None:
        weights = None
        probs = torch.full((3,), 1 / 3)
    elif weights_kind == "M":
        weights = torch.tensor([0.2, 0.5, 0.3])
        probs = weights
    else:  # "BM": a batch of weights, also for experts of batch ()
        weights = 0.1 + torch.rand(4 if batch == () else batch[0], 3, generator=g)
        probs = weights / weights.sum(-1, keepdim=True)
    experts = [diag_gaussian(locs[i], scales[i]) for i in range(3)]
    out = torch.broadcast_shapes(batch, probs.shape[:-1])
    return experts, weights, probs, locs, scales, out


def _analytic_moments(probs, locs, scales, out):
    p = probs.expand(*out, 3).movedim(-1, 0).unsqueeze(-1)  # (3, *out, 1)
    mu = torch.stack([locs[i].expand(*out, 2) for i in range(3)])
    sd = torch.stack([scales[i].expand(*out, 2) for i in range(3)])
    mean = (p * mu).sum(0)
    second = (p * (sd**2 + mu**2)).sum(0)
    return mean, second - mean**2


def _hand_log_prob(z, probs, locs, scales, out):
    parts = []
    for i in range(3):
        comp = diag_gaussian(locs[i].expand(*out, 2), scales[i].expand(*out, 2))
        parts.append(comp.log_prob(z) + torch.log(probs.expand(*out, 3)[..., i]))
    return torch.logsumexp(torch.stack(parts), 0)


@pytest.mark.parametrize("batch", [(), (5,)])
@pytest.mark.parametrize("weights_kind", [None, "M", "BM"])
def test_mixture_every_method_every_shape(batch, weights_kind):
    g = torch.Generator().manual_seed(0)
    experts, weights, probs, locs, scales, out = _mixture_case(batch, weights_kind, g)
    mix = mixture_of_experts(experts, weights)
    assert mix.batch_shape == out and mix.event_shape == (2,)
    assert mix.mixture_distribution.batch_shape == out
    s = mix.sample((7,))
    assert s.shape == (7, *out, 2)
    r = rsample(mix, (7,), torch.Generator().manual_seed(1))
    assert r.shape == (7, *out, 2)
    assert rsample(mix, (7,)).shape == (7, *out, 2)  # global RNG
    assert stratified_rsample(mix, (7,), g).shape == (7, 3, *out, 2)
    torch.testing.assert_close(mix.log_prob(s), _hand_log_prob(s, probs, locs, scales, out))
    mean, var = _analytic_moments(probs, locs, scales, out)
    torch.testing.assert_close(mix.mean, mean)
    torch.testing.assert_close(mix.variance, var)
    assert mix.sample().shape == (*out, 2)


@pytest.mark.parametrize("sampler", ["sample", "rsample", "rsample_global"])
@pytest.mark.parametrize("weights_kind", [None, "M", "BM"])
def test_mixture_samples_have_the_analytic_moments(sampler, weights_kind):
    g = torch.Generator().manual_seed(2)
    experts, weights, probs, locs, scales, out = _mixture_case((5,), weights_kind, g)
    mix = mixture_of_experts(experts, weights)
    n = 100_000
    if sampler == "sample":
        s = mix.sample((n,))
    elif sampler == "rsample":
        s = rsample(mix, (n,), torch.Generator().manual_seed(3))
    else:
        s = rsample(mix, (n,))
    mean, var = _analytic_moments(probs, locs, scales, out)
    se_mean = (var / n).sqrt()
    assert bool(((s.mean(0) - mean).abs() < 5 * se_mean).all())
    # the sample variance has standard error <= sqrt(E[(z - mu)^4] / n); 5 of them
    fourth = ((s - mean) ** 4).mean(0)
    assert bool(((s.var(0) - var).abs() < 5 * (fourth / n).sqrt()).all())


def test_rsample_mixture_is_seeded_and_reparameterised_within_the_component():
    loc = torch.tensor([[-5.0, 0.0], [5.0, 1.0]], requires_grad=True)
    scale = torch.tensor([[0.1, 0.1], [0.2, 0.2]], requires_grad=True)
    mix = mixture_of_experts(
        [diag_gaussian(loc[0], scale[0]), diag_gaussian(loc[1], scale[1])],
        torch.tensor([0.25, 0.75]),
    )
    a = rsample(mix, (4000,), torch.Generator().manual_seed(5))
    b = rsample(mix, (4000,), torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    second = a[:, 0] > 0  # far-apart components: the sign tells the chosen one
    assert abs(float(second.double().mean()) - 0.75) < 0.03
    a.sum().backward()
    # d z / d loc is 1 for the chosen component's mean and 0 for the other
    torch.testing.assert_close(loc.grad[1], torch.full((2,), float(second.sum())))
    torch.testing.assert_close(loc.grad[0], torch.full((2,), float((~second).sum())))
    assert bool((scale.grad != 0).all())


def test_rsample_mixture_never_picks_a_zero_weight_component():
    experts = [
        diag_gaussian(torch.full((6, 1), float(i)), torch.full((6, 1), 1e-3)) for i in range(3)
    ]
    mask = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1]])
    mix = mixture_of_experts(experts, mask=mask)
    z = rsample(mix, (2000,), torch.Generator().manual_seed(0))
    chosen = z.round().long().squeeze(-1)  # (2000, 6) component index
    picked = torch.zeros(6, 3, dtype=torch.bool)
    picked.scatter_(1, chosen.T, True)
    assert bool((picked <= mask.bool()).all())
    assert bool((picked == mask.bool()).all())  # and each present one is drawn


def test_mixture_errors():
    e = diag_gaussian(torch.zeros(4, 2), torch.ones(4, 2))
    with pytest.raises(ValueError, match="at least one"):
        mixture_of_experts([])
    with pytest.raises(ValueError, match="one per expert"):
        mixture_of_experts([e, e], torch.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        mixture_of_experts([e, e], torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        mixture_of_experts([e, e], mask=torch.ones(4, 3))
    with pytest.raises(ValueError, match="zero weight"):
        mixture_of_experts([e, e], mask=torch.tensor([[1, 0], [0, 0], [1, 1], [1, 1]]))
    with pytest.raises(ValueError, match="zero weight"):
        mixture_of_products([e, e], mask=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="no expert present"):
        average_of_experts([e, e], mask=torch.tensor([[1, 0], [0, 0], [1, 1], [1, 1]]))
    with pytest.raises(ValueError, match="mixture of diagonal Gaussians"):
        stratified_rsample(e, (2,))


# -- masked aggregations --------------------------------------------------------------------


def _experts(g, n=3, batch=6, dim=2):
    locs = torch.randn(n, batch, dim, generator=g)
    scales = 0.3 + torch.rand(n, batch, dim, generator=g)
    return [diag_gaussian(locs[i], scales[i]) for i in range(n)]


@pytest.mark.parametrize("with_prior", [False, True])
def test_masked_poe_equals_poe_of_present_experts_row_by_row(with_prior):
    g = torch.Generator().manual_seed(0)
    experts = _experts(g)
    prior = standard_normal(2) if with_prior else None
    mask = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 1], [1, 1, 0], [0, 1, 1]])
    poe = product_of_experts(experts, prior=prior, mask=mask)
    for b in range(6):
        present = [
            diag_gaussian(e.mean[b], e.stddev[b])
            for e, k in zip(experts, mask[b], strict=True)
            if k
        ]
        ref = product_of_experts(present, prior=prior)
        torch.testing.assert_close(poe.mean[b], ref.mean)
        torch.testing.assert_close(poe.stddev[b], ref.stddev)


def test_masked_moe_equals_moe_of_present_experts_row_by_row():
    g = torch.Generator().manual_seed(1)
    experts = _experts(g)
    weights = torch.tensor([0.5, 0.2, 0.3])
    mask = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 1], [1, 1, 0], [0, 1, 1]])
    mix = mixture_of_experts(experts, weights, mask=mask)
    z = torch.randn(9, 6, 2, generator=g)
    for b in range(6):
        keep = mask[b].bool()
        ref = mixture_of_experts(
            [
                diag_gaussian(e.mean[b], e.stddev[b])
                for e, k in zip(experts, keep, strict=True)
                if k
            ],
            weights[keep],
        )
        torch.testing.assert_close(mix.log_prob(z)[:, b], ref.log_prob(z[:, b]))
        torch.testing.assert_close(mix.mean[b], ref.mean)


def test_mixture_of_products_components_and_mask():
    g = torch.Generator().manual_seed(2)
    experts = _experts(g)
    prior = standard_normal(2)
    mix = mixture_of_products(experts, prior=prior)
    assert mix.batch_shape == (6,) and mix.mixture_distribution.probs.shape == (6, 7)
    combos = [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
    comp = mix.component_distribution
    for c, combo in enumerate(combos):
        ref = product_of_experts([experts[i] for i in combo], prior=prior)
        torch.testing.assert_close(comp.mean[:, c], ref.mean)
        torch.testing.assert_close(comp.stddev[:, c], ref.stddev)
    torch.testing.assert_close(mix.mixture_distribution.probs, torch.full((6, 7), 1 / 7))
    mask = torch.tensor([[1, 1, 0]] * 3 + [[0, 0, 1]] * 3)
    masked = mixture_of_products(experts, mask=mask)
    probs = masked.mixture_distribution.probs
    expected = torch.zeros(6, 7)
    expected[:3, [0, 1, 3]] = 1 / 3  # {0}, {1}, {0, 1}
    expected[3:, 2] = 1.0  # {2}
    torch.testing.assert_close(probs, expected)
    # rows 3..5 collapse to expert 2 itself
    z = torch.randn(5, 6, 2, generator=g)
    torch.testing.assert_close(masked.log_prob(z)[:, 3:], experts[2].log_prob(z)[:, 3:])


def test_average_of_experts():
    g = torch.Generator().manual_seed(3)
    e = _experts(g, n=1)[0]
    same = average_of_experts([e, e, e])
    torch.testing.assert_close(same.mean, e.mean)
    torch.testing.assert_close(same.stddev, e.stddev)
    experts = _experts(g)
    avg = average_of_experts(experts)
    torch.testing.assert_close(avg.mean, sum(x.mean for x in experts) / 3)
    torch.testing.assert_close(avg.variance, sum(x.variance for x in experts) / 3)
    mask = torch.tensor([[1, 0, 1]] * 6)
    masked = average_of_experts(experts, mask=mask)
    ref = average_of_experts([experts[0], experts[2]])
    torch.testing.assert_close(masked.mean, ref.mean)
    torch.testing.assert_close(masked.stddev, ref.stddev)


def test_stratified_rsample_draws_each_component():
    g = torch.Generator().manual_seed(4)
    experts = _experts(g, batch=4)
    mix = mixture_of_experts(experts)
    z = stratified_rsample(mix, (20000,), torch.Generator().manual_seed(0))
    assert z.shape == (20000, 3, 4, 2)
    for m, e in enumerate(experts):
        torch.testing.assert_close(z[:, m].mean(0), e.mean, atol=0.03, rtol=0)
        torch.testing.assert_close(z[:, m].std(0), e.stddev, atol=0.03, rtol=0)
    again = stratified_rsample(mix, (20000,), torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, again, rtol=0, atol=0)


def _components(dist):
    """``(loc, scale)`` of a diagonal Gaussian, or of a mixture's components."""
    if isinstance(dist, torch.distributions.MixtureSameFamily):
        dist = dist.component_distribution
    return gaussian_params(dist)


AGGREGATIONS = {
    "poe": lambda e, mask: product_of_experts(e, mask=mask),
    "poe_prior": lambda e, mask: product_of_experts(
        e, prior=standard_normal(2, like=e[0].mean), mask=mask
    ),
    "mopoe": lambda e, mask: mixture_of_products(e, mask=mask),
    "mopoe_prior": lambda e, mask: mixture_of_products(
        e, prior=standard_normal(2, like=e[0].mean), mask=mask
    ),
    "avg": lambda e, mask: average_of_experts(e, mask=mask),
}


@pytest.mark.parametrize("size", [1e-17, 1e-25, 1e-35])
@pytest.mark.parametrize("kind", sorted(AGGREGATIONS))
@pytest.mark.parametrize("masked", [False, True])
def test_aggregations_of_nearly_deterministic_experts_stay_finite(size, kind, masked):
    # float32 scales below ~1e-19 overflow 1/s^2 and underflow s^2 (the full mmvm run's AVG
    # posterior came out with scale 0); the result must match a float64 computation
    g = torch.Generator().manual_seed(5)
    locs = [torch.randn(6, 2, generator=g, dtype=torch.float32) for _ in range(3)]
    scales = [size * (1 + torch.rand(6, 2, generator=g, dtype=torch.float32)) for _ in range(3)]
    mask = torch.tensor([[1, 0, 1], [1, 1, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 1, 1]])
    mask = mask.bool() if masked else None
    got = AGGREGATIONS[kind]([diag_gaussian(m, s) for m, s in zip(locs, scales, strict=True)], mask)
    ref = AGGREGATIONS[kind](
        [diag_gaussian(m.double(), s.double()) for m, s in zip(locs, scales, strict=True)], mask
    )
    (loc, scale), (ref_loc, ref_scale) = _components(got), _components(ref)
    assert loc.dtype == torch.float32 and bool((scale > 0).all())
    torch.testing.assert_close(scale.double(), ref_scale, rtol=5e-5, atol=0)
    torch.testing.assert_close(loc.double(), ref_loc, rtol=0, atol=1e-4 * (1 + ref_loc.abs().max()))
    assert bool(torch.isfinite(got.mean).all())  # (torch's log_prob squares the scale: 0)


@pytest.mark.parametrize("kind", sorted(AGGREGATIONS))
def test_aggregations_in_the_normal_range_use_the_direct_formulas(kind, monkeypatch):
    # the log-space path is only a fallback: ordinary scales never reach it
    import repro.distributions as dist

    def refuse(*args, **kwargs):
        raise AssertionError("log-space fallback used for ordinary scales")

    monkeypatch.setattr(dist, "_log_space_products", refuse)  # PoE's and MoPoE's fallback
    g = torch.Generator().manual_seed(6)
    locs = [torch.randn(4, 2, generator=g, dtype=torch.float32) for _ in range(3)]
    scales = [1e-8 + torch.rand(4, 2, generator=g, dtype=torch.float32) for _ in range(3)]
    mask = torch.tensor([[1, 0, 1], [1, 1, 1], [0, 1, 0], [1, 1, 0]]).bool()
    for m in (mask, None):  # the unmasked one last, for the check below
        got = AGGREGATIONS[kind]([diag_gaussian(*p) for p in zip(locs, scales, strict=True)], m)
        assert bool((_components(got)[1] > 0).all())
    if kind == "avg":  # its fallback is inline: compare with the direct formula's bits
        var = (torch.stack(scales).pow(2) * torch.tensor(1.0 / 3, dtype=torch.float32)).sum(0)
        torch.testing.assert_close(got.stddev, var.sqrt(), rtol=0, atol=0)
