"""The MultimodalVAE interface itself: batch splitting, subsets, validation, defaults."""

import pytest
import torch

from repro.distributions import (
    diag_gaussian,
    mixture_of_experts,
    product_of_experts,
    select_components,
)
from repro.models.base import MASK, MultimodalVAE, Stage, split_batch, subsets
from repro.models.decoders import MLPDecoder
from repro.models.encoders import MLPEncoder


class PoE(MultimodalVAE):
    """The smallest concrete model: PoE aggregation, the default (single) stage."""

    def aggregate(self, experts, mask=None):
        return product_of_experts(list(experts.values()), self.prior(), mask)

    def bound(self, batch):
        x, mask, experts = self.encode_batch(batch)
        return -self.aggregate(experts, mask).entropy()


def _model(mods=("b", "a")):
    enc = {m: MLPEncoder((3,), (4,), 2) for m in mods}
    dec = {m: MLPDecoder(2, (4,), (3,), kind="normal") for m in mods}
    return PoE(enc, dec, 2)


def test_subsets_are_ordered_by_size_and_non_empty():
    assert subsets(["a", "b", "c"]) == [
        ("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")
    ]  # fmt: skip
    assert subsets(["a", "b", "c"], min_size=2)[0] == ("a", "b")


def test_split_batch_separates_and_checks_the_mask():
    x = {"a": torch.zeros(4, 3), "b": torch.zeros(4, 3)}
    assert split_batch(x, ["a", "b"]) == (x, None)
    mask = torch.tensor([[1, 0]] * 4)
    out, m = split_batch({**x, MASK: mask}, ["a", "b"])
    assert set(out) == {"a", "b"} and m.dtype == torch.bool
    with pytest.raises(ValueError, match=r"must be \(B, M\) = \(4, 2\)"):
        split_batch({**x, MASK: torch.ones(4, 3)}, ["a", "b"])


def test_constructor_and_subset_validation():
    model = _model()
    assert model.modalities == ["a", "b"] and model.stages == ("train",)
    with pytest.raises(ValueError, match="must name the same modalities"):
        PoE({"a": MLPEncoder((3,), (4,), 2)}, {"b": MLPDecoder(2, (4,), (3,))}, 2)
    with pytest.raises(ValueError, match="reserved"):
        _model(("a", MASK))
    assert model.check_subset(None) == ["a", "b"] and model.check_subset("b") == ["b"]
    for bad in ([], ["z"]):
        with pytest.raises(ValueError, match="non-empty list of modalities"):
            model.check_subset(bad)
    with pytest.raises(ValueError, match="unknown stage"):
        model.prepare_stage("joint")
    with pytest.raises(ValueError, match="needs observations of"):
        model.posterior({"a": torch.zeros(2, 3)}, ["a", "b"])
    with pytest.raises(ValueError, match="batch lacks modalities"):
        model.bound({"a": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="takes no sampler settings"):
        model.sample_posterior({"a": torch.zeros(2, 3)}, ["a"], n_steps=3)


def test_defaults_posterior_stage_and_sampling():
    model = _model()
    x = {m: torch.randn(5, 3) for m in ("a", "b")}
    stage = model.prepare_stage("train")
    module, bound = stage  # unpacks like the (module, bound) pair
    assert module is model and stage.prepare(x) is x and isinstance(stage, Stage)
    torch.testing.assert_close(bound(x), model.bound(x))
    mask = torch.tensor([[True, False]] * 5)
    masked = model.posterior(x, mask=mask)
    only_a = model.posterior(x, ["a"])
    torch.testing.assert_close(masked.mean, only_a.mean)  # the absent expert contributes nothing
    assert model.column_mask(mask, ["b"]).tolist() == [[False]] * 5
    g = torch.Generator().manual_seed(0)
    z = model.sample_posterior(x, ["a"], n=3, generator=g)
    assert z.shape == (3, 5, 2)
    model.set_epoch(4)
    assert model.epoch == 4
    assert model.sample_prior(2)["a"].shape == (2, 3)


def test_select_components_picks_each_rows_component():
    locs = torch.arange(12.0).reshape(2, 3, 2)  # (B, C, D)
    experts = [diag_gaussian(locs[:, c], torch.ones(2, 2)) for c in range(3)]
    mix = mixture_of_experts(experts)
    chosen = select_components(mix, torch.tensor([2, 0]))
    torch.testing.assert_close(chosen.mean, torch.stack([locs[0, 2], locs[1, 0]]))
    with pytest.raises(ValueError, match=r"index must be \(2,\)"):
        select_components(mix, torch.tensor([0]))


def test_require_complete_refuses_only_masks_with_absent_entries():
    from repro.models.base import require_complete

    require_complete(None, "unused")
    require_complete(torch.ones(3, 2, dtype=torch.bool), "unused")
    mask = torch.ones(3, 2, dtype=torch.bool)
    mask[1, 0] = False
    with pytest.raises(ValueError, match="needs every modality"):
        require_complete(mask, "X needs every modality")
