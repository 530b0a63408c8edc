"""MoPoE against hand computations of the official code's estimator and of ``q(z|X_S)``.

The official MoPoE (``thomassutter/MoPoE``, ``utils/BaseMMVae.py``) and MultiVae
(``mopoe_model.py``) train on the reconstruction of one draw of each row's chunk subset plus the
KL averaged over all subsets, and condition generation on the PoE of the given subset. Every
expected value here is computed by hand from the encoders' means and scales: explicit products
of Gaussians, the closed-form KL to ``N(0, I)``, the same noise.
"""

import math

import pytest
import torch

from repro.distributions import gaussian_params
from repro.losses.aggregate import chunk_components
from repro.models.base import MASK, subsets
from repro.models.decoders import MLPDecoder
from repro.models.encoders import MLPEncoder
from repro.models.mopoe import MoPoE

SHAPES = {"a": (4,), "b": (3,), "c": (5,)}
D = 2


def _model(names, **kwargs):
    torch.manual_seed(0)
    encoders = {m: MLPEncoder(SHAPES[m], (8,), D) for m in names}
    decoders = {m: MLPDecoder(D, (8,), SHAPES[m], kind="normal", scale=0.3) for m in names}
    return MoPoE(encoders, decoders, D, **kwargs)


def _data(names, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.rand(n, *SHAPES[m], generator=g) for m in names}


def _experts(model, x):
    return {m: gaussian_params(model.encoders[m](x[m])) for m in model.modalities}


def _poe(experts, subset, prior=False):
    """Product of Gaussians by hand: precisions add, the mean is precision-weighted."""
    precision = sum(experts[m][1] ** -2 for m in subset)
    weighted = sum(experts[m][0] * experts[m][1] ** -2 for m in subset)
    if prior:
        precision = precision + 1.0
    return weighted / precision, precision**-0.5


def _kl_to_standard_normal(loc, scale):
    return 0.5 * (scale**2 + loc**2 - 1.0 - 2.0 * scale.log()).sum(-1)


def _rows(batch, n_comp, remainder, generator):
    """The documented assignment: floor(B/C) contiguous rows per subset, then the leftovers."""
    size, extra = divmod(batch, n_comp)
    index = [c for c in range(n_comp) for _ in range(size)]
    if extra and remainder == "last":
        index += [n_comp - 1] * extra
    elif extra:
        index += sorted(torch.randperm(n_comp, generator=generator)[:extra].tolist())
    return index


def _prior_in(subset, model, mode):
    return mode is True or (mode == "full" and list(subset) == model.modalities)


def _official_chunked(model, x, seed, remainder, kl="mean", beta=None):
    """Row b: log p(X_b | z_b), z_b from its chunk's PoE, minus beta * the KL (mean or own)."""
    beta = model.beta if beta is None else beta
    g = torch.Generator().manual_seed(seed)
    batch = len(next(iter(x.values())))
    parts = subsets(model.modalities)
    experts = _experts(model, x)
    index = _rows(batch, len(parts), remainder, g)
    eps = torch.randn(1, batch, D, generator=g)[0]
    comps = [_poe(experts, s, _prior_in(s, model, model.poe_prior_expert)) for s in parts]
    kls = torch.stack([_kl_to_standard_normal(loc, scale) for loc, scale in comps])  # (C, B)
    values = []
    for b, c in enumerate(index):
        loc, scale = comps[c][0][b], comps[c][1][b]
        z = loc + scale * eps[b]
        rec = sum(model.decoders[m](z).log_prob(x[m][b]) for m in model.modalities)
        kl_b = kls[:, b].mean() if kl == "mean" else kls[c, b]
        values.append(rec - beta * kl_b)
    return torch.stack(values), index


# -- (a) the chunked objective ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "batch"), [("ab", 10), ("ab", 9), ("ab", 2), ("ab", 7), ("abc", 10), ("abc", 21)]
)
def test_chunks_are_chunk_reconstruction_plus_the_subset_averaged_kl(names, batch):
    model = _model(names, stratified="chunks", beta=2.5)
    x = _data(names, batch)
    expected, _ = _official_chunked(model, x, seed=3, remainder="random")
    value = model.bound(x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(value, expected)


@pytest.mark.parametrize("prior", [False, True, "full"])
def test_chunks_with_the_reference_remainder_and_prior_expert(prior):
    # chunk_remainder="last" is mixture_component_selection's rule; "full" its poe_fusion
    model = _model("ab", stratified="chunks", beta=1.0, chunk_remainder="last",
                   poe_prior_expert=prior)  # fmt: skip
    x = _data("ab", 10)
    expected, index = _official_chunked(model, x, seed=0, remainder="last")
    assert index == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    torch.testing.assert_close(model.bound(x, torch.Generator().manual_seed(0)), expected)


def test_chunk_kl_chosen_is_the_mmvmvae_form():
    model = _model("abc", stratified="chunks", chunk_kl="chosen", chunk_remainder="last")
    x = _data("abc", 10)
    expected, _ = _official_chunked(model, x, seed=0, remainder="last", kl="chosen")
    torch.testing.assert_close(model.bound(x, torch.Generator().manual_seed(0)), expected)


@pytest.mark.parametrize(("batch", "n_comp"), [(10, 3), (2, 3), (7, 7), (33, 7), (5, 31)])
def test_every_subset_gets_equal_weight_in_expectation(batch, n_comp):
    size, extra = divmod(batch, n_comp)
    draws = 3000
    counts = torch.zeros(n_comp)
    for seed in range(draws):
        index = chunk_components(batch, n_comp, "random", torch.Generator().manual_seed(seed))
        per = torch.bincount(index, minlength=n_comp)
        assert int(per.sum()) == batch and set(per.tolist()) <= {size, size + 1}
        assert index[: size * n_comp].tolist() == _rows(size * n_comp, n_comp, "last", None)
        counts += per
    # each leftover row picks a distinct subset uniformly: count ~ size + Binomial(draws, r/C)
    p = extra / n_comp
    tol = 5 * math.sqrt(max(draws * p * (1 - p), 1e-12)) / draws
    torch.testing.assert_close(counts / draws, torch.full((n_comp,), batch / n_comp),
                               rtol=0, atol=tol + 1e-12)  # fmt: skip
    # the reference rule: the last subset takes every leftover row (0.4 instead of 1/3 at B=10)
    last = torch.bincount(chunk_components(batch, n_comp), minlength=n_comp)
    assert int(last[-1]) == size + extra


def test_the_chunked_estimate_averages_to_the_all_subsets_objective(monkeypatch):
    # noise off: a one-row batch is one leftover row, so its subset is drawn uniformly; the
    # three values it takes (one per subset) average to the "all" objective exactly
    monkeypatch.setattr(
        "repro.distributions._noise", lambda shape, generator, like: torch.zeros(shape).to(like)
    )
    chunks = _model("ab", stratified="chunks", beta=2.5)
    every = _model("ab", stratified="all", beta=2.5)
    x = _data("ab", 1)
    with torch.no_grad():
        draws = [float(chunks.bound(x, torch.Generator().manual_seed(s))) for s in range(60)]
        target = every.bound(x, torch.Generator())
    seen = sorted(set(draws))
    assert len(seen) == 3  # each of the three subsets was drawn
    torch.testing.assert_close(torch.tensor(seen).mean().reshape(1), target)


# -- (b) q(z|X_S) and generation ----------------------------------------------------------------


@pytest.mark.parametrize("prior", [False, True, "full"])
@pytest.mark.parametrize("names", ["ab", "abc"])
def test_posterior_of_a_subset_is_the_poe_of_its_experts(names, prior):
    model = _model(names, poe_prior_expert=prior)
    x = _data(names, 6)
    experts = _experts(model, x)
    for subset in subsets(model.modalities):
        q = model.posterior(x, list(subset))
        assert q.batch_shape == (6,) and q.event_shape == (D,)
        loc, scale = gaussian_params(q)
        hand = _poe(experts, subset, _prior_in(subset, model, prior))
        torch.testing.assert_close(loc, hand[0])
        torch.testing.assert_close(scale, hand[1])
        if len(subset) == 1 and prior is not True:
            torch.testing.assert_close(loc, experts[subset[0]][0])
    # the full set's posterior is the training mixture's last component
    mix = model.aggregate(model.encode(x))
    full_loc, full_scale = gaussian_params(mix.component_distribution)
    torch.testing.assert_close(gaussian_params(model.posterior(x))[0], full_loc[:, -1])
    torch.testing.assert_close(gaussian_params(model.posterior(x))[1], full_scale[:, -1])


def test_the_prior_expert_joins_the_full_product_only_with_full():
    x = _data("abc", 4)
    plain = _model("abc")
    full = _model("abc", poe_prior_expert="full")
    a = gaussian_params(plain.aggregate(plain.encode(x)).component_distribution)
    b = gaussian_params(full.aggregate(full.encode(x)).component_distribution)
    torch.testing.assert_close(a[0][:, :-1], b[0][:, :-1], rtol=0, atol=0)
    torch.testing.assert_close(a[1][:, :-1], b[1][:, :-1], rtol=0, atol=0)
    hand = _poe(_experts(full, x), ("a", "b", "c"), prior=True)
    torch.testing.assert_close(b[0][:, -1], hand[0])
    torch.testing.assert_close(b[1][:, -1], hand[1])
    # a mixture over fewer experts than the model has gets no prior expert
    sub = full.aggregate({m: e for m, e in full.encode(x).items() if m != "c"})
    hand = _poe(_experts(full, x), ("a", "b"))
    torch.testing.assert_close(gaussian_params(sub.component_distribution)[0][:, -1], hand[0])


def test_posterior_drops_absent_experts_from_the_product():
    model = _model("abc")
    x = _data("abc", 4)
    mask = torch.ones(4, 3, dtype=torch.bool)
    mask[:2, 1] = False  # b absent in rows 0, 1
    loc, scale = gaussian_params(model.posterior(x, ["a", "b", "c"], mask=mask))
    experts = _experts(model, x)
    ac, abc = _poe(experts, "ac"), _poe(experts, "abc")
    torch.testing.assert_close(loc[:2], ac[0][:2])
    torch.testing.assert_close(scale[:2], ac[1][:2])
    torch.testing.assert_close(loc[2:], abc[0][2:])
    only_b = torch.zeros(4, 3, dtype=torch.bool)
    only_b[:, 1] = True
    with pytest.raises(ValueError, match="empty product"):
        model.posterior(x, ["a", "c"], mask=only_b)


@pytest.mark.parametrize("subset", [("a",), ("a", "b"), ("b", "c"), ("a", "b", "c")])
def test_generate_from_a_subset_samples_its_poe(subset):
    model = _model("abc")
    x = _data("abc", 3)
    loc, scale = _poe(_experts(model, x), subset)
    g = torch.Generator().manual_seed(7)
    eps = torch.randn(5, 3, D, generator=torch.Generator().manual_seed(7))
    z = model.sample_posterior(x, list(subset), n=5, generator=g)
    torch.testing.assert_close(z, loc + scale * eps)  # identical noise
    out = model.generate(x, list(subset), n=5, generator=torch.Generator().manual_seed(7))
    for m in model.modalities:
        torch.testing.assert_close(out[m], model.decoders[m](loc + scale * eps).mean)
    # and its moments: a Gaussian (not the mixture over the subsets of S)
    many = model.sample_posterior(x, list(subset), n=20000, generator=g)
    torch.testing.assert_close(many.mean(0), loc.detach(), rtol=0, atol=0.05)
    torch.testing.assert_close(many.std(0), scale.detach(), rtol=0.05, atol=0)


def test_defaults_and_errors():
    model = _model("ab")
    assert (model.stratified, model.chunk_kl, model.chunk_remainder) == ("all", "mean", "random")
    assert model.poe_prior_expert is False
    for kwargs, match in [
        ({"chunk_kl": "own"}, "chunk_kl must be"),
        ({"chunk_remainder": "first"}, "chunk_remainder must be"),
        ({"poe_prior_expert": "partial"}, "poe_prior_expert must be"),
    ]:
        with pytest.raises(ValueError, match=match):
            _model("ab", **kwargs)
    with pytest.raises(ValueError, match="remainder must be"):
        chunk_components(4, 3, "first")
    x = _data("ab", 4)
    with pytest.raises(ValueError, match="uniform mixture weights"):
        _model("ab", stratified="chunks").bound({**x, MASK: torch.tensor([[1, 0]] * 4)})
