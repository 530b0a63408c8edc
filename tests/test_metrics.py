import pytest
import torch

from repro.data.toy_square import fit_shapes, make_pairs
from repro.metrics.coherence import coherence


def test_perfect_generator_and_classifier_give_coherence_one():
    # "Generate" each circle perfectly (the true paired circle) and classify it with the rule.
    d = make_pairs(200, torch.Generator().manual_seed(0))
    predicted = fit_shapes(d.x["circle"], "circle").label
    assert coherence(predicted, d.label) == 1.0
    assert coherence(predicted, d.label, balanced=True) == 1.0


def test_coherence_values():
    target = torch.tensor([0, 0, 0, 1])
    assert coherence(torch.tensor([0, 0, 0, 0]), target) == 0.75
    assert coherence(torch.tensor([0, 0, 0, 0]), target, balanced=True) == 0.5
    with pytest.raises(ValueError, match="equal shapes"):
        coherence(torch.tensor([0]), target)
