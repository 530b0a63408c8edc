"""Latent-space probes and cross-coherence of the MMVM rat evaluation.

:func:`latent_means` encodes every modality alone; :func:`linear_probe` scores how well a
logistic regression reads the label off those posterior means (per modality, and once on all
modalities stacked: the across-modality separation of the MMVM paper's Fig. 4);
:class:`MLPClassifier` and :func:`train_mlp_classifiers` give the per-modality classifiers
that :func:`cross_coherence` applies to conditionally generated data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from repro.metrics.classifiers import evaluating, fit_classifiers, predict
from repro.metrics.coherence import _model_device, coherence

__all__ = [
    "MLPClassifier",
    "cross_coherence",
    "latent_means",
    "linear_probe",
    "self_reconstruction_error",
    "train_mlp_classifiers",
]

MLP_HIDDEN = (1024, 512, 256, 64)  # mmvm.md §5: D -> 1024 -> 512 -> 256 -> 64 -> n_classes


def _check_labelled(x: Mapping[str, Tensor], y: Tensor, name: str) -> int:
    """Raise unless ``y`` is 1-D, non-empty and every ``x[m]`` has ``len(y)`` rows."""
    n = len(y) if y.dim() == 1 else -1
    wrong = {m: tuple(v.shape) for m, v in x.items() if v.dim() < 2 or len(v) != n}
    if not x or n <= 0 or wrong:
        raise ValueError(
            f"{name} must be a non-empty dict of (N, ...) tensors with N = len(labels) > 0 and "
            f"labels 1-D; got modalities {sorted(x)}, offending shapes {wrong}, labels "
            f"{tuple(y.shape)}"
        )
    return n


@torch.no_grad()
def latent_means(model: Any, x: Mapping[str, Tensor], batch_size: int = 1024) -> dict[str, Tensor]:
    """Mean of every unimodal posterior ``q(z|x_m)``, in eval mode and without gradients.

    Batches are moved to the model's device when it is an ``nn.Module``; the model's previous
    train/eval mode is restored afterwards.

    Args:
        model: has ``modalities`` and ``posterior(x, subset)`` returning a distribution with a
            ``.mean`` of shape ``(B, D)`` (a :class:`~repro.models.base.MultimodalVAE`).
        x: ``{m: (N, ...)}`` observations; every modality of the model must be present.
        batch_size: observations per ``posterior`` call.

    Returns:
        ``{m: (N, D)}`` posterior means on the CPU, one entry per model modality.

    Raises:
        ValueError: when ``x`` lacks a modality, the modalities have different sizes, or
            ``batch_size < 1``.
    """
    modalities = list(model.modalities)
    missing = sorted(set(modalities) - set(x))
    if missing:
        raise ValueError(f"x lacks modalities {missing}; the model has {modalities}")
    sizes = {m: len(x[m]) for m in modalities}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every x[m] must have the same number of rows, got {sizes}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = sizes[modalities[0]]
    device = _model_device(model)
    out: dict[str, list[Tensor]] = {m: [] for m in modalities}
    with evaluating(model):
        for start in range(0, n, batch_size):
            for m in modalities:
                batch = x[m][start : start + batch_size]
                if device is not None:
                    batch = batch.to(device)
                out[m].append(model.posterior({m: batch}, [m]).mean.detach().cpu())
    return {m: torch.cat(chunks) for m, chunks in out.items()}


def self_reconstruction_error(
    model: Any, x: Mapping[str, Tensor], batch_size: int = 1024
) -> dict[str, float]:
    """Squared error of each modality decoded from the mean of its own posterior ``q(z|x_m)``.

    ``x_hat_m`` is the mean of ``p(x_m | z = E[z|x_m])``; the error of a sample is
    ``sum_d (x_hat_{m,d} - x_{m,d})^2`` (the MMVM code's MSE without the 1/2, per sample),
    averaged over the samples. Eval mode, no gradients, batches moved to the model's device.

    Args:
        model: has ``modalities``, ``posterior(x, subset)`` and ``decoders`` (a
            :class:`~repro.models.base.MultimodalVAE`).
        x: ``{m: (N, ...)}`` observations of every modality.
        batch_size: observations per call.

    Returns:
        ``{m: mean summed squared error}`` plus ``"sum"``, the sum over modalities.

    Raises:
        ValueError: as :func:`latent_means`.
    """
    means = latent_means(model, x, batch_size)
    device = _model_device(model)
    out: dict[str, float] = {}
    with evaluating(model), torch.no_grad():
        for m, z in means.items():
            total = 0.0
            for start in range(0, len(z), batch_size):
                zb = z[start : start + batch_size]
                xb = x[m][start : start + batch_size]
                if device is not None:
                    zb, xb = zb.to(device), xb.to(device)
                x_hat = model.decoders[m](zb).mean
                total += float((x_hat - xb).pow(2).flatten(1).sum(1).sum())
            out[m] = total / len(z)
    out["sum"] = sum(out.values())
    return out


def _logistic_accuracy(
    train_z: np.ndarray, train_y: np.ndarray, test_z: np.ndarray, test_y: np.ndarray
) -> float:
    from sklearn.linear_model import LogisticRegression  # heavy import, only when probing

    clf = LogisticRegression(max_iter=10000)
    clf.fit(train_z, train_y)
    return float((clf.predict(test_z) == test_y).mean())


def linear_probe(
    train_z: Mapping[str, Tensor],
    train_y: Tensor,
    test_z: Mapping[str, Tensor],
    test_y: Tensor,
    max_train: int = 10_000,
    seed: int = 0,
) -> dict[str, float]:
    """Logistic-regression accuracy of the label read off posterior means.

    One ``LogisticRegression(max_iter=10000)`` (sklearn's deterministic lbfgs) per modality,
    fitted on at most ``max_train`` training encodings (the same random rows for every
    modality, drawn by a ``torch.Generator`` seeded with ``seed``) and scored by plain
    accuracy on the test encodings. Key ``"all"``: one classifier fitted on every modality's
    (subsampled) training means stacked row-wise with the labels repeated, scored on the test
    means stacked the same way. It is high only when the modalities place each class in the
    same region of the latent space, i.e. when the latent spaces are aligned across modalities.

    Args:
        train_z: ``{m: (N, D)}`` training posterior means (e.g. from :func:`latent_means`).
        train_y: ``(N,)`` integer training labels.
        test_z: ``{m: (N', D)}`` test posterior means, same modalities and ``D``.
        test_y: ``(N',)`` integer test labels.
        max_train: most training rows per modality (10,000 in the reference code).
        seed: seed of the subsampling when ``N > max_train``.

    Returns:
        ``{m: accuracy}`` for every modality, plus ``"all"``; values in ``[0, 1]``.

    Raises:
        ValueError: for mismatched modalities, sizes or latent dimensions, a modality named
            ``"all"``, fewer than two training classes, or ``max_train < 1``.

    References:
        Sutter, Manduchi, Ryser & Vogt, "Unity by Diversity: Improved Representation Learning
        in Multimodal VAEs", NeurIPS 2024, arXiv:2403.05300 (Fig. 3-4); code
        ``thomassutter/mmvmvae`` ``SPIKEVAE.on_validation_epoch_end``.
    """
    if sorted(train_z) != sorted(test_z):
        raise ValueError(
            f"train_z and test_z must name the same modalities, got {sorted(train_z)} and "
            f"{sorted(test_z)}"
        )
    if "all" in train_z:
        raise ValueError("'all' is the key of the stacked probe; rename that modality")
    if max_train < 1:
        raise ValueError(f"max_train must be positive, got {max_train}")
    n = _check_labelled(train_z, train_y, "train_z")
    _check_labelled(test_z, test_y, "test_z")
    dims = {m: (train_z[m].shape[1:], test_z[m].shape[1:]) for m in train_z}
    shapes = {s for pair in dims.values() for s in pair}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"every mean must be (N, D) with one shared D, got {dims}")
    if len(torch.unique(train_y)) < 2:
        raise ValueError("train_y holds a single class; a probe needs at least two")
    modalities = sorted(train_z)
    if n > max_train:
        rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_train]
    else:
        rows = torch.arange(n)
    tr = {m: train_z[m][rows].detach().cpu().double().numpy() for m in modalities}
    te = {m: test_z[m].detach().cpu().double().numpy() for m in modalities}
    ytr = train_y[rows].detach().cpu().long().numpy()
    yte = test_y.detach().cpu().long().numpy()
    out = {m: _logistic_accuracy(tr[m], ytr, te[m], yte) for m in modalities}
    out["all"] = _logistic_accuracy(
        np.concatenate([tr[m] for m in modalities]),
        np.tile(ytr, len(modalities)),
        np.concatenate([te[m] for m in modalities]),
        np.tile(yte, len(modalities)),
    )
    return out


class MLPClassifier(nn.Module):
    """Per-modality MLP classifier of the MMVM rat coherence.

    ``Flatten - [Linear - LeakyReLU] x len(hidden) - Linear(hidden[-1] -> n_classes)``; the
    reference widths are ``D -> 1024 -> 512 -> 256 -> 64 -> n_classes``. Inputs are cast to
    the weights' dtype.

    Args:
        in_dim: ``D``, the number of features of one (flattened) observation.
        n_classes: number of classes (4 odours for the rats).
        hidden: hidden widths.

    Raises:
        ValueError: for non-positive sizes.

    References:
        Sutter et al., NeurIPS 2024, arXiv:2403.05300; code ``thomassutter/mmvmvae`` (rat
        coherence classifier).
    """

    def __init__(self, in_dim: int, n_classes: int, hidden: Sequence[int] = MLP_HIDDEN) -> None:
        super().__init__()
        widths = [in_dim, *hidden]
        if min([*widths, n_classes]) < 1:
            raise ValueError(
                f"in_dim, hidden and n_classes must be positive, got {in_dim}, "
                f"{tuple(hidden)}, {n_classes}"
            )
        self.in_dim, self.n_classes, self.hidden = in_dim, n_classes, tuple(hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b), nn.LeakyReLU()]
        layers.append(nn.Linear(widths[-1], n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits.

        Args:
            x: ``(N, ...)`` observations with ``in_dim`` features each.

        Returns:
            ``(N, n_classes)`` logits.

        Raises:
            ValueError: when an observation does not have ``in_dim`` features.
        """
        if x.dim() < 2 or math.prod(x.shape[1:]) != self.in_dim:
            raise ValueError(
                f"MLPClassifier expects (N, ...) with {self.in_dim} features, got {tuple(x.shape)}"
            )
        return self.net(x.to(self.net[1].weight.dtype))


def train_mlp_classifiers(
    x: Mapping[str, Tensor],
    y: Tensor,
    epochs: int = 51,
    batch_size: int = 128,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
    hidden: Sequence[int] = MLP_HIDDEN,
    cache: bool = True,
    data_key: str | None = None,
) -> dict[str, MLPClassifier]:
    """Train one :class:`MLPClassifier` per modality (Adam, cross-entropy), with a cache.

    The per-modality seeds are drawn from ``generator`` (a fixed seed 0 when ``None``), so the
    result is reproducible; initialisation runs inside a forked global RNG, which is left
    untouched. Classifiers are float32 and trained on the data's device. Results are cached
    under ``cache_dir()/classifiers/mlp-<hash>.pt`` with the key of
    :func:`repro.metrics.classifiers.train_classifiers` (data or ``data_key``, settings,
    generator state, source code).

    Args:
        x: ``{m: (N, ...)}`` training observations.
        y: ``(N,)`` integer classes ``0..K-1``.
        epochs: passes over the data (51 in the reference).
        batch_size: minibatch size (128 in the reference).
        lr: Adam learning rate (``1e-3`` in the reference).
        generator: source of the seeds (its state enters the cache key; advanced by one draw).
        hidden: hidden widths (reference ``(1024, 512, 256, 64)``; smaller for quick runs).
        cache: read and write the cache file.
        data_key: a name standing for the data in the cache key, to skip hashing large
            tensors (the caller guarantees that it changes with the data).

    Returns:
        ``{m: classifier}`` in eval mode, on the data's device.

    Raises:
        ValueError: for mismatched sizes, negative classes or non-positive settings.

    References:
        Sutter et al., NeurIPS 2024, arXiv:2403.05300 (§ evaluation of the rat data).
    """
    n = _check_labelled(x, y, "x")
    hidden = tuple(int(h) for h in hidden)
    if epochs < 1 or batch_size < 1 or lr <= 0 or not hidden or min(hidden) < 1:
        raise ValueError(
            f"epochs, batch_size, lr and hidden widths must be positive (hidden non-empty), "
            f"got {epochs}, {batch_size}, {lr}, {hidden}"
        )
    y = y.long()
    if int(y.min()) < 0:
        raise ValueError(f"y must hold classes 0..K-1, got a minimum of {int(y.min())}")
    n_classes = max(int(y.max()) + 1, 2)
    hyper = {
        "model": "mlp",
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "n_classes": n_classes,
        "hidden": hidden,
        "n": n,
    }
    builders = {
        m: (lambda v=v: MLPClassifier(math.prod(v.shape[1:]), n_classes, hidden))
        for m, v in x.items()
    }
    return fit_classifiers(
        x, y, builders, hyper, generator, cache, data_key, code=(MLPClassifier,), prefix="mlp-"
    )


@torch.no_grad()
def cross_coherence(
    model: Any,
    x: Mapping[str, Tensor],
    y: Tensor,
    classifiers: Mapping[str, nn.Module],
    generator: torch.Generator | None,
    batch_size: int = 1024,
    balanced: bool = False,
) -> dict[str, Any]:
    """Coherence of unimodal conditional generation for every source and target, ``m = m'`` too.

    For every source ``m`` and target ``m'`` (``M^2`` pairs), one sample per test point,
    ``model.generate({m: x_m}, [m], n=1, generator)[m'][0]`` (decoded ``z ~ q(z|x_m)``), is
    classified by ``classifiers[m']`` and scored against ``y`` by plain accuracy. One
    ``generate`` call per source and batch serves all targets. The model and classifiers run
    in eval mode (previous modes restored) without gradients; batches are moved to the
    model's device when it is an ``nn.Module``.

    Args:
        model: has ``modalities`` and ``generate(x, subset, n, generator)`` returning
            ``{m: (n, B, ...)}`` (a :class:`~repro.models.base.MultimodalVAE`).
        x: ``{m: (N, ...)}`` test observations of every modality.
        y: ``(N,)`` integer labels (the odour).
        classifiers: ``{m: classifier}`` mapping observations to logits (e.g. from
            :func:`train_mlp_classifiers`).
        generator: source of the sampling noise, consumed batch by batch, source by source.
        batch_size: test points per ``generate`` call.
        balanced: macro-averaged instead of plain accuracy (plain in the reference).

    Returns:
        ``{"pairs": {"<m>-><m'>": accuracy}, "mean": mean over all M^2 pairs,
        "cross_mean": mean over the pairs with m != m'}``.

    Raises:
        ValueError: for fewer than two modalities, missing modalities or classifiers,
            mismatched sizes or ``batch_size < 1``.

    References:
        Sutter et al., NeurIPS 2024, arXiv:2403.05300 (rat coherence, 25 pairs); code
        ``thomassutter/mmvmvae`` (``val/coherence/acc``).
    """
    modalities = list(model.modalities)
    if len(modalities) < 2:
        raise ValueError(f"cross coherence needs at least 2 modalities, got {modalities}")
    missing_clf = sorted(set(modalities) - set(classifiers))
    missing_x = sorted(set(modalities) - set(x))
    if missing_clf or missing_x:
        raise ValueError(
            f"classifiers lack modalities {missing_clf} and x lacks {missing_x}; the model has "
            f"{modalities}"
        )
    n = _check_labelled({m: x[m] for m in modalities}, y, "x")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = _model_device(model)
    preds: dict[tuple[str, str], list[Tensor]] = {
        (m, m2): [] for m in modalities for m2 in modalities
    }
    with evaluating(model, *classifiers.values()):
        for start in range(0, n, batch_size):
            for m in modalities:
                source = x[m][start : start + batch_size]
                if device is not None:
                    source = source.to(device)
                out = model.generate({m: source}, [m], n=1, generator=generator)
                for m2 in modalities:
                    preds[(m, m2)].append(predict(classifiers[m2], out[m2][0], batch_size))
    target = y.detach().cpu().long()
    pairs = {
        f"{m}->{m2}": coherence(torch.cat(chunks), target, balanced=balanced)
        for (m, m2), chunks in preds.items()
    }
    cross = [v for (m, m2), v in zip(preds, pairs.values(), strict=True) if m != m2]
    return {
        "pairs": pairs,
        "mean": sum(pairs.values()) / len(pairs),
        "cross_mean": sum(cross) / len(cross),
    }
