"""Coherence: how often a generated sample carries the class of what it was generated from.

:func:`coherence` scores predicted classes; :func:`conditional_coherence` and
:func:`joint_coherence` run the PolyMNIST protocol on a model with per-modality classifiers
(:mod:`repro.metrics.classifiers`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from repro.metrics.classifiers import evaluating, predict
from repro.models.base import subsets

__all__ = [
    "CoherenceResult",
    "coherence",
    "within_noise",
    "conditional_coherence",
    "joint_coherence",
]


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


def within_noise(p1: float, p2: float, n: int, z: float = 2.0) -> bool:
    """Whether two shares (coherences, rates) of ``n`` samples differ by under ``z`` SEs.

    Args:
        p1: first share, in ``[0, 1]``.
        p2: second share.
        n: samples behind each share.
        z: number of standard errors (2: about 95 %).

    Returns:
        ``|p1 - p2| < z * sqrt(p1 (1 - p1) / n + p2 (1 - p2) / n)``.
    """
    se = ((p1 * (1 - p1) + p2 * (1 - p2)) / max(n, 1)) ** 0.5
    return abs(p1 - p2) < z * se


@dataclass(frozen=True)
class CoherenceResult:
    """Conditional coherences of a model.

    Attributes:
        per_subset: ``{(S, m): coherence}`` for every conditioning subset ``S`` (a sorted tuple
            of modality names) and target modality ``m`` not in ``S``.
        by_size: ``{|S|: mean coherence}``, the average of ``per_subset`` over the subsets of
            each size and their targets.
    """

    per_subset: dict[tuple[tuple[str, ...], str], float]
    by_size: dict[int, float]

    def as_dict(self) -> dict[str, float]:
        """Flat, JSON-safe view for sidecars.

        Returns:
            ``{"coherence_<k>": by_size[k]}`` and ``{"<m1>+<m2>-><m>": value}`` entries.
        """
        flat = {f"coherence_{k}": v for k, v in self.by_size.items()}
        flat |= {f"{'+'.join(s)}->{m}": v for (s, m), v in self.per_subset.items()}
        return flat


def _model_device(model: Any) -> torch.device | None:
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device
    return None


def _check_classifiers(modalities: Sequence[str], classifiers: Mapping[str, nn.Module]) -> None:
    missing = sorted(set(modalities) - set(classifiers))
    if missing:
        raise ValueError(f"classifiers lack modalities {missing}; the model has {list(modalities)}")


@torch.no_grad()
def conditional_coherence(
    model: Any,
    x: Mapping[str, Tensor],
    labels: Tensor,
    classifiers: Mapping[str, nn.Module],
    generator: torch.Generator | None,
    batch_size: int = 256,
    subset_sizes: Sequence[int] | None = None,
    **sampler_kwargs: float,
) -> CoherenceResult:
    """Coherence of conditional generation from every subset to every missing modality.

    For every subset ``S`` of sizes ``1..M-1`` (or ``subset_sizes``) and every target
    ``m`` not in ``S``, one conditional sample per test point,
    ``model.generate(x_S, S, n=1, generator)[m][0]``, is classified by ``classifiers[m]`` and
    scored against ``labels`` by balanced (macro-averaged) accuracy. One ``generate`` call per
    subset and batch serves all the subset's targets. The model and classifiers run in eval
    mode (their previous modes are restored) without gradients; batches are moved to the
    model's device when it is an ``nn.Module``.

    Args:
        model: has ``modalities`` and ``generate(x, subset, n, generator, **kwargs)``
            returning ``{m: (n, B, ...)}`` (a :class:`~repro.models.base.MultimodalVAE`).
        x: ``{m: (N, ...)}`` test observations of every modality.
        labels: ``(N,)`` classes of the test points.
        classifiers: ``{m: classifier}`` mapping images to logits, one per modality.
        generator: source of the sampling noise, consumed batch by batch, subset by subset.
        batch_size: test points per ``generate`` call.
        subset_sizes: conditioning-subset sizes to evaluate (default ``1..M-1``).
        **sampler_kwargs: passed to ``model.generate`` (e.g. HMC settings).

    Returns:
        The :class:`CoherenceResult`.

    Raises:
        ValueError: for fewer than two modalities, missing modalities or classifiers,
            mismatched sizes, or subset sizes outside ``1..M-1``.

    References:
        Shi et al., "Variational Mixture-of-Experts Autoencoders for Multi-Modal Deep Generative
        Models", NeurIPS 2019, arXiv:1911.03393 (cross-coherence); Sutter et al., ICLR 2021,
        arXiv:2105.02470 (all subsets, PolyMNIST); MultiVae
        ``metrics/coherences/coherences.py``.
    """
    modalities = list(model.modalities)
    n_mod = len(modalities)
    if n_mod < 2:
        raise ValueError(f"conditional coherence needs at least 2 modalities, got {modalities}")
    _check_classifiers(modalities, classifiers)
    missing = sorted(set(modalities) - set(x))
    if missing:
        raise ValueError(f"x lacks modalities {missing}; the model has {modalities}")
    n = len(labels)
    wrong = {m: tuple(x[m].shape) for m in modalities if len(x[m]) != n}
    if wrong or labels.dim() != 1 or n == 0:
        raise ValueError(
            f"labels must be 1-D and non-empty, and every x[m] must have len(labels) = {n} "
            f"rows; offending shapes {wrong}, labels {tuple(labels.shape)}"
        )
    sizes = sorted(set(subset_sizes)) if subset_sizes is not None else list(range(1, n_mod))
    if not sizes or not all(1 <= k < n_mod for k in sizes):
        raise ValueError(f"subset_sizes must lie in 1..{n_mod - 1}, got {subset_sizes}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    chosen = [s for s in subsets(modalities) if len(s) in sizes]
    device = _model_device(model)
    preds: dict[tuple[tuple[str, ...], str], list[Tensor]] = {
        (s, m): [] for s in chosen for m in modalities if m not in s
    }
    with evaluating(model, *classifiers.values()):
        for start in range(0, n, batch_size):
            batch = {m: x[m][start : start + batch_size] for m in modalities}
            if device is not None:
                batch = {m: v.to(device) for m, v in batch.items()}
            for s in chosen:
                out = model.generate(
                    {k: batch[k] for k in s},
                    subset=list(s),
                    n=1,
                    generator=generator,
                    **sampler_kwargs,
                )
                for m in modalities:
                    if m not in s:
                        preds[(s, m)].append(predict(classifiers[m], out[m][0], batch_size))
    target = labels.detach().cpu().long()
    per_subset = {
        key: coherence(torch.cat(chunks), target, balanced=True) for key, chunks in preds.items()
    }
    by_size = {
        k: sum(v for (s, _), v in per_subset.items() if len(s) == k)
        / sum(1 for s, _ in per_subset if len(s) == k)
        for k in sizes
    }
    return CoherenceResult(per_subset, by_size)


@torch.no_grad()
def joint_coherence(
    model: Any,
    classifiers: Mapping[str, nn.Module],
    n: int,
    generator: torch.Generator | None,
    batch_size: int = 1000,
) -> float:
    """Share of unconditional samples on which every modality's predicted class agrees.

    Args:
        model: has ``modalities`` and ``sample_prior(n, generator) -> {m: (n, ...)}``.
        classifiers: ``{m: classifier}``, one per modality.
        n: number of prior samples (10,000 in the PolyMNIST evaluations).
        generator: source of the sampling noise.
        batch_size: samples per ``sample_prior`` call.

    Returns:
        A value in ``[0, 1]``.

    Raises:
        ValueError: for non-positive ``n`` or ``batch_size`` or missing classifiers.

    References:
        Sutter et al., ICLR 2021, arXiv:2105.02470; MultiVae ``CoherenceEvaluator
        .joint_coherence``.
    """
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be positive, got {n} and {batch_size}")
    modalities = list(model.modalities)
    _check_classifiers(modalities, classifiers)
    agree = 0
    with evaluating(model, *classifiers.values()):
        for start in range(0, n, batch_size):
            out = model.sample_prior(min(batch_size, n - start), generator=generator)
            classes = torch.stack([predict(classifiers[m], out[m], batch_size) for m in modalities])
            agree += int((classes == classes[0]).all(0).sum())
    return agree / n
