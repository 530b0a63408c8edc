"""The exact bound hierarchy of papers/coordination.md §3 (repro.papers.coord.bounds)."""

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from repro.distributions import diag_gaussian, gaussian_params
from repro.losses import bounds as losses_bounds
from repro.losses import coordination
from repro.models.base import subsets
from repro.papers.coord import bounds as cb
from tests.linear_gaussian import LinearGaussian

B = 16
ALPHAS = (0.0, 0.1, 0.3, 0.5, 0.8, 1.0)
FAMILIES = cb.FAMILIES
N_MC = 20000


@pytest.fixture(params=[2, 3], ids=["M2", "M3"])
def model(request):
    return cb.LinearGaussianModel.random(tuple(f"m{i}" for i in range(request.param)))


@pytest.fixture
def x(model):
    return model.sample(B, torch.Generator().manual_seed(7))[1]


def _reference(model):
    """The test suite's own linear-Gaussian model (evidences from MultivariateNormal)."""
    return LinearGaussian(dict(model.a), dict(model.b), dict(model.psi), model.prior_var)


def _others(model, m):
    return [j for j in model.modalities if j != m]


def _mvn_conditional_evidence(model, x, q_m, m):
    """log int p(X_\\m|z) q_m(z) dz from the Gaussian marginal of X_\\m, per latent dim."""
    loc, scale = gaussian_params(q_m)
    others = _others(model, m)
    total = 0.0
    for d in range(model.dim):
        a = torch.stack([model.a[j][d] for j in others])
        b = torch.stack([model.b[j][d] for j in others])
        psi = torch.diag(torch.stack([model.psi[j][d] for j in others]))
        mean = loc[:, d, None] * a + b  # (B, |others|)
        cov = scale[:, d, None, None] ** 2 * torch.outer(a, a) + psi
        obs = torch.stack([x[j][:, d] for j in others], -1)
        total = total + MultivariateNormal(mean, cov).log_prob(obs)
    return total


def _gaps(model, x, q, q_m):
    """G0 = KL(q || p(z|X)) and G_m = KL(q || p~(z|X; q_m)), as KLs of Gaussians."""
    g0 = kl_divergence(q, model.posterior(x))
    gm = {m: kl_divergence(q, cb.conditional_posterior(model, x, q_m[m], m)) for m in q_m}
    return g0, gm


def _mc(values):
    """Per-sample mean over the leading sample dim and 5 standard errors."""
    return values.mean(0), 5 * values.std(0) / values.shape[0] ** 0.5 + 1e-9


# -- the model -----------------------------------------------------------------------------------
def test_posteriors_and_evidences_match_the_reference_model(model, x):
    lg = _reference(model)
    for subset in subsets(model.modalities):
        for got, want in zip(
            gaussian_params(model.posterior(x, subset)),
            gaussian_params(lg.posterior(x, subset)),
            strict=True,
        ):
            torch.testing.assert_close(got, want)
        torch.testing.assert_close(model.log_evidence(x, subset), lg.log_evidence(x, subset))


@pytest.mark.parametrize("family", FAMILIES)
def test_conditional_evidence_is_the_evidence_of_the_model_with_prior_q_m(model, x, family):
    _, q_m = cb.posteriors(model, x, family)
    lg = _reference(model)
    for m in model.modalities:
        value = cb.conditional_evidence(model, x, q_m[m], m)
        torch.testing.assert_close(value, _mvn_conditional_evidence(model, x, q_m[m], m))
        if family != "perturbed":  # exact q_m: the exact conditional evidence
            torch.testing.assert_close(value, lg.log_evidence(x) - lg.log_evidence(x, [m]))


def test_closed_forms_match_monte_carlo(model, x):
    q, q_m = cb.posteriors(model, x, "perturbed")
    z = q.sample((N_MC,))
    for subset in subsets(model.modalities):
        mc = sum(model.decoder(m, z).log_prob(x[m]) for m in subset)
        mean, tol = _mc(mc)
        assert bool(((model.expected_log_likelihood(x, q, subset) - mean).abs() < tol).all())
    for m in model.modalities:  # log E_{q_m} p(X_\m|z): the delta method's standard error
        z_m = q_m[m].sample((5 * N_MC,))
        w = sum(model.decoder(j, z_m).log_prob(x[j]) for j in _others(model, m)).exp()
        estimate = w.mean(0).log()
        tol = 5 * w.std(0) / (w.mean(0) * w.shape[0] ** 0.5)
        assert bool(((cb.conditional_evidence(model, x, q_m[m], m) - estimate).abs() < tol).all())


def test_posterior_families(model, x):
    exact, exact_m = cb.posteriors(model, x, "exact")
    loc, scale = gaussian_params(exact)
    shifted, shifted_m = cb.posteriors(model, x, "perturbed", shift=0.5, scale=1.5)
    torch.testing.assert_close(shifted.mean, loc + 0.5 * scale)
    torch.testing.assert_close(shifted.stddev, 1.5 * scale)
    for m in model.modalities:
        loc_m, scale_m = gaussian_params(exact_m[m])
        torch.testing.assert_close(shifted_m[m].mean, loc_m + 0.5 * scale_m)
        torch.testing.assert_close(shifted_m[m].stddev, 1.5 * scale_m)
    poe, poe_m = cb.posteriors(model, x, "poe")
    for m in model.modalities:
        torch.testing.assert_close(poe_m[m].mean, exact_m[m].mean)
    # no prior expert: the product of M exact posteriors holds the prior's precision M times
    extra = poe.variance.reciprocal() - exact.variance.reciprocal()
    torch.testing.assert_close(
        extra, torch.full_like(extra, (len(model.modalities) - 1) / model.prior_var)
    )
    assert bool((kl_divergence(poe, exact) > 0.01).all())


# -- ELBO and conditional ELBOs ------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_elbo_is_below_the_evidence_by_the_kl_to_the_posterior(model, x, family):
    q, _ = cb.posteriors(model, x, family)
    value, evidence = cb.elbo(model, x, q), _reference(model).log_evidence(x)
    torch.testing.assert_close(evidence - value, kl_divergence(q, model.posterior(x)))
    if family == "exact":
        torch.testing.assert_close(value, evidence)
    else:
        assert bool((value < evidence - 1e-3).all())


@pytest.mark.parametrize("family", FAMILIES)
def test_conditional_elbo_bounds_the_conditional_evidence(model, x, family):
    q, q_m = cb.posteriors(model, x, family)
    lg = _reference(model)
    g0, gm = _gaps(model, x, q, q_m)
    for m in model.modalities:
        value = cb.conditional_elbo(model, x, q, q_m[m], m)
        target = _mvn_conditional_evidence(model, x, q_m[m], m)
        torch.testing.assert_close(target - value, gm[m])
        if family == "exact":
            torch.testing.assert_close(value, lg.log_evidence(x) - lg.log_evidence(x, [m]))
        else:
            assert bool((value < target - 1e-3).all())
        if family != "perturbed":  # exact q_m: p~(z|X; q_m) = p(z|X), the same gap as L(X)
            torch.testing.assert_close(gm[m], g0)


# -- MVTCAE and JMVAE-KL -------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_mvtcae_is_the_convex_combination_and_its_gap_a_sum_of_kls(model, x, family, alpha):
    q, q_m = cb.posteriors(model, x, family)
    big_m = len(model.modalities)
    value = cb.mvtcae(model, x, q, q_m, alpha)
    cond = sum(cb.conditional_elbo(model, x, q, q_m[m], m) for m in model.modalities)
    torch.testing.assert_close(value, (1 - alpha) * cb.elbo(model, x, q) + alpha / big_m * cond)
    g0, gm = _gaps(model, x, q, q_m)
    gap = cb.mvtcae_target(model, x, q_m, alpha) - value
    torch.testing.assert_close(gap, (1 - alpha) * g0 + alpha / big_m * sum(gm.values()))
    assert bool((gap >= -1e-12).all())
    if family == "exact":
        torch.testing.assert_close(gap, torch.zeros_like(gap))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_jmvae_decomposition_and_slack(model, x, family, alpha):
    q, q_m = cb.posteriors(model, x, family)
    big_m = len(model.modalities)
    value = cb.jmvae_kl(model, x, q, q_m, alpha)
    joint = cb.elbo(model, x, q)
    cond = sum(cb.conditional_elbo(model, x, q, q_m[m], m) for m in model.modalities)
    kl_prior = kl_divergence(q, model.prior())
    if big_m == 2:  # coordination.md §3 item 2, literally
        torch.testing.assert_close(value, (1 - alpha) * joint + alpha * cond - alpha * kl_prior)
    c = alpha * (big_m - 1)
    torch.testing.assert_close(value, (1 - c) * joint + alpha * cond - c * kl_prior)
    slack = cb.jmvae_slack(model, q, alpha)
    torch.testing.assert_close(slack, c * kl_prior)
    g0, gm = _gaps(model, x, q, q_m)
    gap = cb.jmvae_target(model, x, q_m, alpha) - value
    torch.testing.assert_close(gap - slack, (1 - c) * g0 + alpha * sum(gm.values()))
    if c <= 1:  # the target bounds JMVAE-KL (plus the slack) only with non-negative weights
        assert bool((gap - slack >= -1e-12).all())


PERTURBATIONS = [(0.5, 1.5), (-1.0, 0.5), (2.0, 1.0), (0.0, 3.0)]


@pytest.mark.parametrize("shift,scale", PERTURBATIONS)
def test_mvtcae_gap_is_at_most_jmvaes_for_two_modalities(shift, scale):
    # M = 2: JMVAE gap - MVTCAE gap = a/2 (G_1 + G_2) + a KL(q || p) >= 0 for every q, q_m, a
    model = cb.LinearGaussianModel.random(("m0", "m1"))
    x = model.sample(B, torch.Generator().manual_seed(3))[1]
    for family in FAMILIES:
        q, q_m = cb.posteriors(model, x, family, shift, scale)
        g0, gm = _gaps(model, x, q, q_m)
        kl_prior = kl_divergence(q, model.prior())
        for alpha in ALPHAS:
            mvtcae_gap = cb.mvtcae_target(model, x, q_m, alpha) - cb.mvtcae(model, x, q, q_m, alpha)
            jmvae_gap = cb.jmvae_target(model, x, q_m, alpha) - cb.jmvae_kl(model, x, q, q_m, alpha)
            difference = jmvae_gap - mvtcae_gap
            torch.testing.assert_close(difference, alpha / 2 * sum(gm.values()) + alpha * kl_prior)
            if alpha > 0:
                assert bool((difference > 0).all())
            else:
                torch.testing.assert_close(difference, torch.zeros_like(difference))


def test_mvtcae_gap_is_at_most_jmvaes_with_exact_unimodal_posteriors_for_any_m():
    # exact q_m: difference = a KL(q || p(z|X)) + a (M-1) KL(q || p) >= 0, whatever q(z|X)
    model = cb.LinearGaussianModel.random(("m0", "m1", "m2", "m3"))
    x = model.sample(B, torch.Generator().manual_seed(3))[1]
    _, q_m = cb.posteriors(model, x, "exact")
    for shift, scale in PERTURBATIONS:
        q, _ = cb.posteriors(model, x, "perturbed", shift, scale)
        g0 = kl_divergence(q, model.posterior(x))
        kl_prior = kl_divergence(q, model.prior())
        for alpha in ALPHAS:
            difference = (
                cb.jmvae_target(model, x, q_m, alpha) - cb.jmvae_kl(model, x, q, q_m, alpha)
            ) - (cb.mvtcae_target(model, x, q_m, alpha) - cb.mvtcae(model, x, q, q_m, alpha))
            torch.testing.assert_close(difference, alpha * g0 + 3 * alpha * kl_prior)


def test_mvtcae_gap_can_exceed_jmvaes_for_three_modalities():
    # q = p(z) and q_m ∝ q / p(X_\m|z) (weak likelihoods keep its precision positive): then
    # p~(z|X; q_m) = q, so G_m = 0 and KL(q||p) = 0, and the difference is -a (M-2) G_0 < 0
    dim = 2
    names = ("m0", "m1", "m2")
    model = cb.LinearGaussianModel(
        {m: torch.full((dim,), 0.4) for m in names},
        {m: torch.zeros(dim) for m in names},
        {m: torch.ones(dim) for m in names},
    )
    x = model.sample(B, torch.Generator().manual_seed(5))[1]
    q = diag_gaussian(torch.zeros(B, dim), torch.ones(B, dim))
    q_m = {}
    for m in names:
        others = _others(model, m)
        gain = sum(model.a[j] ** 2 / model.psi[j] for j in others)
        pull = sum(model.a[j] * x[j] / model.psi[j] for j in others)
        precision = 1.0 - gain
        assert bool((precision > 0).all())
        q_m[m] = diag_gaussian(-pull / precision, precision.rsqrt().expand(B, dim))
    g0, gm = _gaps(model, x, q, q_m)
    for m in names:
        torch.testing.assert_close(gm[m], torch.zeros(B))
    for alpha in (0.1, 0.3, 0.5):
        mvtcae_gap = cb.mvtcae_target(model, x, q_m, alpha) - cb.mvtcae(model, x, q, q_m, alpha)
        jmvae_gap = cb.jmvae_target(model, x, q_m, alpha) - cb.jmvae_kl(model, x, q, q_m, alpha)
        torch.testing.assert_close(jmvae_gap - mvtcae_gap, -alpha * g0)
        assert bool((jmvae_gap < mvtcae_gap).all())


def test_mvtcae_gap_exceeds_jmvaes_for_some_samples_under_a_plain_perturbation():
    # seen with M = 3: q(z|X) and every q_m shifted by +2 posterior sd (scale 1), alpha = 0.5:
    # the difference is negative for some samples (min -0.60), positive on average (1.68)
    names = ("m0", "m1", "m2")
    model = cb.LinearGaussianModel.random(names, generator=torch.Generator().manual_seed(1))
    x = model.sample(64, torch.Generator().manual_seed(101))[1]
    q, q_m = cb.posteriors(model, x, "perturbed", shift=2.0, scale=1.0)
    g0, gm = _gaps(model, x, q, q_m)
    alpha = 0.5
    difference = (cb.jmvae_target(model, x, q_m, alpha) - cb.jmvae_kl(model, x, q, q_m, alpha)) - (
        cb.mvtcae_target(model, x, q_m, alpha) - cb.mvtcae(model, x, q, q_m, alpha)
    )
    expected = alpha * (-g0 + 2 / 3 * sum(gm.values()) + 2 * kl_divergence(q, model.prior()))
    torch.testing.assert_close(difference, expected)
    assert bool((difference < -0.3).any()) and float(difference.mean()) > 1.0


# -- against the sampled losses of repro.losses ----------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_sampled_losses_agree_with_the_closed_forms_within_monte_carlo_error(model, x, family):
    q, q_m = cb.posteriors(model, x, family)
    pz = model.prior()
    z = q.sample((N_MC,))
    log_px = {m: model.decoder(m, z).log_prob(x[m]) for m in model.modalities}
    total = sum(log_px.values())  # (K, B): the integrand of every expectation below
    big_m = len(model.modalities)

    def check(sampled, closed, integrand):
        _, tol = _mc(integrand)
        assert bool(((sampled - closed).abs() < tol).all())

    px_z = {m: model.decoder(m, z) for m in model.modalities}
    check(losses_bounds.elbo(x, q, px_z, pz, z), cb.elbo(model, x, q), total)
    for m in model.modalities:
        check(
            coordination.conditional_elbo(log_px, q, q_m[m], m),
            cb.conditional_elbo(model, x, q, q_m[m], m),
            total - log_px[m],
        )
    for alpha in (0.1, 0.5, 1.0):
        check(
            coordination.mvtcae(log_px, q, q_m, pz, alpha=alpha, beta=1.0),
            cb.mvtcae(model, x, q, q_m, alpha),
            (big_m - alpha) / big_m * total,
        )
        check(
            coordination.jmvae_kl(log_px, q, q_m, pz, alpha=alpha),
            cb.jmvae_kl(model, x, q, q_m, alpha),
            total,
        )


# -- the sweep -----------------------------------------------------------------------------------
KEYS = {"alpha", "elbo", "log_evidence", "mvtcae", "mvtcae_target", "mvtcae_gap", "jmvae",
        "jmvae_target", "jmvae_gap", "jmvae_slack"}  # fmt: skip


@pytest.mark.parametrize("family", FAMILIES)
def test_sweep_reports_batch_means_of_the_closed_forms(model, x, family):
    alphas = torch.linspace(0, 1, 6)
    out = cb.sweep(model, x, alphas, family)
    assert set(out) == KEYS and all(v.shape == (6,) for v in out.values())
    q, q_m = cb.posteriors(model, x, family)
    for i, alpha in enumerate(alphas.tolist()):
        torch.testing.assert_close(out["mvtcae"][i], cb.mvtcae(model, x, q, q_m, alpha).mean())
        torch.testing.assert_close(out["jmvae"][i], cb.jmvae_kl(model, x, q, q_m, alpha).mean())
        torch.testing.assert_close(
            out["jmvae_target"][i], cb.jmvae_target(model, x, q_m, alpha).mean()
        )
    torch.testing.assert_close(out["mvtcae_gap"], out["mvtcae_target"] - out["mvtcae"])
    torch.testing.assert_close(out["jmvae_gap"], out["jmvae_target"] - out["jmvae"])
    torch.testing.assert_close(out["mvtcae"][0], out["elbo"][0])  # alpha = 0: both are L(X)
    torch.testing.assert_close(out["jmvae"][0], out["elbo"][0])
    assert bool((out["mvtcae_gap"] >= -1e-12).all())
    if len(model.modalities) == 2:
        assert bool((out["jmvae_gap"][1:] > out["mvtcae_gap"][1:]).all())
    elbo_gap = out["log_evidence"] - out["elbo"]
    if family == "exact":  # no MVTCAE gap; JMVAE's gap is its slack a(M-1) KL(p(z|X) || p)
        torch.testing.assert_close(out["mvtcae_gap"], torch.zeros(6), atol=1e-10, rtol=0)
        torch.testing.assert_close(out["jmvae_gap"], out["jmvae_slack"])
    if family == "poe":  # exact q_m: MVTCAE's gap is the ELBO's, whatever alpha
        torch.testing.assert_close(out["mvtcae_gap"], elbo_gap)


# -- refusals ------------------------------------------------------------------------------------
def test_invalid_arguments_raise_value_errors(model, x):
    q, q_m = cb.posteriors(model, x)
    with pytest.raises(ValueError, match="alpha=1.5"):
        cb.mvtcae(model, x, q, q_m, 1.5)
    with pytest.raises(ValueError, match="alpha=-0.1"):
        cb.jmvae_kl(model, x, q, q_m, -0.1)
    with pytest.raises(ValueError, match="'other'"):
        cb.posteriors(model, x, "other")
    with pytest.raises(ValueError, match="scale=0"):
        cb.posteriors(model, x, "perturbed", scale=0)
    with pytest.raises(ValueError, match="'zz'"):
        cb.conditional_elbo(model, x, q, q_m["m0"], "zz")
    with pytest.raises(ValueError, match=r"\['m0'\]"):
        cb.jmvae_target(model, x, {"m0": q_m["m0"]}, 0.1)
    with pytest.raises(ValueError, match=r"unknown modalities \['zz'\]"):
        model.log_evidence(x, ["zz"])
    with pytest.raises(ValueError, match="same modalities"):
        cb.LinearGaussianModel({"a": torch.ones(2)}, {"b": torch.ones(2)}, {"a": torch.ones(2)})
    with pytest.raises(ValueError, match="same shape"):
        cb.LinearGaussianModel({"a": torch.ones(2)}, {"a": torch.ones(3)}, {"a": torch.ones(2)})
