"""The importance-sampled log p(X) of coord_bound_hierarchy against the exact evidence."""

import torch
from linear_gaussian import LinearGaussian

from repro.distributions import diag_gaussian, gaussian_params
from repro.papers.coord import bound_hierarchy as bh


class _Exact:
    """The linear-Gaussian model seen through the model interface the estimator uses."""

    def __init__(self, lg, widen=1.0, shift=0.0):
        self.lg, self.widen, self.shift = lg, widen, shift

    def posterior(self, x):
        loc, scale = gaussian_params(self.lg.posterior(x))
        return diag_gaussian(loc + self.shift * scale, scale * self.widen)

    def prior(self):
        return self.lg.prior()

    def decode(self, z):
        return {m: self.lg.decoder(m, z) for m in self.lg.modalities}


def _setup():
    lg = LinearGaussian.random(modalities=("a", "b"), dim=3)
    _, x = lg.sample(16, torch.Generator().manual_seed(0))
    return lg, x


def test_the_exact_posterior_as_proposal_gives_the_evidence_for_any_k():
    lg, x = _setup()
    exact = lg.log_evidence(x)
    for K in (1, 7, 300):
        got = bh.log_evidence(_Exact(lg), x, K, torch.Generator().manual_seed(K))
        assert torch.allclose(got, exact, atol=1e-9, rtol=0), K  # zero-variance weights


def test_a_miscalibrated_proposal_converges_to_the_evidence_from_below():
    lg, x = _setup()
    exact = lg.log_evidence(x)
    model = _Exact(lg, widen=1.6, shift=0.8)
    small = bh.log_evidence(model, x, 2, torch.Generator().manual_seed(1))
    large = torch.stack(
        [bh.log_evidence(model, x, 2000, torch.Generator().manual_seed(s)) for s in range(5)]
    )
    error = (large.mean(0) - exact).abs()
    spread = large.std(0) / 5**0.5 + 1e-6
    assert bool((error < 5 * spread + 2e-3).all()), (error.max(), spread.max())
    assert float((small - exact).mean()) < float((large.mean(0) - exact).mean())  # biased low


def test_objective_is_evaluated_at_beta_one_and_restores_beta():
    seen = []

    class _Model:
        beta = 2.5

        def bound(self, batch):
            seen.append(self.beta)
            return torch.zeros(3)

    model = _Model()
    out = bh.objective(model, {"a": torch.zeros(3)}, 4, torch.Generator().manual_seed(0))
    assert out.shape == (3,) and seen == [1.0] * 4 and model.beta == 2.5


def test_the_claims_exactly_and_on_trained_numbers():
    from repro.papers.coord import bounds

    lg = bounds.LinearGaussianModel.random(modalities=("x0", "x1"), dim=3)
    _, x = lg.sample(200, torch.Generator().manual_seed(0))
    alphas = torch.linspace(0, 1, 6, dtype=torch.float64)
    exact = {f: bounds.sweep(lg, x, alphas, f) for f in bounds.FAMILIES}

    def run(gap_mvtcae, gap_jmvae):
        lp = [0.0] * 50
        return {
            "log_evidence": lp,
            "objective": [-g for g in gap_mvtcae],
        }, {"log_evidence": lp, "objective": [-g for g in gap_jmvae]}

    g = torch.Generator().manual_seed(1)
    small = (1.0 + 0.1 * torch.randn(50, generator=g)).tolist()
    large = (3.0 + 0.1 * torch.randn(50, generator=g)).tolist()
    a, b = run(small, large)
    out = bh.check_predictions(exact, {"MVTCAE": {0: a}, "JMVAE": {0: b}})
    assert all(v == "holds" for k, v in out.items() if k.startswith("exact")), out
    assert out["trained: MVTCAE's gap < JMVAE-KL's"] == "holds"
    a, b = run(large, small)
    out = bh.check_predictions(exact, {"MVTCAE": {0: a}, "JMVAE": {0: b}})
    assert out["trained: MVTCAE's gap < JMVAE-KL's"] == "does not hold"
    swapped = {f: dict(s, mvtcae_gap=s["jmvae_gap"] + 1) for f, s in exact.items()}
    assert set(bh.check_predictions(swapped, {}).values()) == {"does not hold"}
