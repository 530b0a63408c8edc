import math

import pytest
import torch

from repro.distributions import (
    diag_gaussian,
    gaussian_params,
    mixture_of_experts,
    product_of_experts,
    rsample,
    standard_normal,
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
    torch.testing.assert_close(uniform.mixture_distribution.probs, torch.full((3,), 1 / 3))


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
