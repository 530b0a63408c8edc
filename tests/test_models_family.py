"""Every model of the family on one shared encoder/decoder set: train through fit, generate."""

import pytest
import torch

from repro.config import TrainConfig
from repro.flows import FlowPosterior
from repro.models import MODELS
from repro.models.base import MultimodalVAE, subsets
from repro.models.decoders import MLPDecoder
from repro.models.encoders import JointMLPEncoder, MLPEncoder
from repro.train import evaluate, fit_stages

SHAPE, D, MODS = (1, 4, 4), 2, ("a", "b")


def _shared():
    encoders = {m: MLPEncoder(SHAPE, (8,), D) for m in MODS}
    decoders = {m: MLPDecoder(D, (8,), SHAPE, kind="normal") for m in MODS}
    return encoders, decoders


def _build(name, encoders, decoders):
    cls = MODELS[name]
    if name in ("JointVAE", "JMVAE", "JNF", "TELBO"):
        joint = JointMLPEncoder({m: SHAPE for m in MODS}, D, hidden=8, joint_hidden=(8,))
        uni = encoders
        if name == "JNF":
            uni = {m: FlowPosterior(enc, D, hidden=(8,)) for m, enc in encoders.items()}
        return cls(joint, uni, decoders, D)
    return cls(encoders, decoders, D)


def _data(n=48):
    g = torch.Generator().manual_seed(0)
    return {m: torch.rand(n, *SHAPE, generator=g) for m in MODS}


def test_the_registry_names_every_model_of_the_issue():
    expected = {"JointVAE", "JNF", "JMVAE", "MVAE", "MMVAE", "MoPoE", "AVG", "MVTCAE", "CRMVAE"}
    expected |= {"MMVMVAE", "TELBO"}
    assert set(MODELS) == expected
    assert all(issubclass(cls, MultimodalVAE) for cls in MODELS.values())


def test_models_can_share_one_encoder_decoder_set():
    encoders, decoders = _shared()
    a, b = _build("MoPoE", encoders, decoders), _build("MVTCAE", encoders, decoders)
    assert a.encoders["a"] is b.encoders["a"] and a.decoders["b"] is b.decoders["b"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_through_fit_and_generates_from_every_subset(name):
    model = _build(name, *_shared())
    data = _data()
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-2, progress=False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    histories = fit_stages(model, data, {s: cfg for s in model.stages})
    assert set(histories) == set(model.stages)
    assert all(len(h.train) == 3 and all(map(torch.isfinite, map(torch.tensor, h.train)))
               for h in histories.values())  # fmt: skip
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert changed, "training changed no parameter"
    value = evaluate(model, model.bound, data, batch_size=16)
    assert torch.isfinite(torch.tensor(value))
    x = {m: v[:3] for m, v in data.items()}
    for subset in subsets(model.modalities):
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        out = model.generate(x, list(subset), n=2, generator=g1)
        assert set(out) == set(MODS) and all(v.shape == (2, 3, *SHAPE) for v in out.values())
        again = model.generate(x, list(subset), n=2, generator=g2)
        assert all(torch.equal(out[m], again[m]) for m in MODS), (name, subset)
    prior = model.sample_prior(4, generator=torch.Generator().manual_seed(0))
    assert all(v.shape == (4, *SHAPE) for v in prior.values())
