"""Digit classifiers for coherence and the FD proxy: architecture, cached training, weights.

The PolyMNIST architecture, training with a content-hashed cache, Sutter et al.'s pretrained
weights, and balanced accuracy.

Every conditional-coherence number depends on these classifiers, so they are trained
deterministically from a seeded generator and cached under
``cache_dir()/classifiers/<hash>.pt``; the hash covers the training data (or a caller-given
``data_key``), the hyper-parameters, the generator's state and the source code of the network and
of the training loop, so any change retrains.
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.io import atomic_torch_save
from repro.paths import cache_dir

__all__ = [
    "fit_classifiers",
    "DigitClassifier",
    "PRETRAINED_NAME",
    "accuracy",
    "evaluating",
    "load_pretrained",
    "predict",
    "train_classifiers",
]

PRETRAINED_NAME = "pretrained_img_to_digit_clf_{modality}"  # Sutter et al.'s clf/ file names
_CACHE_FORMAT = 1  # bump when the cached file's layout changes


class DigitClassifier(nn.Module):
    """The PolyMNIST digit classifier of Sutter et al. (used by MoPoE, MMVAE+ and MultiVae).

    ``Conv(C->10, k4 s2 p1) - Dropout2d - ReLU - Conv(10->20, k4 s2 p1) - Dropout2d - ReLU -
    Flatten - Linear(20*s*s -> 128) - Dropout - ReLU - Linear(128 -> 10)`` with
    ``s = image_size // 4`` (each convolution maps a side ``n`` to ``n // 2``); for 3x28x28
    PolyMNIST images ``20 * 7 * 7 = 980``. The layers sit in one ``nn.Sequential`` called
    ``encoder`` with the reference's indices (``encoder.0``, ``.3``, ``.7``, ``.10`` hold the
    weights), so the published ``clf/`` state dicts load unchanged (:func:`load_pretrained`).

    Args:
        in_channels: image channels ``C`` (3 for PolyMNIST).
        image_size: side of the square input images (28 for PolyMNIST).
        n_classes: number of classes.
        hidden: width of the penultimate layer (the :meth:`features` dimension).
        dropout: dropout probability of the three dropout layers (0.5 in the reference).

    Raises:
        ValueError: when ``image_size < 4`` (nothing left after two stride-2 convolutions) or a
            size argument is not positive.

    References:
        Sutter, Daunhawer, Vogt, "Generalized Multimodal ELBO", ICLR 2021, arXiv:2105.02470;
        code ``thomassutter/MoPoE: mmnist/networks/ConvNetworkImgClfCMNIST.py`` (``ClfImg``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 28,
        n_classes: int = 10,
        hidden: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if min(in_channels, n_classes, hidden) < 1:
            raise ValueError(
                f"in_channels, n_classes and hidden must be positive, got {in_channels}, "
                f"{n_classes}, {hidden}"
            )
        side = image_size // 2 // 2
        if side < 1:
            raise ValueError(
                f"image_size={image_size} leaves nothing after two stride-2 convolutions; "
                "it must be at least 4"
            )
        self.in_channels = in_channels
        self.image_size = image_size
        self.n_classes = n_classes
        self.hidden = hidden
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, 10, kernel_size=4, stride=2, padding=1),  # (B, 10, n/2, n/2)
            nn.Dropout2d(dropout),
            nn.ReLU(),
            nn.Conv2d(10, 20, kernel_size=4, stride=2, padding=1),  # (B, 20, s, s)
            nn.Dropout2d(dropout),
            nn.ReLU(),
            nn.Flatten(),  # (B, 20 s^2); 980 for 28x28
            nn.Linear(20 * side * side, hidden),
            nn.Dropout(dropout),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def _check(self, x: Tensor) -> Tensor:
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"DigitClassifier expects images (N, {', '.join(map(str, expected))}), got "
                f"{tuple(x.shape)}"
            )
        return x.to(self.encoder[0].weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits.

        Args:
            x: ``(N, C, H, W)`` images.

        Returns:
            ``(N, n_classes)`` logits.
        """
        return self.encoder(self._check(x))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (after the last ReLU), the feature space of the FD proxy.

        Call in eval mode (see :func:`evaluating`), otherwise dropout is applied.

        Args:
            x: ``(N, C, H, W)`` images.

        Returns:
            ``(N, hidden)`` features.
        """
        return self.encoder[:-1](self._check(x))


@contextmanager
def evaluating(*modules: Any) -> Iterator[None]:
    """Put modules in eval mode for the block, then restore each one's previous mode.

    Args:
        *modules: ``nn.Module`` objects; anything else (e.g. a test double) is ignored.

    Yields:
        Nothing.
    """
    found = [m for m in modules if isinstance(m, nn.Module)]
    previous = [[(sub, sub.training) for sub in m.modules()] for m in found]
    for m in found:
        m.eval()
    try:
        yield
    finally:
        for saved in previous:
            for sub, mode in saved:
                sub.training = mode


def _device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def predict(classifier: nn.Module, images: Tensor, batch_size: int = 1024) -> Tensor:
    """Predicted classes, in eval mode and batches, on the classifier's device.

    Args:
        classifier: maps ``(B, ...)`` images to ``(B, n_classes)`` logits.
        images: ``(N, ...)`` images.
        batch_size: images per forward pass.

    Returns:
        ``(N,)`` int64 classes, on the CPU.
    """
    device = _device(classifier)
    with evaluating(classifier):
        out = [
            classifier(images[i : i + batch_size].to(device)).argmax(-1).cpu()
            for i in range(0, len(images), batch_size)
        ]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


def accuracy(
    classifiers: Mapping[str, nn.Module],
    x: Mapping[str, Tensor],
    y: Tensor,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Balanced (macro-averaged) accuracy of each modality's classifier.

    Args:
        classifiers: ``{m: classifier}``.
        x: ``{m: (N, ...)}`` images; every classifier's modality must be present.
        y: ``(N,)`` true classes.
        batch_size: images per forward pass.

    Returns:
        ``{m: balanced accuracy}`` for every modality of ``classifiers``.

    Raises:
        ValueError: when ``x`` lacks a classifier's modality.
    """
    from repro.metrics.coherence import coherence  # here: coherence.py imports this module

    missing = sorted(set(classifiers) - set(x))
    if missing:
        raise ValueError(f"x lacks modalities {missing} that classifiers are given for")
    target = y.detach().cpu().long()
    return {
        m: coherence(predict(clf, x[m], batch_size), target, balanced=True)
        for m, clf in classifiers.items()
    }


def _update_tensor(h: Any, name: str, t: Tensor) -> None:
    if hasattr(t, "fingerprint"):  # a view over compact storage (repro.data.storage.RowView)
        h.update(f"{name}:view:{t.fingerprint()}".encode())
        return
    t = t.detach().cpu().contiguous()
    h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def _cache_key(
    train_x: Mapping[str, Tensor],
    train_y: Tensor,
    data_key: str | None,
    hyper: Mapping[str, Any],
    generator_state: Tensor,
    code: Sequence[Any] = (),
) -> str:
    h = hashlib.sha256()
    h.update(f"format={_CACHE_FORMAT}".encode())
    for obj in (*code, _TRAINING_LOOP):  # the classifier's and the training loop's source
        h.update(inspect.getsource(obj).encode())
    h.update(repr(sorted(hyper.items())).encode())
    _update_tensor(h, "generator", generator_state)
    if data_key is not None:
        h.update(f"data_key={data_key}".encode())
        h.update(repr({m: tuple(v.shape) for m, v in sorted(train_x.items())}).encode())
    else:
        for m in sorted(train_x):
            _update_tensor(h, m, train_x[m])
        _update_tensor(h, "labels", train_y)
    return h.hexdigest()[:20]


def _fit_one(
    build: Callable[[], nn.Module],
    x: Tensor,
    y: Tensor,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
) -> nn.Module:
    """Train one classifier with Adam and cross-entropy, all randomness drawn from ``seed``."""
    device = x.device
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)  # initialisation and dropout
        clf = build().float().to(device)
        shuffle = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(clf.parameters(), lr=lr)
        clf.train()
        with torch.enable_grad():
            for _ in range(epochs):
                order = torch.randperm(len(x), generator=shuffle).to(device)
                for i in range(0, len(x), batch_size):
                    index = order[i : i + batch_size]
                    loss = F.cross_entropy(clf(x[index]), y[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
    return clf.eval()


_TRAINING_LOOP = _fit_one  # its source enters the cache key


def _load_cached(
    path: Path, builders: Mapping[str, Callable[[], nn.Module]], devices: Mapping, key: str
) -> dict[str, nn.Module] | None:
    """The cached classifiers, or ``None`` (with a warning) when the file is unusable."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("key") != key or sorted(saved["state_dicts"]) != sorted(builders):
            raise ValueError("cache key or modalities do not match")
        out = {}
        for m, build in builders.items():
            clf = build().float()
            clf.load_state_dict(saved["state_dicts"][m])
            out[m] = clf.to(devices[m]).eval()
        return out
    except Exception as err:  # any unusable file is retrained, never trusted
        warnings.warn(
            f"classifier cache {path} is unreadable or does not match ({err!r}); retraining",
            RuntimeWarning,
            stacklevel=4,
        )
        return None


def fit_classifiers(
    x: Mapping[str, Tensor],
    y: Tensor,
    builders: Mapping[str, Callable[[], nn.Module]],
    hyper: Mapping[str, Any],
    generator: torch.Generator | None = None,
    cache: bool = True,
    data_key: str | None = None,
    code: Sequence[Any] = (),
    prefix: str = "",
) -> dict[str, nn.Module]:
    """Train one classifier per modality (Adam, cross-entropy), reproducibly and with a cache.

    The per-modality seeds are drawn from ``generator`` (a fixed seed 0 when ``None``);
    initialisation and dropout run inside a forked global RNG, which is left untouched.
    Results are cached under ``cache_dir()/classifiers/<prefix><hash>.pt``, the hash covering
    the data (or ``data_key``), ``hyper``, the generator's state and the source of ``code``
    and of the training loop; an unusable cache file is retrained with a warning.

    Args:
        x: ``{m: (N, ...)}`` training inputs (validated by the caller).
        y: ``(N,)`` long classes.
        builders: ``{m: () -> fresh classifier}``.
        hyper: ``epochs``, ``batch_size``, ``lr`` and anything else that defines the result.
        generator: source of the seeds (advanced by one draw).
        cache: read and write the cache file.
        data_key: a name standing for the data in the cache key (skips hashing the tensors).
        code: classes or functions whose source enters the cache key.
        prefix: file-name prefix of the cache.

    Returns:
        ``{m: classifier}`` in eval mode, on the data's device.
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    modalities = sorted(x)
    seeds = torch.randint(0, 2**62, (len(modalities),), generator=generator).tolist()
    key = _cache_key(x, y, data_key, hyper, state, code)
    path = cache_dir() / "classifiers" / f"{prefix}{key}.pt"
    ordered = {m: builders[m] for m in modalities}
    if cache and path.exists():
        cached = _load_cached(path, ordered, {m: x[m].device for m in modalities}, key)
        if cached is not None:
            return cached
    epochs, batch_size, lr = hyper["epochs"], hyper["batch_size"], hyper["lr"]
    out = {
        m: _fit_one(builders[m], x[m], y.to(x[m].device), seed, epochs, batch_size, lr)
        for m, seed in zip(modalities, seeds, strict=True)
    }
    if cache:
        state_dicts = {m: {k: v.cpu() for k, v in c.state_dict().items()} for m, c in out.items()}
        atomic_torch_save(
            {"key": key, "hyper": dict(hyper), "state_dicts": state_dicts}, path,
            what="digit classifiers (cache)",
        )  # fmt: skip
    return out


def train_classifiers(
    train_x: Mapping[str, Tensor],
    train_y: Tensor,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
    cache: bool = True,
    data_key: str | None = None,
) -> dict[str, DigitClassifier]:
    """Train one :class:`DigitClassifier` per modality (Adam, cross-entropy), with a cache.

    The per-modality seeds are drawn from ``generator`` (a fixed seed 0 when ``None``), so the
    result is reproducible; initialisation and dropout run inside a forked global RNG, which is
    left untouched. Classifiers are float32 and trained on the data's device.

    Args:
        train_x: ``{m: (N, C, H, W)}`` training images, square.
        train_y: ``(N,)`` integer classes ``0..K-1``.
        epochs: passes over the data.
        batch_size: minibatch size.
        lr: Adam learning rate.
        generator: source of the seeds (its state enters the cache key; it is advanced by one
            draw).
        cache: read and write ``cache_dir()/classifiers/<hash>.pt``.
        data_key: a name standing for the data in the cache key (e.g. ``"polymnist-train-v1"``),
            to skip hashing large tensors; then the caller guarantees that the key changes
            with the data. ``None``: hash the tensors' contents.

    Returns:
        ``{m: classifier}`` in eval mode, on the data's device.

    Raises:
        ValueError: for mismatched sizes, non-square images or non-positive settings.
    """
    if not train_x:
        raise ValueError("train_x is empty; pass {modality: images}")
    n = len(train_y)
    bad = {m: tuple(v.shape) for m, v in train_x.items() if v.dim() != 4 or len(v) != n}
    bad |= {
        m: tuple(v.shape) for m, v in train_x.items() if v.dim() == 4 and v.shape[2] != v.shape[3]
    }
    if bad or train_y.dim() != 1 or n == 0:
        raise ValueError(
            f"train_x must hold square (N, C, H, W) images with N = len(train_y) = {n} > 0 and "
            f"train_y must be 1-D; offending shapes {bad}, train_y {tuple(train_y.shape)}"
        )
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(
            f"epochs, batch_size and lr must be positive, got {epochs}, {batch_size}, {lr}"
        )
    y = train_y.long()
    n_classes = max(int(y.max()) + 1, 2)
    if int(y.min()) < 0:
        raise ValueError(f"train_y must hold classes 0..K-1, got a minimum of {int(y.min())}")
    hyper = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "n_classes": n_classes}
    builders = {
        m: (lambda v=v: DigitClassifier(v.shape[1], v.shape[-1], n_classes))
        for m, v in train_x.items()
    }
    return fit_classifiers(
        train_x, y, builders, hyper, generator, cache, data_key, code=(DigitClassifier,)
    )


def load_pretrained(
    clf_dir: str | Path, modalities: Sequence[str]
) -> dict[str, DigitClassifier] | None:
    """Sutter et al.'s pretrained PolyMNIST classifiers, when their files are present.

    The PolyMNIST archive (Zenodo record 4899160, ``PolyMNIST.zip``) ships a ``clf/`` folder with
    one state dict per modality, ``pretrained_img_to_digit_clf_m0`` ... ``_m4``, saved from
    ``ClfImg`` (an ``nn.Sequential`` called ``encoder``; keys ``encoder.{0,3,7,10}.{weight,
    bias}``), which :class:`DigitClassifier` reproduces, so they load without renaming.

    Args:
        clf_dir: the ``clf/`` folder.
        modalities: modality names; ``m`` is read from ``pretrained_img_to_digit_clf_<m>``.

    Returns:
        ``{m: classifier}`` in eval mode on the CPU, or ``None`` when the folder holds none of
        the files.

    Raises:
        FileNotFoundError: when only some of the files are present.
        ValueError: when a file is not a state dict of this architecture (the message names
            the file and the expected and found keys and shapes).
    """
    clf_dir = Path(clf_dir)
    files = {m: clf_dir / PRETRAINED_NAME.format(modality=m) for m in modalities}
    present = {m: f for m, f in files.items() if f.is_file()}
    if not present:
        return None
    missing = sorted(str(f) for m, f in files.items() if m not in present)
    if missing:
        raise FileNotFoundError(
            f"incomplete pretrained classifiers in {clf_dir}: missing {missing} (expected one "
            "file per modality from the PolyMNIST archive's clf/ folder)"
        )
    out = {}
    for m, f in files.items():
        clf = DigitClassifier(3, 28, 10).float()
        expected = {k: tuple(v.shape) for k, v in clf.state_dict().items()}
        try:
            state = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"{f} is not a readable torch state dict: {err}") from err
        found = (
            {k: tuple(v.shape) for k, v in state.items() if isinstance(v, Tensor)}
            if isinstance(state, Mapping)
            else type(state).__name__
        )
        if found != expected:
            raise ValueError(
                f"{f} does not match the PolyMNIST classifier layout: expected {expected}, "
                f"found {found}"
            )
        clf.load_state_dict(state)
        out[m] = clf.eval()
    return out
