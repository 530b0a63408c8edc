"""Aggregation objectives (MVAE, MMVAE, MoPoE, AVG) against the exact linear-Gaussian model.

Every ``p(z|x_S)`` and ``log p(x_S)`` is known in closed form (tests/linear_gaussian.py), so the
ELBO of any Gaussian ``q`` is exactly ``log p(x_S) - KL(q || p(z|x_S))``: Monte-Carlo
estimates are compared with it within a few standard errors.
"""

import math

import pytest
import torch
from torch.distributions import kl_divergence

from repro.distributions import (
    average_of_experts,
    diag_gaussian,
    mixture_of_experts,
    mixture_of_products,
    product_of_experts,
    stratified_rsample,
)
from repro.losses.aggregate import (
    aggregate_elbo,
    aggregate_log_weights,
    chunk_components,
    mmvae_dreg,
    mmvae_iwae,
    mvae_elbo,
    presence,
    stratified_elbo,
)
from repro.losses.bounds import log_likelihood
from tests.linear_gaussian import LinearGaussian

SUBSETS = [("m0",), ("m1",), ("m2",), ("m0", "m1"), ("m0", "m2"), ("m1", "m2"), ("m0", "m1", "m2")]


@pytest.fixture
def lg():
    return LinearGaussian.random()


@pytest.fixture
def x(lg):
    return lg.sample(8, torch.Generator().manual_seed(7))[1]


def _decode(lg, z, modalities=None):
    return {m: lg.decoder(m, z) for m in (modalities or lg.modalities)}


def _unimodal(lg, x):
    """The exact unimodal posteriors p(z|x_m): the experts of an ideal encoder."""
    return [lg.posterior(x, [m]) for m in lg.modalities]


def _exact_elbo(lg, x, q, subset=None):
    """ELBO(q) = log p(x_S) - KL(q || p(z|x_S)), exactly."""
    return lg.log_evidence(x, subset) - kl_divergence(q, lg.posterior(x, subset))


def _mc_close(samples, exact, n_se=4.0):
    """``samples`` (N, B) Monte-Carlo terms whose mean should be ``exact`` (B,)."""
    se = samples.std(0) / math.sqrt(samples.shape[0])
    assert bool(((samples.mean(0) - exact).abs() <= n_se * se + 1e-9).all()), (
        samples.mean(0) - exact
    ) / se


# -- aggregations ------------------------------------------------------------------------------


def test_masked_poe_equals_poe_of_present_experts(lg, x):
    # likelihood experts times the prior expert: the exact posterior of the present subset
    experts = [lg.likelihood_expert(m, x[m]) for m in lg.modalities]
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [0, 0, 1]] * 2).bool()
    poe = product_of_experts(experts, prior=lg.prior(), mask=mask)
    for b in range(8):
        subset = [m for m, k in zip(lg.modalities, mask[b], strict=True) if k]
        exact = lg.posterior({m: v[b : b + 1] for m, v in x.items()}, subset)
        torch.testing.assert_close(poe.mean[b], exact.mean[0])
        torch.testing.assert_close(poe.stddev[b], exact.stddev[0])


def test_mixture_densities_equal_hand_logsumexp(lg, x):
    experts = _unimodal(lg, x)
    z = torch.randn(5, 8, lg.dim) * 1.5
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0]] * 2).bool()
    # MoE: log (1/|present| sum_{m present} q_m(z))
    moe = mixture_of_experts(experts, mask=mask)
    lp = torch.stack([e.log_prob(z) for e in experts])  # (M, 5, B)
    lp_masked = torch.where(mask.T.unsqueeze(1), lp, torch.tensor(-math.inf))
    hand = torch.logsumexp(lp_masked, 0) - torch.log(mask.sum(1).double())
    torch.testing.assert_close(moe.log_prob(z), hand)
    # MoPoE: log (1/#complete subsets sum_{S complete} PoE_S(z)), PoE without prior expert
    mopoe = mixture_of_products(experts, mask=mask)
    index = {m: i for i, m in enumerate(lg.modalities)}
    parts, complete = [], []
    for s in SUBSETS:
        poe = product_of_experts([experts[index[m]] for m in s])
        parts.append(poe.log_prob(z))
        complete.append(mask[:, [index[m] for m in s]].all(1))
    parts, complete = torch.stack(parts), torch.stack(complete)  # (7, 5, B), (7, B)
    masked = torch.where(complete.unsqueeze(1), parts, torch.tensor(-math.inf))
    hand = torch.logsumexp(masked, 0) - torch.log(complete.sum(0).double())
    torch.testing.assert_close(mopoe.log_prob(z), hand)
    # ... and with the prior expert in every product
    mopoe_p = mixture_of_products(experts, prior=lg.prior())
    parts_p = torch.stack(
        [
            product_of_experts([experts[index[m]] for m in s], lg.prior()).log_prob(z)
            for s in SUBSETS
        ]
    )
    torch.testing.assert_close(mopoe_p.log_prob(z), torch.logsumexp(parts_p, 0) - math.log(7))


def test_avg_of_identical_experts_equals_that_expert(lg, x):
    q = lg.posterior(x, ["m1"])
    avg = average_of_experts([q, q, q], mask=torch.tensor([[1, 0, 1]] * 8))
    torch.testing.assert_close(avg.mean, q.mean)
    torch.testing.assert_close(avg.stddev, q.stddev)


# -- joint ELBO with an aggregate posterior (AVG, PoE) ---------------------------------------


@pytest.mark.parametrize("aggregation", ["avg", "poe_without_prior"])
def test_aggregate_elbo_is_the_elbo_of_the_aggregate(lg, x, aggregation):
    experts = _unimodal(lg, x)
    if aggregation == "avg":
        q = average_of_experts(experts)
    else:
        q = product_of_experts(experts)
    z = q.sample((20000,))
    px = _decode(lg, z)
    value = aggregate_elbo(x, q, px, lg.prior(), z)
    exact = _exact_elbo(lg, x, q)
    terms = log_likelihood(px, x) - kl_divergence(q, lg.prior())
    _mc_close(terms, exact)
    torch.testing.assert_close(value, terms.mean(0))
    assert bool((exact < lg.log_evidence(x) - 1e-3).all())  # a strict bound: q is not exact


def test_aggregate_elbo_with_a_mask_is_the_elbo_of_the_present_subset(lg, x):
    experts = _unimodal(lg, x)
    mask = torch.ones(8, 3, dtype=torch.bool)
    mask[:4, 2] = False
    q = average_of_experts(experts, mask)
    z = q.sample((20000,))
    px = _decode(lg, z)
    present = presence(mask, lg.modalities)
    value = aggregate_elbo(x, q, px, lg.prior(), z, present)
    terms = log_likelihood(px, x, present=present) - kl_divergence(q, lg.prior())
    torch.testing.assert_close(value, terms.mean(0))
    head = {m: v[:4] for m, v in x.items()}
    q_head = average_of_experts(experts[:2])
    exact = _exact_elbo(lg, head, diag_gaussian(q_head.mean[:4], q_head.stddev[:4]), ["m0", "m1"])
    _mc_close(terms[:, :4], exact)


def test_kl_per_modality_multiplies_the_kl_by_m_exactly(lg, x):
    q = average_of_experts(_unimodal(lg, x))
    z = q.sample((3,))
    px = _decode(lg, z)
    base = aggregate_elbo(x, q, px, lg.prior(), z, beta=0.7)
    quirk = aggregate_elbo(x, q, px, lg.prior(), z, beta=0.7, kl_per_modality=True)
    klv = kl_divergence(q, lg.prior())
    torch.testing.assert_close(base - quirk, 0.7 * 2 * klv, rtol=1e-12, atol=1e-12)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [0, 0, 1]] * 2).bool()
    present = presence(mask, lg.modalities)
    masked = aggregate_elbo(x, q, px, lg.prior(), z, present, kl_per_modality=True)
    plain = aggregate_elbo(x, q, px, lg.prior(), z, present)
    torch.testing.assert_close(plain - masked, (mask.sum(1) - 1) * klv, rtol=1e-12, atol=1e-12)
    # the stratified form too
    log_px = torch.randn(2, 3, 8)
    kls = torch.rand(3, 8)
    diff = stratified_elbo(log_px, kls) - stratified_elbo(
        log_px, kls, kl_per_modality=True, n_modalities=3
    )
    torch.testing.assert_close(diff, 2 * kls.mean(0), rtol=1e-12, atol=1e-12)


# -- MVAE --------------------------------------------------------------------------------------


def test_mvae_subset_elbos_bound_their_evidences(lg, x):
    experts = dict(zip(lg.modalities, _unimodal(lg, x), strict=True))
    elbos, exact, evidence = {}, {}, {}
    for s in [tuple(lg.modalities), ("m0",), ("m1",), ("m2",), ("m0", "m2")]:
        q = product_of_experts([experts[m] for m in s], prior=lg.prior())  # MVAE convention
        z = q.sample((20000,))
        px = _decode(lg, z, s)
        elbos[s] = aggregate_elbo(x, q, px, lg.prior(), z)
        exact[s] = _exact_elbo(lg, x, q, list(s))
        evidence[s] = lg.log_evidence(x, list(s))
        _mc_close(log_likelihood(px, x) - kl_divergence(q, lg.prior()), exact[s])
        assert bool((exact[s] <= evidence[s] + 1e-12).all())
    keys = list(elbos)
    total = mvae_elbo(elbos[keys[0]], [elbos[k] for k in keys[1:4]], [elbos[keys[4]]])
    torch.testing.assert_close(total, sum(elbos.values()))
    exact_total = sum(exact.values())
    assert bool((exact_total <= sum(evidence.values())).all())
    # unimodal PoE with the prior expert: p(z) q_m(z) counts the prior twice, a strict bound
    assert bool((exact[("m0",)] < evidence[("m0",)] - 1e-3).all())
    with pytest.raises(ValueError, match="one shape"):
        mvae_elbo(elbos[keys[0]], [elbos[keys[1]][:3]])


# -- MMVAE -------------------------------------------------------------------------------------


def _repeat(x, r):
    return {m: v.repeat(r, 1) for m, v in x.items()}


def test_mmvae_iwae_increases_with_k_and_stays_below_evidence(lg, x):
    r = 300  # independent repeats of the 8 data points, vectorised in the batch
    xr = _repeat(x, r)
    q = mixture_of_experts(_unimodal(lg, xr))
    means = {}
    for k in (1, 4, 32):
        z = stratified_rsample(q, (k,))
        value = mmvae_iwae(aggregate_log_weights(xr, q, _decode(lg, z), lg.prior(), z))
        means[k] = value.reshape(r, 8)
    evidence = lg.log_evidence(x)
    m1, m4, m32 = (means[k].mean(0) for k in (1, 4, 32))
    assert bool((m1 < m4).all()) and bool((m4 < m32).all())
    se32 = means[32].std(0) / math.sqrt(r)
    assert bool((m32 <= evidence + 4 * se32).all())
    # K = 1 is the mixture ELBO, above the m_elbo-style average of the unimodal ELBOs
    # (entropy of a mixture >= mean entropy) and below log p(X)
    experts = _unimodal(lg, x)
    m_elbo = sum(_exact_elbo(lg, x, e) for e in experts) / 3
    se1 = means[1].std(0) / math.sqrt(r)
    assert bool((m_elbo <= m1 + 4 * se1).all())
    assert bool((m1 <= evidence + 4 * se1).all())


def test_m_elbo_style_stratified_elbo_is_the_mean_unimodal_elbo(lg, x):
    experts = _unimodal(lg, x)
    q = mixture_of_experts(experts)
    z = stratified_rsample(q, (5000,))  # (K, M, B, D)
    log_px = log_likelihood(_decode(lg, z), x)  # (K, M, B)
    kls = kl_divergence(q.component_distribution, lg.prior()).T  # (M, B)
    value = stratified_elbo(log_px, kls)
    exact = sum(_exact_elbo(lg, x, e) for e in experts) / 3
    terms = (log_px - kls).mean(1)  # (K, B): each sample's average over components
    torch.testing.assert_close(value, terms.mean(0))
    _mc_close(terms, exact)


def test_mmvae_iwae_with_a_mask_uses_present_experts_only(lg, x):
    experts = _unimodal(lg, x)
    mask = torch.ones(8, 3, dtype=torch.bool)
    mask[:, 1] = False
    q = mixture_of_experts(experts, mask=mask)
    z = stratified_rsample(q, (6,))
    present = presence(mask, lg.modalities)
    value = mmvae_iwae(
        aggregate_log_weights(x, q, _decode(lg, z), lg.prior(), z, present),
        q.mixture_distribution.probs,
    )
    # the same draws through the two-expert mixture, reconstructing m0 and m2 only
    keep = [0, 2]
    q2 = mixture_of_experts([experts[i] for i in keep])
    z2 = z[:, keep]
    log_w = aggregate_log_weights(x, q2, _decode(lg, z2, ["m0", "m2"]), lg.prior(), z2)
    torch.testing.assert_close(value, mmvae_iwae(log_w))


def _dreg_setup(experts_of, k, seed):
    """Per-row leaf parameters of the experts (so one backward gives r per-sample gradients)."""
    locs = [e.mean.clone().requires_grad_() for e in experts_of]
    log_scales = [e.stddev.log().clone().requires_grad_() for e in experts_of]
    experts = [diag_gaussian(a, b.exp()) for a, b in zip(locs, log_scales, strict=True)]
    stopped = [
        diag_gaussian(a.detach(), b.detach().exp()) for a, b in zip(locs, log_scales, strict=True)
    ]
    q, q_stop = mixture_of_experts(experts), mixture_of_experts(stopped)
    z = stratified_rsample(q, (k,), torch.Generator().manual_seed(seed))
    return locs, log_scales, q, q_stop, z


@pytest.fixture
def lg2():
    """A two-modality model in 2-D and one data point, for the gradient-estimator tests."""
    lg = LinearGaussian.random(modalities=("m0", "m1"), dim=2)
    return lg, lg.sample(1, torch.Generator().manual_seed(7))[1]


def _dreg_grads(lg, x1, n_experts, k, r, estimator):
    xr = _repeat(x1, r)
    experts = [lg.posterior(xr, [m]) for m in lg.modalities[:n_experts]]
    locs, log_scales, q, q_stop, z = _dreg_setup(experts, k, seed=11)
    px = _decode(lg, z)
    if estimator == "iwae":
        value = mmvae_iwae(aggregate_log_weights(xr, q, px, lg.prior(), z))
    else:
        value = mmvae_dreg(aggregate_log_weights(xr, q_stop, px, lg.prior(), z), z)
    value.sum().backward()
    return value.detach(), torch.cat([locs[0].grad, log_scales[0].grad], -1)  # (r, 2D)


def test_dreg_value_equals_iwae_exactly_and_gradient_differs(lg2):
    lg, x1 = lg2
    v_iwae, g_iwae = _dreg_grads(lg, x1, 2, 8, 50, "iwae")
    v_dreg, g_dreg = _dreg_grads(lg, x1, 2, 8, 50, "dreg")
    torch.testing.assert_close(v_dreg, v_iwae, rtol=0, atol=0)
    assert float((g_dreg - g_iwae).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="matching log_w"):
        mmvae_dreg(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5, 1))


def test_dreg_single_expert_is_unbiased_with_lower_variance(lg2):
    # one expert: the IWAE DReG identity holds, same mean gradient, far lower variance
    lg, x1 = lg2
    r = 20000
    _, g_iwae = _dreg_grads(lg, x1, 1, 16, r, "iwae")
    _, g_dreg = _dreg_grads(lg, x1, 1, 16, r, "dreg")
    se = (g_iwae.var(0) / r + g_dreg.var(0) / r).sqrt()
    assert bool(((g_iwae.mean(0) - g_dreg.mean(0)).abs() < 4 * se).all())
    assert bool((g_dreg.var(0) < 0.05 * g_iwae.var(0)).all())


def test_dreg_for_a_stratified_mixture_is_biased_as_in_the_reference_code(lg2):
    # characterisation: with two experts and K = 8 the mixture score is not the sampling
    # component's, so MMVAE's DReG (m_dreg_looser) has a different mean from the true
    # (plain reparameterised IWAE) gradient; its variance is still lower
    lg, x1 = lg2
    r = 20000
    _, g_iwae = _dreg_grads(lg, x1, 2, 8, r, "iwae")
    _, g_dreg = _dreg_grads(lg, x1, 2, 8, r, "dreg")
    se = (g_iwae.var(0) / r + g_dreg.var(0) / r).sqrt()
    assert float(((g_iwae.mean(0) - g_dreg.mean(0)).abs() / se).max()) > 8
    assert bool((g_dreg.var(0) < 0.1 * g_iwae.var(0)).all())


# -- MoPoE -------------------------------------------------------------------------------------


def test_mopoe_objective_is_the_mean_subset_elbo_and_below_the_mixture_elbo(lg, x):
    # likelihood experts times the prior: component S is the exact posterior p(z|x_S)
    experts = [lg.likelihood_expert(m, x[m]) for m in lg.modalities]
    q = mixture_of_products(experts, prior=lg.prior())
    z = stratified_rsample(q, (3000,))  # (K, 7, B, D)
    log_px = log_likelihood(_decode(lg, z), x)
    kls = kl_divergence(q.component_distribution, lg.prior()).T  # (7, B)
    value = stratified_elbo(log_px, kls)
    exact = sum(
        lg.log_evidence(x) - kl_divergence(lg.posterior(x, list(s)), lg.posterior(x))
        for s in SUBSETS
    ) / len(SUBSETS)
    _mc_close((log_px - kls).mean(1), exact)
    assert bool((exact < lg.log_evidence(x) - 1e-3).all())
    # convexity of the KL: the MoPoE objective <= the ELBO of the mixture (K = 1, stratified)
    zr = stratified_rsample(q, (400,))  # 400 independent stratified K = 1 draws
    mixture_elbo = aggregate_log_weights(x, q, _decode(lg, zr), lg.prior(), zr).mean(1)  # (N, B)
    se = mixture_elbo.std(0) / math.sqrt(400)
    assert bool((value <= mixture_elbo.mean(0) + 4 * se).all())
    assert bool((mixture_elbo.mean(0) <= lg.log_evidence(x) + 4 * se).all())


def test_mopoe_objective_with_a_mask_uses_complete_subsets_only(lg, x):
    experts = [lg.likelihood_expert(m, x[m]) for m in lg.modalities]
    mask = torch.ones(8, 3, dtype=torch.bool)
    mask[:, 0] = False
    q = mixture_of_products(experts, prior=lg.prior(), mask=mask)
    z = stratified_rsample(q, (3000,))
    present = presence(mask, lg.modalities)
    log_px = log_likelihood(_decode(lg, z), x, present=present)
    kls = kl_divergence(q.component_distribution, lg.prior()).T
    value = stratified_elbo(log_px, kls, q.mixture_distribution.probs)
    sub = ["m1", "m2"]
    exact = (
        sum(
            lg.log_evidence(x, sub) - kl_divergence(lg.posterior(x, list(s)), lg.posterior(x, sub))
            for s in [("m1",), ("m2",), ("m1", "m2")]
        )
        / 3
    )
    complete = [1, 2, 5]  # {m1}, {m2}, {m1, m2}
    terms = (log_px[:, complete] - kls[complete]).mean(1)
    torch.testing.assert_close(value, terms.mean(0))
    _mc_close(terms, exact)


# -- the chunk quirk and argument checks -------------------------------------------------------


def test_chunks_follow_mmvmvae():
    # mv_vae.py:aggregate_latents_moe: floor(B / C) rows per chunk, the last takes the rest
    assert chunk_components(10, 3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert chunk_components(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert chunk_components(2, 3).tolist() == [2, 2]
    log_px = torch.randn(2, 3, 10)
    kls = torch.rand(3, 10)
    value = stratified_elbo(log_px, kls, beta=2.0, stratified="chunks")
    per = log_px.mean(0) - 2.0 * kls
    torch.testing.assert_close(value, per[chunk_components(10, 3), torch.arange(10)])
    # ... and its expectation over a shuffled batch is the "all" objective
    torch.testing.assert_close(
        stratified_elbo(log_px, kls, beta=2.0), per.mean(0), rtol=1e-12, atol=1e-12
    )


def test_chunks_with_the_subset_averaged_kl_follow_the_official_mopoe():
    # BaseMMVae.py:forward: each row's own chunk reconstruction, minus beta * the KL averaged
    # over all C subsets (calc_group_divergence_moe with uniform weights), for every row
    log_px = torch.randn(2, 3, 10)
    kls = torch.rand(3, 10)
    index = torch.tensor([2, 0, 1, 1, 0, 2, 2, 0, 1, 0])
    value = stratified_elbo(log_px, kls, beta=2.0, stratified="chunks", chunk_kl="mean",
                            index=index)  # fmt: skip
    rows = torch.arange(10)
    hand = log_px.mean(0)[index, rows] - 2.0 * (kls[0] + kls[1] + kls[2]) / 3
    torch.testing.assert_close(value, hand)
    chosen = stratified_elbo(log_px, kls, beta=2.0, stratified="chunks", index=index)
    torch.testing.assert_close(chosen, log_px.mean(0)[index, rows] - 2.0 * kls[index, rows])
    # averaged over the C assignments of a row, the chunk value is the "all" value
    per_subset = [
        stratified_elbo(log_px, kls, stratified="chunks", chunk_kl="mean",
                        index=torch.full((10,), c))
        for c in range(3)
    ]  # fmt: skip
    torch.testing.assert_close(torch.stack(per_subset).mean(0), stratified_elbo(log_px, kls))
    with pytest.raises(ValueError, match="chunk_kl must be"):
        stratified_elbo(log_px, kls, stratified="chunks", chunk_kl="own")
    with pytest.raises(ValueError, match=r"index must be \(10,\)"):
        stratified_elbo(log_px, kls, stratified="chunks", index=index[:4])


def test_chunk_remainder_rules():
    # the reference codes: leftovers to the last component; "random": distinct components
    assert chunk_components(10, 3, "last").tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    drawn = chunk_components(10, 3, "random", torch.Generator().manual_seed(0))
    assert drawn[:9].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and 0 <= int(drawn[9]) <= 2
    small = chunk_components(2, 3, "random", torch.Generator().manual_seed(0))
    assert len(set(small.tolist())) == 2  # B < C: distinct components, not all the last
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    assert chunk_components(9, 3, "random", g).tolist() == chunk_components(9, 3).tolist()
    assert torch.equal(g.get_state(), state)  # nothing drawn when C divides B


def test_argument_errors():
    log_px, kls = torch.zeros(2, 3, 4), torch.zeros(3, 4)
    with pytest.raises(ValueError, match="stratified must be"):
        stratified_elbo(log_px, kls, stratified="random")
    with pytest.raises(ValueError, match="uniform mixture weights"):
        stratified_elbo(log_px, kls, torch.tensor([[0.5, 0.5, 0.0]] * 4), stratified="chunks")
    with pytest.raises(ValueError, match="needs n_modalities"):
        stratified_elbo(log_px, kls, kl_per_modality=True)
    with pytest.raises(ValueError, match=r"\(K, C, B\)"):
        stratified_elbo(log_px[0], kls)
    with pytest.raises(ValueError, match=r"\(B, 3\) mixture weights"):
        mmvae_iwae(log_px, torch.ones(4, 2))
    with pytest.raises(ValueError, match="columns"):
        presence(torch.ones(4, 2), ["a", "b", "c"])
    with pytest.raises(ValueError, match="batch_size"):
        chunk_components(0, 3)
    q = diag_gaussian(torch.zeros(4, 1), torch.ones(4, 1))
    px = {"a": q}
    with pytest.raises(ValueError, match="unknown modalities"):
        log_likelihood(px, {"a": torch.zeros(4, 1)}, present={"b": torch.ones(4).bool()})
    with pytest.raises(ValueError, match="no observation"):
        log_likelihood(px, {"b": torch.zeros(4, 1)})
