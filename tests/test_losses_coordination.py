"""Coordination objectives against the exact linear-Gaussian model (papers/coordination.md §3)."""

import pytest
import torch
from torch.distributions import Distribution, kl_divergence

from repro.distributions import diag_gaussian
from repro.losses.bounds import elbo, log_likelihood
from repro.losses.coordination import conditional_elbo, crmvae, jmvae_kl, mvtcae, telbo
from tests.linear_gaussian import LinearGaussian

B = 16
ALPHAS = (0.0, 0.1, 0.5, 1.0)
MC = {"atol": 0.05, "rtol": 0}  # Monte-Carlo tolerance with 20000 samples


class NoClosedForm(Distribution):
    """Hides the closed-form KL: ``repro.losses.kl`` then estimates it at the given ``z``."""

    arg_constraints = {}

    def __init__(self, d):
        super().__init__(d.batch_shape, d.event_shape, validate_args=False)
        self.d = d

    def log_prob(self, value):
        return self.d.log_prob(value)


@pytest.fixture(params=[2, 3], ids=["M2", "M3"])
def lg(request):
    return LinearGaussian.random(modalities=tuple(f"m{i}" for i in range(request.param)))


@pytest.fixture
def x(lg):
    return lg.sample(B, torch.Generator().manual_seed(7))[1]


def _decode(lg, z):
    return {m: lg.decoder(m, z) for m in lg.modalities}


def _log_px(lg, x, z):
    return {m: p.log_prob(x[m]) for m, p in _decode(lg, z).items()}


def _wrong(q, shift=0.3, stretch=1.5):
    return diag_gaussian(q.mean + shift, q.stddev * stretch)


def _conditional_evidence(lg, x, m):
    """Exact log p(X_{\\m} | x_m) = log p(X) - log p(x_m)."""
    return lg.log_evidence(x) - lg.log_evidence(x, [m])


# -- the conditional ELBO ------------------------------------------------------------------------
def test_conditional_elbo_is_exact_per_sample_at_exact_posteriors(lg, x):
    # log p(X_\m|z) - log p(z|X) + log p(z|x_m) = log p(X_\m|x_m) for every z: with the KL
    # estimated at the same z, a single sample gives the conditional evidence exactly.
    q = lg.posterior(x)
    z = q.sample((3,))
    log_px = _log_px(lg, x, z)
    for m in lg.modalities:
        q_m = lg.posterior(x, [m])
        value = conditional_elbo(log_px, NoClosedForm(q), q_m, m, z=z)
        torch.testing.assert_close(value, _conditional_evidence(lg, x, m))
        single = conditional_elbo(_log_px(lg, x, z[0]), NoClosedForm(q), q_m, m, z=z[0])
        torch.testing.assert_close(single, _conditional_evidence(lg, x, m))


def test_conditional_elbo_closed_form_kl_matches_within_monte_carlo_error(lg, x):
    q = lg.posterior(x)
    z = q.sample((20000,))
    log_px = _log_px(lg, x, z)
    for m in lg.modalities:
        value = conditional_elbo(log_px, q, lg.posterior(x, [m]), m, z=z)
        torch.testing.assert_close(value, _conditional_evidence(lg, x, m), **MC)


def test_conditional_elbo_gap_is_kl_to_exact_joint_posterior(lg, x):
    # with q_m = p(z|x_m) exact: L_{\m|m}(q) = log p(X_\m|x_m) - KL(q || p(z|X)) <= the evidence
    exact = lg.posterior(x)
    q = _wrong(exact)
    z = q.sample((20000,))
    log_px = _log_px(lg, x, z)
    gap = kl_divergence(q, exact)
    assert bool((gap > 0.1).all())
    for m in lg.modalities:
        value = conditional_elbo(log_px, q, lg.posterior(x, [m]), m, z=z)
        torch.testing.assert_close(value, _conditional_evidence(lg, x, m) - gap, **MC)
        assert bool((value < _conditional_evidence(lg, x, m)).all())


def test_sum_of_conditional_likelihoods_is_m_minus_one_joint_likelihood(lg, x):
    # sum_m log p(X_\m|z) = (M-1) log p(X|z), pointwise in z (KL(q || q) = 0 isolates it)
    q = _wrong(lg.posterior(x))
    z = q.sample()
    log_px = _log_px(lg, x, z)
    total = sum(conditional_elbo(log_px, q, q, m) for m in lg.modalities)
    expected = (len(lg.modalities) - 1) * log_likelihood(_decode(lg, z), x)
    torch.testing.assert_close(total, expected)


# -- the bound hierarchy -------------------------------------------------------------------------
def _terms(lg, x, k=2, exact=False):
    q = lg.posterior(x) if exact else _wrong(lg.posterior(x))
    q_m = {m: lg.posterior(x, [m]) if exact else _wrong(lg.posterior(x, [m]), -0.2, 0.8)
           for m in lg.modalities}  # fmt: skip
    z = q.sample((k,))
    return q, q_m, z, _log_px(lg, x, z)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_mvtcae_is_convex_combination_of_elbo_and_conditionals(lg, x, alpha):
    q, q_m, z, log_px = _terms(lg, x)
    big_m = len(lg.modalities)
    value = mvtcae(log_px, q, q_m, lg.prior(), alpha=alpha, beta=1.0, z=z)
    joint = elbo(x, q, _decode(lg, z), lg.prior(), z)
    conditionals = sum(conditional_elbo(log_px, q, q_m[m], m) for m in lg.modalities)
    torch.testing.assert_close(value, (1 - alpha) * joint + alpha / big_m * conditionals)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_jmvae_kl_decomposition(lg, x, alpha):
    # M = 2: (1-a) L(X) + a (L_{2|1} + L_{1|2}) - a KL(q||p); in general the ELBO weight of
    # the reconstruction is 1 - a (M-1).
    q, q_m, z, log_px = _terms(lg, x)
    big_m = len(lg.modalities)
    value = jmvae_kl(log_px, q, q_m, lg.prior(), alpha=alpha, z=z)
    joint = elbo(x, q, _decode(lg, z), lg.prior(), z)
    conditionals = sum(conditional_elbo(log_px, q, q_m[m], m) for m in lg.modalities)
    kl_prior = kl_divergence(q, lg.prior())
    if big_m == 2:
        expected = (1 - alpha) * joint + alpha * conditionals - alpha * kl_prior
    else:
        rec = log_likelihood(_decode(lg, z), x).mean(0)
        expected = (1 - alpha * (big_m - 1)) * rec - kl_prior + alpha * conditionals
    torch.testing.assert_close(value, expected)


def test_bounds_below_their_evidences(lg, x):
    alpha = 0.3
    q, q_m, z, log_px = _terms(lg, x, k=20000)
    for m in lg.modalities:  # exact unimodal posteriors: the conditional evidences are exact
        q_m[m] = lg.posterior(x, [m])
    evidence = lg.log_evidence(x)
    conditional = sum(_conditional_evidence(lg, x, m) for m in lg.modalities)
    big_m = len(lg.modalities)
    slack = 0.05  # Monte-Carlo error
    joint = elbo(x, q, _decode(lg, z), lg.prior(), z)
    assert bool((joint < evidence + slack).all())
    jm = jmvae_kl(log_px, q, q_m, lg.prior(), alpha=alpha, z=z)
    assert bool((jm <= joint).all())
    if big_m == 2:  # the extra slack alpha KL(q(z|X)||p(z)) of coordination.md §3
        target = (1 - alpha) * evidence + alpha * conditional - alpha * kl_divergence(q, lg.prior())
        assert bool((jm < target + slack).all())
    tc = mvtcae(log_px, q, q_m, lg.prior(), alpha=alpha, beta=1.0, z=z)
    assert bool((tc < (1 - alpha) * evidence + alpha / big_m * conditional + slack).all())
    uni = {m: q_m[m].sample((20000,)) for m in lg.modalities}
    log_px_uni = {m: lg.decoder(m, uni[m]).log_prob(x[m]) for m in lg.modalities}
    tel = telbo(log_px, log_px_uni, q, q_m, lg.prior(), z=z)
    marginals = sum(lg.log_evidence(x, [m]) for m in lg.modalities)
    assert bool((tel < evidence + marginals + slack).all())


def test_telbo_at_exact_posteriors_is_sum_of_evidences(lg, x):
    q, q_m, z, log_px = _terms(lg, x, k=3, exact=True)
    uni = {m: q_m[m].sample((3,)) for m in lg.modalities}
    log_px_uni = {m: lg.decoder(m, uni[m]).log_prob(x[m]) for m in lg.modalities}
    hidden = {m: NoClosedForm(d) for m, d in q_m.items()}
    value = telbo(log_px, log_px_uni, NoClosedForm(q), hidden, lg.prior(), z=z, z_uni=uni)
    expected = lg.log_evidence(x) + sum(lg.log_evidence(x, [m]) for m in lg.modalities)
    torch.testing.assert_close(value, expected)


# -- CRMVAE --------------------------------------------------------------------------------------
def _crmvae_inputs(lg, x):
    q, q_m, z, log_px = _terms(lg, x)
    log_px_uni = {m: lg.decoder(m, q_m[m].sample((2,))).log_prob(x[m]) for m in lg.modalities}
    return q, q_m, z, log_px, log_px_uni


@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_crmvae_recon_weight_forms_differ_by_half_the_reconstruction(lg, x, beta):
    q, q_m, z, log_px, log_px_uni = _crmvae_inputs(lg, x)
    args = (log_px, log_px_uni, q, q_m, lg.prior())
    doc = crmvae(*args, beta=beta, z=z)
    half = crmvae(*args, beta=beta, recon_weight="half", z=z)
    pi = 1 / (len(lg.modalities) + 1)
    rec = sum(log_px[m].mean(0) + log_px_uni[m].mean(0) for m in lg.modalities)
    torch.testing.assert_close(doc - half, pi / 2 * rec)
    kls = kl_divergence(q, lg.prior()) + sum(kl_divergence(q, q_m[m]) for m in lg.modalities)
    # the docstring equation (beta = 1) and MultiVae's crmvae_model.py:106-109 (negated loss)
    torch.testing.assert_close(doc, pi * rec - beta * pi * kls)
    loss = -rec / (2 * (len(lg.modalities) + 1)) + beta * kls / (len(lg.modalities) + 1)
    torch.testing.assert_close(half, -loss)


# -- masks ---------------------------------------------------------------------------------------
def _restrict(d, keep):
    return {m: v for m, v in d.items() if m in keep}


def _objectives(lg, x):
    """name -> (masked(mask) -> (B,), unmasked on the sub-model(keep) -> (B,))."""
    q, q_m, z, log_px, log_px_uni = _crmvae_inputs(lg, x)
    pz = lg.prior()
    out = {
        "jmvae": lambda r, **k: jmvae_kl(r(log_px), q, r(q_m), pz, alpha=0.3, z=z, **k),
        "mvtcae": lambda r, **k: mvtcae(r(log_px), q, r(q_m), pz, alpha=0.3, z=z, **k),
        "crmvae": lambda r, **k: crmvae(r(log_px), r(log_px_uni), q, r(q_m), pz, z=z, **k),
        "crmvae_half": lambda r, **k: crmvae(
            r(log_px), r(log_px_uni), q, r(q_m), pz, recon_weight="half", z=z, **k
        ),
        "telbo": lambda r, **k: telbo(r(log_px), r(log_px_uni), q, r(q_m), pz, z=z, **k),
    }
    for m in lg.modalities:
        out[f"cond_{m}"] = lambda r, m=m, **k: conditional_elbo(r(log_px), q, q_m[m], m, **k)
    return out


def test_masked_bounds_equal_the_bounds_of_the_present_submodel(lg, x):
    g = torch.Generator().manual_seed(5)
    mask = torch.rand(B, len(lg.modalities), generator=g) < 0.6
    mask[torch.arange(B), torch.randint(len(lg.modalities), (B,), generator=g)] = True
    patterns = {tuple(row.tolist()) for row in mask}
    assert len(patterns) > 2
    for name, objective in _objectives(lg, x).items():
        masked = objective(lambda d: d, mask=mask)
        assert masked.shape == (B,)
        for pattern in patterns:
            rows = (mask == torch.tensor(pattern)).all(-1)
            keep = [m for m, p in zip(lg.modalities, pattern, strict=True) if p]
            cond = name[5:] if name.startswith("cond_") else None
            if cond is not None and cond not in keep:
                expected = torch.zeros_like(masked)
            else:  # the conditional keeps log p(x_m|z) of its own m, which it never reads
                names = keep + ([cond] if cond else [])
                expected = objective(lambda d, names=names: _restrict(d, names))
            torch.testing.assert_close(masked[rows], expected[rows], msg=f"{name} {pattern}")


def test_full_mask_equals_no_mask_and_absent_placeholders_never_leak(lg, x):
    full = torch.ones(B, len(lg.modalities), dtype=torch.bool)
    for objective in _objectives(lg, x).values():
        torch.testing.assert_close(objective(lambda d: d, mask=full), objective(lambda d: d))
    q, q_m, z, log_px, log_px_uni = _crmvae_inputs(lg, x)
    mask = full.clone()
    mask[:4, 0] = False
    first = lg.modalities[0]
    poisoned = dict(log_px)
    poisoned[first] = log_px[first].clone()
    poisoned[first][:, :4] = float("nan")
    value = mvtcae(poisoned, q, q_m, lg.prior(), z=z, mask=mask)
    assert bool(torch.isfinite(value).all())
    torch.testing.assert_close(value, mvtcae(log_px, q, q_m, lg.prior(), z=z, mask=mask))


def test_fixed_modality_count_is_multivae_weighting(lg, x):
    # MultiVae divides by the total M even when modalities are missing
    q, q_m, z, log_px, log_px_uni = _crmvae_inputs(lg, x)
    big_m = len(lg.modalities)
    mask = torch.ones(B, big_m, dtype=torch.bool)
    mask[:, 0] = False
    fixed = mvtcae(log_px, q, q_m, lg.prior(), alpha=0.3, z=z, mask=mask, n_modalities=big_m)
    present = {m: log_px[m].mean(0) for m in lg.modalities[1:]}
    kls = sum(kl_divergence(q, q_m[m]) for m in lg.modalities[1:])
    expected = (big_m - 0.3) / big_m * sum(present.values()) - 2.5 * (
        0.7 * kl_divergence(q, lg.prior()) + 0.3 / big_m * kls
    )
    torch.testing.assert_close(fixed, expected)
    unmasked = crmvae(log_px, log_px_uni, q, q_m, lg.prior(), z=z)
    torch.testing.assert_close(
        crmvae(log_px, log_px_uni, q, q_m, lg.prior(), z=z, n_modalities=big_m), unmasked
    )


def test_invalid_arguments_raise_value_errors(lg, x):
    q, q_m, z, log_px, log_px_uni = _crmvae_inputs(lg, x)
    pz = lg.prior()
    with pytest.raises(ValueError, match="alpha=1.5"):
        mvtcae(log_px, q, q_m, pz, alpha=1.5)
    with pytest.raises(ValueError, match="alpha=-0.1"):
        jmvae_kl(log_px, q, q_m, pz, alpha=-0.1)
    with pytest.raises(ValueError, match="'quarter'"):
        crmvae(log_px, log_px_uni, q, q_m, pz, recon_weight="quarter")
    with pytest.raises(ValueError, match="m='nope'"):
        conditional_elbo(log_px, q, q, "nope")
    with pytest.raises(ValueError, match=r"mask must be \(B, M\)"):
        mvtcae(log_px, q, q_m, pz, mask=torch.ones(B, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"samples \[0\]"):
        empty = torch.ones(B, len(lg.modalities), dtype=torch.bool)
        empty[0] = False
        jmvae_kl(log_px, q, q_m, pz, mask=empty)
    with pytest.raises(ValueError, match="qz_xm names"):
        mvtcae(log_px, q, _restrict(q_m, lg.modalities[:1]), pz)
    with pytest.raises(ValueError, match="n_modalities=1"):
        mvtcae(log_px, q, q_m, pz, n_modalities=1)
