"""The MMVM regulariser against quadrature on a grid, convexity and the JS identity."""

import math

import pytest
import torch
from torch.distributions import kl_divergence

from repro.distributions import diag_gaussian, standard_normal
from repro.losses.mmvm import mixture_prior_kl, mmvm_objective


def _experts(n, dim, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    locs = 2.0 * torch.randn(n, batch, dim, generator=g)
    scales = 0.5 + torch.rand(n, batch, dim, generator=g)
    return [diag_gaussian(locs[i], scales[i]) for i in range(n)]


def _grid(dim, half=12.0, n=None):
    n = n or {1: 4001, 2: 301}[dim]
    axis = torch.linspace(-half, half, n)
    points = torch.cartesian_prod(*[axis] * dim).reshape(-1, dim)
    return points, (axis[1] - axis[0]) ** dim


def _at(q, b, n_points):
    """Row ``b`` of ``q`` repeated over ``n_points`` batch rows (one grid point each)."""
    loc, scale = q.base_dist.loc[b], q.base_dist.scale[b]
    return diag_gaussian(loc.expand(n_points, -1), scale.expand(n_points, -1))


def _log_ratio_on_grid(q_m, experts, alpha, points, b=0, mask=None):
    """``log q_m(z) - log h(z)`` at every grid point, by the function under test."""
    n = points.shape[0]
    rows = None if mask is None else mask[b : b + 1].expand(n, -1)
    return mixture_prior_kl(
        _at(q_m, b, n), [_at(q, b, n) for q in experts], "mc", alpha, points.unsqueeze(0), rows
    )


def _quadrature_kl(q_m, experts, alpha, dim, b=0):
    points, volume = _grid(dim)
    density = _at(q_m, b, points.shape[0]).log_prob(points).exp()
    return float((density * _log_ratio_on_grid(q_m, experts, alpha, points, b)).sum() * volume)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("dim", [1, 2])
def test_mc_integrand_is_the_log_ratio_to_the_alpha_mixture(dim, alpha):
    experts = _experts(3, dim)
    points, _ = _grid(dim, half=6.0, n=201 if dim == 1 else 41)
    ratio = _log_ratio_on_grid(experts[1], experts, alpha, points)
    n = points.shape[0]
    h = alpha * standard_normal(dim).log_prob(points).exp() + (1 - alpha) / 3 * sum(
        _at(q, 0, n).log_prob(points).exp() for q in experts
    )
    expected = _at(experts[1], 0, n).log_prob(points) - torch.log(h)
    torch.testing.assert_close(ratio, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("alpha", [0.0, 0.25])
@pytest.mark.parametrize("dim", [1, 2])
def test_mc_estimate_matches_quadrature(dim, alpha):
    experts = _experts(3, dim, batch=2, seed=1)
    g = torch.Generator().manual_seed(2)
    q_m = experts[0]
    eps = torch.randn(20000, 2, dim, generator=g)
    z = q_m.base_dist.loc + q_m.base_dist.scale * eps
    estimate = mixture_prior_kl(q_m, experts, "mc", alpha, z)
    for b in range(2):
        exact = _quadrature_kl(q_m, experts, alpha, dim, b)
        # the estimate is the mean of 20000 iid log-ratios; bound its error by their spread
        per_sample = _log_ratio_on_grid(q_m, experts, alpha, z[:, b], b)
        se = float(per_sample.std()) / math.sqrt(20000)
        assert abs(float(estimate[b]) - exact) < 4 * se + 1e-12
        torch.testing.assert_close(per_sample.mean(), estimate[b])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dim", [1, 2])
def test_pairwise_bound_is_above_the_exact_mixture_kl(dim, seed):
    experts = _experts(3, dim, seed=seed)
    for alpha in (0.0, 0.25, 0.6, 1.0):
        for q_m in experts:
            bound = float(mixture_prior_kl(q_m, experts, "pairwise_bound", alpha)[0])
            exact = _quadrature_kl(q_m, experts, alpha, dim)
            assert bound >= exact - 1e-8
            if alpha == 1.0:
                assert bound == pytest.approx(exact, abs=1e-8)
                assert bound == pytest.approx(float(kl_divergence(q_m, standard_normal(dim))[0]))


def test_alpha_zero_regulariser_is_m_times_generalised_js():
    # mmvm.md §1: sum_m KL(q_m || (1/M) sum_m' q_m') = M * JS(q_1..q_M), with the entropy form
    # JS = H(mean) - (1/M) sum_m H(q_m) computed independently by quadrature
    experts = _experts(4, 1, seed=5)
    points, volume = _grid(1)
    n = points.shape[0]
    mean = sum(_at(q, 0, n).log_prob(points).exp() for q in experts) / 4
    entropy_of_mean = float(-(mean * torch.log(mean)).sum() * volume)
    js = entropy_of_mean - sum(float(q.entropy()[0]) for q in experts) / 4
    regulariser = sum(_quadrature_kl(q, experts, 0.0, 1) for q in experts)
    assert regulariser == pytest.approx(4 * js, abs=1e-9)
    assert js > 0


def test_code_form_and_the_stdnorm_mixture():
    experts = _experts(3, 2, batch=5, seed=3)
    pz = standard_normal(2)
    for alpha in (0.0, 0.4, 1.0):
        total = sum(mixture_prior_kl(q, experts, "pairwise_bound", alpha) for q in experts)
        code = (
            sum(
                alpha * 3 * kl_divergence(q, pz)
                + (1 - alpha) * sum(kl_divergence(q, r) for r in experts)
                for q in experts
            )
            / 3
        )
        torch.testing.assert_close(total, code)
    # alpha = 1/(M+1): the uniform mixture of the M experts and N(0, I), in both forms
    with_prior = [*experts, diag_gaussian(torch.zeros(5, 2), torch.ones(5, 2))]
    z = experts[0].sample((7,))
    torch.testing.assert_close(
        mixture_prior_kl(experts[0], experts, "mc", 0.25, z),
        mixture_prior_kl(experts[0], with_prior, "mc", 0.0, z),
    )
    torch.testing.assert_close(
        mixture_prior_kl(experts[0], experts, "pairwise_bound", 0.25),
        mixture_prior_kl(experts[0], with_prior, "pairwise_bound", 0.0),
    )


def test_self_term_is_zero():
    (q,) = _experts(1, 3, batch=4)
    assert bool((mixture_prior_kl(q, [q], "pairwise_bound") == 0).all())
    assert bool((mixture_prior_kl(q, [q], "mc", 0.0, q.sample((5,))).abs() < 1e-12).all())


@pytest.mark.parametrize("mixture_kl", ["pairwise_bound", "mc"])
def test_masks_drop_absent_experts(mixture_kl):
    experts = _experts(3, 2, batch=4, seed=4)
    q_m = experts[0]
    z = q_m.sample((6,))
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [1, 1, 0], [1, 0, 0]]).bool()
    masked = mixture_prior_kl(q_m, experts, mixture_kl, 0.2, z, mask)
    for b in range(4):
        kept = [
            diag_gaussian(q.base_dist.loc[b : b + 1], q.base_dist.scale[b : b + 1])
            for q, k in zip(experts, mask[b], strict=True)
            if k
        ]
        row = diag_gaussian(q_m.base_dist.loc[b : b + 1], q_m.base_dist.scale[b : b + 1])
        alone = mixture_prior_kl(row, kept, mixture_kl, 0.2, z[:, b : b + 1])
        torch.testing.assert_close(masked[b : b + 1], alone)
    # an absent q_m has no term, even with an empty mixture; gradients stay finite
    loc = q_m.base_dist.loc.clone().requires_grad_(True)
    q_grad = diag_gaussian(loc, q_m.base_dist.scale)
    mask = torch.tensor([[1, 1, 1], [0, 0, 0], [0, 1, 1], [1, 1, 1]]).bool()
    value = mixture_prior_kl(q_grad, [q_grad, *experts[1:]], mixture_kl, 0.0, z, mask, mask[:, 0])
    assert bool((value[1:3] == 0).all()) and bool((value[[0, 3]] != 0).all())
    value.sum().backward()
    assert bool(torch.isfinite(loc.grad).all()) and bool((loc.grad[1:3] == 0).all())


@pytest.mark.parametrize("mixture_kl", ["pairwise_bound", "mc"])
def test_gradients_reach_every_component(mixture_kl):
    # no stop-gradient: the "prior" components q_m' are trained too
    locs = torch.randn(3, 4, 2, requires_grad=True)
    experts = [diag_gaussian(locs[i], torch.ones(4, 2)) for i in range(3)]
    z = experts[0].rsample((3,))
    mixture_prior_kl(experts[0], experts, mixture_kl, 0.1, z).sum().backward()
    assert bool((locs.grad.abs().sum((1, 2)) > 0).all())


def test_objective():
    log_px = torch.randn(3, 5)
    reg = torch.rand(3, 5)
    torch.testing.assert_close(mmvm_objective(log_px, reg, 0.5), log_px.sum(0) - 0.5 * reg.sum(0))
    torch.testing.assert_close(mmvm_objective(log_px.sum(0), reg.sum(0)), (log_px - reg).sum(0))


def test_argument_errors():
    experts = _experts(2, 2, batch=3)
    q = experts[0]
    with pytest.raises(ValueError, match="mixture_kl"):
        mixture_prior_kl(q, experts, "exact")
    with pytest.raises(ValueError, match="alpha"):
        mixture_prior_kl(q, experts, alpha=1.5)
    with pytest.raises(ValueError, match="at least one expert"):
        mixture_prior_kl(q, [])
    with pytest.raises(ValueError, match="needs samples"):
        mixture_prior_kl(q, experts, "mc")
    with pytest.raises(ValueError, match=r"\(S, B, D\)"):
        mixture_prior_kl(q, experts, "mc", z=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="mask"):
        mixture_prior_kl(q, experts, mask=torch.ones(3, 3).bool())
    with pytest.raises(ValueError, match="empty mixture"):
        mixture_prior_kl(q, experts, "mc", 0.0, q.sample((2,)), torch.zeros(3, 2).bool())
    with pytest.raises(ValueError, match="beta"):
        mmvm_objective(torch.zeros(2, 3), torch.zeros(2, 3), -1.0)
    with pytest.raises(ValueError, match="batch size"):
        mmvm_objective(torch.zeros(2, 3), torch.zeros(2, 4))
