import pytest
import torch
from torch.autograd.functional import jacobian

from repro.flows import MAF, FlowPosterior
from repro.models.encoders import MLPEncoder


def _perturb(module, scale=0.5):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("context", [0, 3])
def test_maf_inverse_and_logdet(context):
    maf = MAF(4, context=context, transforms=2, hidden=(32, 32))
    _perturb(maf)
    c = torch.randn(6, 3) if context else None
    t = maf(c)
    z = torch.randn(6, 4)
    torch.testing.assert_close(t.inv(t(z)), z, atol=1e-8, rtol=1e-6)
    ladj = t.log_abs_det_jacobian(z, t(z))
    for i in range(6):
        ti = maf(c[i : i + 1] if context else None)
        jac = jacobian(lambda v, ti=ti: ti(v.unsqueeze(0)).squeeze(0), z[i])
        torch.testing.assert_close(ladj[i], torch.linalg.slogdet(jac).logabsdet)


def test_maf_context_mismatch_raises():
    with pytest.raises(ValueError, match="context"):
        MAF(2, context=3)(None)
    with pytest.raises(ValueError, match="context"):
        MAF(2)(torch.randn(1, 3))


def test_flow_posterior_density_integrates_to_one():
    flow = FlowPosterior(MLPEncoder((1,), (8,), 2), 2, transforms=2, hidden=(16, 16))
    _perturb(flow.maf, 0.3)
    q = flow(torch.tensor([[0.7]]))
    grid = torch.linspace(-12, 12, 601)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    points = torch.stack([xx, yy], -1).reshape(-1, 1, 2)
    with torch.no_grad():
        mass = q.log_prob(points).exp().sum() * (grid[1] - grid[0]) ** 2
    assert abs(float(mass) - 1.0) < 1e-2
    # the flow really bends the base: its density differs from the base Gaussian's
    assert not torch.allclose(q.log_prob(points[:50]), q.base.log_prob(points[:50]), atol=1e-2)


def test_flow_posterior_sampling_is_differentiable():
    flow = FlowPosterior(MLPEncoder((3,), (8,), 2), 2, hidden=(16,))
    q = flow(torch.randn(5, 3))
    z = q.rsample((4,))
    assert z.shape == (4, 5, 2)
    q.log_prob(z).sum().backward()
    assert all(p.grad is not None for p in flow.parameters())
