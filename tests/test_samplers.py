import pytest
import torch

from repro.samplers import hmc


def test_hmc_recovers_gaussian_mean_and_covariance():
    mean = torch.tensor([1.0, -2.0])
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.5]])
    target = torch.distributions.MultivariateNormal(mean, cov)
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(2000, 2, generator=g) * 3
    result = hmc(target.log_prob, z0, n_steps=60, n_leapfrog=10, step_size=0.15, generator=g)
    samples = result.samples[20:].reshape(-1, 2)  # discard burn-in
    torch.testing.assert_close(samples.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(samples.T), cov, atol=0.04, rtol=0)
    assert 0.5 < float(result.acceptance.mean()) <= 1.0


def test_hmc_is_reproducible_with_generator():
    target = torch.distributions.Normal(0.0, 1.0)

    def log_prob(z):
        return target.log_prob(z).sum(-1)

    z0 = torch.zeros(3, 2)
    a = hmc(log_prob, z0, 5, generator=torch.Generator().manual_seed(1)).samples
    b = hmc(log_prob, z0, 5, generator=torch.Generator().manual_seed(1)).samples
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_hmc_rejects_bad_settings():
    with pytest.raises(ValueError, match="step_size"):
        hmc(lambda z: -z.pow(2).sum(-1), torch.zeros(1, 2), step_size=0.0)
