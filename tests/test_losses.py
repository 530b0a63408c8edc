"""Objectives against closed forms on the exact linear-Gaussian multimodal model."""

import math

import pytest
import torch

from repro.distributions import diag_gaussian
from repro.losses import (
    canonical_correlations,
    dcca,
    elbo,
    iwae,
    jnf_ljm,
    kl,
    log_importance_weights,
    log_likelihood,
    subset_log_density,
)
from tests.linear_gaussian import LinearGaussian


@pytest.fixture
def lg():
    return LinearGaussian.random()


@pytest.fixture
def x(lg):
    return lg.sample(16, torch.Generator().manual_seed(7))[1]


def _decode(lg, z):
    return {m: lg.decoder(m, z) for m in lg.modalities}


def test_log_weights_at_exact_posterior_equal_evidence(lg, x):
    # log p(X|z) + log p(z) - log p(z|X) = log p(X) for every z: zero-variance weights.
    q = lg.posterior(x)
    z = q.sample((50,))
    log_w = log_importance_weights(x, q, _decode(lg, z), lg.prior(), z)
    torch.testing.assert_close(log_w, lg.log_evidence(x).expand(50, -1))


def test_elbo_equals_evidence_minus_kl_to_posterior(lg, x):
    # ELBO(q) = log p(X) - KL(q || p(z|X)); checked by Monte Carlo for a wrong q.
    exact = lg.posterior(x)
    q = diag_gaussian(exact.mean + 0.3, exact.stddev * 1.5)
    z = q.sample((40000,))
    value = elbo(x, q, _decode(lg, z), lg.prior(), z)
    expected = lg.log_evidence(x) - torch.distributions.kl_divergence(q, exact)
    torch.testing.assert_close(value, expected, atol=0.05, rtol=0)
    assert bool((expected < lg.log_evidence(x) - 0.1).all())


def test_elbo_at_exact_posterior_is_tight(lg, x):
    q = lg.posterior(x)
    z = q.sample((40000,))
    torch.testing.assert_close(
        elbo(x, q, _decode(lg, z), lg.prior(), z), lg.log_evidence(x), atol=0.05, rtol=0
    )


def test_elbo_beta_and_weights(lg, x):
    q = lg.posterior(x)
    z = q.sample((3,))
    px = _decode(lg, z)
    rec = log_likelihood(px, x).mean(0)
    klv = kl(q, lg.prior())
    torch.testing.assert_close(elbo(x, q, px, lg.prior(), z, beta=0.5), rec - 0.5 * klv)
    w = {"m0": 2.0}
    rec_w = (log_likelihood(px, x) + px["m0"].log_prob(x["m0"])).mean(0)
    torch.testing.assert_close(elbo(x, q, px, lg.prior(), z, weights=w), rec_w - klv)
    with pytest.raises(ValueError, match="unknown modalities"):
        log_likelihood(px, x, {"nope": 1.0})
    with pytest.raises(ValueError, match="no observation"):
        log_likelihood(px, {"m0": x["m0"]})


def test_iwae_increases_with_k_and_stays_below_evidence(lg, x):
    q = diag_gaussian(torch.zeros(16, lg.dim), torch.ones(16, lg.dim))  # the prior as proposal
    means = {}
    for k in (1, 10, 100):
        z = q.sample((k, 400)).transpose(0, 1).reshape(k, -1, lg.dim)  # 400 repeats per point
        xr = {m: v.repeat(400, 1) for m, v in x.items()}
        qr = diag_gaussian(torch.zeros(16 * 400, lg.dim), torch.ones(16 * 400, lg.dim))
        means[k] = (
            iwae(log_importance_weights(xr, qr, _decode(lg, z), lg.prior(), z))
            .reshape(400, 16)
            .mean(0)
        )
    evidence = lg.log_evidence(x)
    assert bool((means[1] < means[10]).all()) and bool((means[10] < means[100]).all())
    assert bool((means[100] < evidence + 0.05).all())


def test_kl_monte_carlo_fallback_matches_closed_form():
    q = diag_gaussian(torch.tensor([[0.5, -1.0]]), torch.tensor([[0.7, 1.3]]))
    p = diag_gaussian(torch.zeros(2), torch.ones(2))
    z = q.sample((100000,))

    class NoClosedForm(torch.distributions.Distribution):
        arg_constraints = {}

        def __init__(self, d):
            super().__init__(d.batch_shape, d.event_shape, validate_args=False)
            self.d = d

        def log_prob(self, value):
            return self.d.log_prob(value)

    estimate = kl(NoClosedForm(q), p, z)
    torch.testing.assert_close(estimate, torch.distributions.kl_divergence(q, p), atol=0.02, rtol=0)
    with pytest.raises(ValueError, match="no closed form"):
        kl(NoClosedForm(q), p)


def test_jnf_ljm_is_cross_entropy(lg, x):
    # E_{z~q(z|X)}[log q_j(z)] = -KL(q || q_j) - H(q): the stage-2 objective is a forward KL.
    q = lg.posterior(x)
    qj = {m: lg.posterior(x, [m]) for m in ("m0", "m1")}
    z = q.sample((40000,))
    value = jnf_ljm(qj, z)
    expected = sum(-torch.distributions.kl_divergence(q, p) - q.entropy() for p in qj.values())
    torch.testing.assert_close(value, expected, atol=0.05, rtol=0)


def test_subset_log_density_exponent(lg, x):
    z = torch.randn(200, 16, lg.dim) * 2
    posteriors = [lg.posterior(x, [m]) for m in lg.modalities]
    exact = lg.posterior(x).log_prob(z)
    diff = subset_log_density(z, posteriors, lg.prior()) - exact
    # exponent |S|-1: equal up to a constant in z (per data point)
    assert float(diff.std(0).max()) < 1e-9
    # exponent 1 (the public implementations) is wrong for |S| = 3
    diff1 = subset_log_density(z, posteriors, lg.prior(), prior_exponent=1.0) - exact
    assert float(diff1.std(0).min()) > 0.1
    # ... and right for |S| = 2
    pair = posteriors[:2]
    diff2 = subset_log_density(z, pair, lg.prior(), 1.0) - lg.posterior(x, ["m0", "m1"]).log_prob(z)
    assert float(diff2.std(0).max()) < 1e-9


def _correlated_pair(rho, n, g):
    u = torch.randn(n, len(rho), generator=g)
    v = rho * u + (1 - rho**2).sqrt() * torch.randn(n, len(rho), generator=g)
    a1 = torch.randn(len(rho), len(rho), generator=g) + 2 * torch.eye(len(rho))
    a2 = torch.randn(len(rho), len(rho), generator=g) + 2 * torch.eye(len(rho))
    return u @ a1 + 3.0, v @ a2 - 1.0


def test_dcca_scalar_case_is_exact():
    g = torch.Generator().manual_seed(0)
    h1, h2 = torch.randn(50, 1, generator=g), torch.randn(50, 1, generator=g)
    h2 = h2 + 0.8 * h1
    r = 1e-3
    c = torch.cov(torch.cat([h1, h2], 1).T)
    expected = torch.sqrt(c[0, 1] ** 2 / ((c[0, 0] + r) * (c[1, 1] + r)) + r)
    torch.testing.assert_close(dcca({"a": h1, "b": h2}, top_k=1, r=r), expected)


def test_reported_correlation_is_at_most_one_while_the_objective_may_exceed_it():
    """Regression: the value reported as a correlation was sqrt(rho^2 + r) > 1."""
    g = torch.Generator().manual_seed(0)
    h1 = 10 * torch.randn(500, 1, generator=g)  # large-variance projections, as after training
    h2 = 2.0 * h1 + 1.0  # perfectly correlated
    r = 1e-3
    objective = dcca({"a": h1, "b": h2}, top_k=1, r=r)
    assert float(objective) > 1.0  # the public implementations' regularised objective
    corr = canonical_correlations(h1, h2)
    assert corr.shape == (1,) and float(corr.max()) <= 1.0
    torch.testing.assert_close(corr, torch.ones(1), atol=1e-6, rtol=0)
    # the published form (ridge on S11 and S22 only) is a correlation too: at most 1
    published = dcca({"a": h1, "b": h2}, top_k=1, r=r, trace_ridge=False)
    assert float(published) <= 1.0
    torch.testing.assert_close(published, canonical_correlations(h1, h2, r=r)[0])
    c = torch.cov(torch.cat([h1, h2], 1).T)
    expected = c[0, 1].abs() / torch.sqrt((c[0, 0] + r) * (c[1, 1] + r))
    torch.testing.assert_close(published, expected)


def test_canonical_correlations_match_pearson_in_one_dimension():
    g = torch.Generator().manual_seed(3)
    h1 = torch.randn(300, 1, generator=g)
    h2 = -0.5 * h1 + torch.randn(300, 1, generator=g)
    pearson = torch.corrcoef(torch.cat([h1, h2], 1).T)[0, 1].abs()
    torch.testing.assert_close(canonical_correlations(h1, h2)[0], pearson)


def test_dcca_recovers_known_canonical_correlations():
    rho = torch.tensor([0.9, 0.6, 0.2])
    h1, h2 = _correlated_pair(rho, 200000, torch.Generator().manual_seed(1))
    corr = canonical_correlations(h1, h2, r=1e-8)
    torch.testing.assert_close(corr, rho, atol=0.01, rtol=0)
    torch.testing.assert_close(
        dcca({"a": h1, "b": h2}, top_k=None, r=1e-8), rho.sum(), atol=0.02, rtol=0
    )
    torch.testing.assert_close(dcca({"a": h1, "b": h2}, top_k=1, r=1e-8), rho[0], atol=0.01, rtol=0)


def test_dcca_training_finds_top_correlation():
    rho = torch.tensor([0.9, 0.5, 0.1])
    h1, h2 = _correlated_pair(rho, 4000, torch.Generator().manual_seed(2))
    g1, g2 = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    opt = torch.optim.Adam([*g1.parameters(), *g2.parameters()], lr=0.05)
    for _ in range(300):
        loss = -dcca({"a": g1(h1), "b": g2(h2)}, top_k=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        reached = float(dcca({"a": g1(h1), "b": g2(h2)}, top_k=1, r=1e-8))
    assert abs(reached - 0.9) < 0.02


def test_dcca_sums_pairs_and_validates():
    g = torch.Generator().manual_seed(3)
    h = {k: torch.randn(30, 2, generator=g) for k in "abc"}
    pairs = (
        dcca({"a": h["a"], "b": h["b"]})
        + dcca({"a": h["a"], "c": h["c"]})
        + dcca({"b": h["b"], "c": h["c"]})
    )
    torch.testing.assert_close(dcca(h), pairs)
    with pytest.raises(ValueError, match="at least two"):
        dcca({"a": h["a"]})
    with pytest.raises(ValueError, match="top_k"):
        dcca(h, top_k=0)
    with pytest.raises(ValueError, match="equal size"):
        canonical_correlations(h["a"], h["b"][:10])


def test_iwae_single_sample_is_log_weight():
    log_w = torch.randn(1, 5)
    torch.testing.assert_close(iwae(log_w), log_w[0])
    torch.testing.assert_close(iwae(torch.zeros(4, 2)), torch.zeros(2))
    assert math.isclose(float(iwae(torch.log(torch.tensor([[1.0], [3.0]])))), math.log(2.0))
