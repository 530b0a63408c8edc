"""Coherence: how often a generated sample carries the class of what it was generated from."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["coherence"]


def coherence(predicted: Tensor, target: Tensor, balanced: bool = False) -> float:
    """Share of generated samples whose predicted class equals the conditioning class.

    Args:
        predicted: ``(N,)`` integer classes assigned to generated samples (by a classifier or
            a rule).
        target: ``(N,)`` integer classes of the conditioning inputs.
        balanced: average the per-class accuracies (macro-averaged accuracy, the metric of the
            PolyMNIST evaluations) instead of the plain accuracy.

    Returns:
        A value in ``[0, 1]``; 1 for a perfect generator and classifier.

    Raises:
        ValueError: on empty or mismatched inputs.
    """
    if predicted.shape != target.shape or predicted.numel() == 0:
        raise ValueError(
            f"predicted and target must be non-empty with equal shapes, got "
            f"{tuple(predicted.shape)} and {tuple(target.shape)}"
        )
    hit = (predicted == target).to(torch.float64)
    if not balanced:
        return float(hit.mean())
    classes = torch.unique(target)
    return float(torch.stack([hit[target == c].mean() for c in classes]).mean())
