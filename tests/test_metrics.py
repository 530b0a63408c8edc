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


# -- classifiers and the coherence protocol --------------------------------------------------

import warnings  # noqa: E402

from sklearn.datasets import load_digits  # noqa: E402
from torch import nn  # noqa: E402

import repro.metrics.classifiers as classifiers_module  # noqa: E402
from repro.metrics.classifiers import (  # noqa: E402
    DigitClassifier,
    accuracy,
    load_pretrained,
    predict,
    train_classifiers,
)
from repro.metrics.coherence import (  # noqa: E402
    CoherenceResult,
    conditional_coherence,
    joint_coherence,
)

# Three "modalities" of the same 8x8 digit: as is, transposed, flipped left-right. Each map is
# its own inverse, so any modality converts exactly into any other.
VIEWS = {
    "a": lambda img: img,
    "b": lambda img: img.transpose(-1, -2),
    "c": lambda img: img.flip(-1),
}


def _views(base):
    return {m: f(base) for m, f in VIEWS.items()}


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16  # (1797, 1, 8, 8) in [0, 1]
    y = torch.tensor(d.target)
    train, test = slice(0, 1100), slice(1100, None)
    clfs = train_classifiers(
        _views(x[train]), y[train], epochs=5, batch_size=64, lr=1e-2, cache=False
    )
    return {"x": _views(x[test]), "base": x[test], "y": y[test], "clfs": clfs}


class OracleModel:
    """Conditional generation that returns the true test image of every target modality."""

    modalities = ["a", "b", "c"]

    def __init__(self, fixed=None):
        self.fixed = fixed  # (1, 8, 8) image returned for every sample instead
        self.calls = []

    def generate(self, x, subset, n, generator):
        self.calls.append((tuple(subset), len(next(iter(x.values())))))
        first = subset[0]
        base = VIEWS[first](x[first])  # back to the untransformed digit
        if self.fixed is not None:
            base = self.fixed.expand_as(base)
        return {m: VIEWS[m](base).expand(n, *base.shape) for m in self.modalities}

    def sample_prior(self, n, generator):
        base, self.bank = self.bank[:n], self.bank[n:]  # consecutive draws from a bank
        return {m: VIEWS[m](base) if self.views else base for m in self.modalities}


def test_digit_classifier_layout_and_shapes():
    clf = DigitClassifier()  # PolyMNIST: 3x28x28 -> 20*7*7 = 980
    assert clf.encoder[7].in_features == 980
    x = torch.rand(5, 3, 28, 28)
    assert clf(x).shape == (5, 10) and clf.features(x).shape == (5, 128)
    assert DigitClassifier(1, 8).encoder[7].in_features == 20 * 2 * 2
    with pytest.raises(ValueError, match="at least 4"):
        DigitClassifier(1, 3)
    with pytest.raises(ValueError, match=r"expects images \(N, 3, 28, 28\)"):
        clf(torch.rand(5, 1, 28, 28))


def test_trained_classifiers_are_accurate_in_eval_mode(digits):
    acc = accuracy(digits["clfs"], digits["x"], digits["y"])
    assert set(acc) == {"a", "b", "c"}
    assert all(v > 0.75 for v in acc.values()), acc
    assert not any(c.training for c in digits["clfs"].values())
    with pytest.raises(ValueError, match=r"x lacks modalities \['c'\]"):
        accuracy(digits["clfs"], {"a": digits["x"]["a"], "b": digits["x"]["b"]}, digits["y"])


def test_oracle_coherence_equals_the_classifiers_balanced_accuracy(digits):
    model = OracleModel()
    acc = accuracy(digits["clfs"], digits["x"], digits["y"])
    result = conditional_coherence(
        model, digits["x"], digits["y"], digits["clfs"], generator=None, batch_size=200
    )
    assert isinstance(result, CoherenceResult)
    # M = 3: 3 singletons x 2 targets, 3 pairs x 1 target
    assert len(result.per_subset) == 9 and set(result.by_size) == {1, 2}
    for (subset, target), value in result.per_subset.items():
        assert target not in subset
        assert value == pytest.approx(acc[target], abs=1e-12)
    mean = sum(acc.values()) / 3
    assert result.by_size[1] == pytest.approx(mean) and result.by_size[2] == pytest.approx(mean)
    # one generate call per subset and batch (697 test points in batches of 200)
    assert len(model.calls) == 6 * 4 and {b for _, b in model.calls} == {200, 97}
    flat = result.as_dict()
    assert flat["coherence_1"] == result.by_size[1] and "a+b->c" in flat


def test_coherence_with_a_fixed_class_generator_is_chance(digits):
    base, y = digits["base"], digits["y"]
    model = OracleModel(fixed=base[y == 3][0])
    result = conditional_coherence(
        model, digits["x"], y, digits["clfs"], generator=None, subset_sizes=[1]
    )
    # every sample gets the same prediction: recall 1 for one class, 0 for the other nine
    assert set(result.by_size) == {1}
    assert all(v == pytest.approx(0.1) for v in result.per_subset.values())


def test_joint_coherence(digits):
    model = OracleModel()
    model.bank, model.views = digits["base"], False
    same = {m: digits["clfs"]["a"] for m in model.modalities}  # agreeing modalities and classifiers
    assert joint_coherence(model, same, n=300, generator=None, batch_size=128) == 1.0
    # modality-specific classifiers on the views: agreement = all three predictions equal
    model.bank, model.views = digits["base"], True
    preds = torch.stack([predict(digits["clfs"][m], digits["x"][m][:300]) for m in "abc"])
    expected = float((preds == preds[0]).all(0).double().mean())
    got = joint_coherence(model, digits["clfs"], n=300, generator=None, batch_size=128)
    assert got == pytest.approx(expected) and got < 1.0


def test_coherence_validation(digits):
    model, x, y, clfs = OracleModel(), digits["x"], digits["y"], digits["clfs"]
    with pytest.raises(ValueError, match=r"subset_sizes must lie in 1\.\.2"):
        conditional_coherence(model, x, y, clfs, None, subset_sizes=[3])
    with pytest.raises(ValueError, match=r"classifiers lack modalities \['c'\]"):
        conditional_coherence(model, x, y, {"a": clfs["a"], "b": clfs["b"]}, None)
    with pytest.raises(ValueError, match="len\\(labels\\)"):
        conditional_coherence(model, x, y[:-1], clfs, None)
    with pytest.raises(ValueError, match="n and batch_size must be positive"):
        joint_coherence(model, clfs, 0, None)


def test_coherence_of_a_real_model_is_seeded_and_restores_modes(digits):
    from repro.models.decoders import MLPDecoder
    from repro.models.encoders import MLPEncoder
    from repro.models.mopoe import MoPoE

    with torch.random.fork_rng():
        torch.manual_seed(0)
        enc = {m: MLPEncoder((1, 8, 8), (16,), 4) for m in "abc"}
        dec = {m: MLPDecoder(4, (16,), (1, 8, 8), kind="bernoulli") for m in "abc"}
        model = MoPoE(enc, dec, 4).train()
    x = {m: v[:60].double() for m, v in digits["x"].items()}
    y = digits["y"][:60]
    runs = [
        conditional_coherence(model, x, y, digits["clfs"], torch.Generator().manual_seed(1), 25)
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    assert all(0.0 <= v <= 1.0 for v in runs[0].per_subset.values())
    assert model.training and all(m.training for m in model.modules())
    assert not any(c.training for c in digits["clfs"].values())
    j = joint_coherence(model, digits["clfs"], 50, torch.Generator().manual_seed(2))
    assert 0.0 <= j <= 1.0


# -- classifier cache and pretrained weights --------------------------------------------------


@pytest.fixture
def tiny():
    g = torch.Generator().manual_seed(0)
    x = {"a": torch.rand(40, 1, 8, 8, generator=g), "b": torch.rand(40, 1, 8, 8, generator=g)}
    return x, torch.arange(40) % 10


def _same(c1, c2):
    return all(
        torch.equal(c1[m].state_dict()[k], c2[m].state_dict()[k])
        for m in c1
        for k in c1[m].state_dict()
    )


def test_train_classifiers_is_deterministic_and_keeps_the_global_rng(tiny):
    x, y = tiny
    before = torch.get_rng_state()
    c1 = train_classifiers(x, y, epochs=1, batch_size=16, cache=False)
    assert torch.equal(torch.get_rng_state(), before)
    c2 = train_classifiers(x, y, epochs=1, batch_size=16, cache=False)
    c3 = train_classifiers(
        x, y, epochs=1, batch_size=16, cache=False, generator=torch.Generator().manual_seed(5)
    )
    assert _same(c1, c2) and not _same(c1, c3)
    assert all(p.dtype == torch.float32 for c in c1.values() for p in c.parameters())
    with pytest.raises(ValueError, match="square"):
        train_classifiers({"a": torch.rand(40, 1, 8, 6)}, y, cache=False)
    with pytest.raises(ValueError, match="must be positive"):
        train_classifiers(x, y, epochs=0, cache=False)


def test_classifier_cache_hits_misses_and_survives_corruption(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    x, y = tiny
    first = train_classifiers(x, y, epochs=1, batch_size=16)
    files = list((tmp_path / "classifiers").glob("*.pt"))
    assert len(files) == 1

    trained = []
    real = classifiers_module._fit_one
    monkeypatch.setattr(classifiers_module, "_fit_one", lambda *a: trained.append(1) or real(*a))
    hit = train_classifiers(x, y, epochs=1, batch_size=16)
    assert trained == [] and _same(first, hit) and not hit["a"].training

    train_classifiers(x, y, epochs=1, batch_size=16, lr=2e-3)  # new hyper-parameter: new entry
    x2 = {**x, "b": x["b"].flip(-1)}
    train_classifiers(x2, y, epochs=1, batch_size=16)  # new data: new entry
    train_classifiers(x, y, epochs=1, batch_size=16, data_key="tiny-v1")  # named data
    assert len(list((tmp_path / "classifiers").glob("*.pt"))) == 4 and len(trained) == 6

    files[0].write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning, match="unreadable or does not match"):
        again = train_classifiers(x, y, epochs=1, batch_size=16)
    assert _same(first, again)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_classifiers(x, y, epochs=1, batch_size=16)  # repaired: a clean hit


def _reference_clf():
    """Sutter et al.'s ClfImg layout, written out independently of DigitClassifier."""
    return nn.Sequential(
        nn.Conv2d(3, 10, kernel_size=4, stride=2, padding=1),
        nn.Dropout2d(0.5),
        nn.ReLU(),
        nn.Conv2d(10, 20, kernel_size=4, stride=2, padding=1),
        nn.Dropout2d(0.5),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(980, 128),
        nn.Dropout(0.5),
        nn.ReLU(),
        nn.Linear(128, 10),
    ).float()


def test_load_pretrained_reads_the_published_layout(tmp_path):
    assert load_pretrained(tmp_path / "clf", ["m0", "m1"]) is None
    refs = {}
    for m in ("m0", "m1"):
        ref = _reference_clf().eval()
        wrapper = nn.Module()
        wrapper.encoder = ref  # keys "encoder.0.weight", ..., as in ClfImg
        torch.save(wrapper.state_dict(), tmp_path / f"pretrained_img_to_digit_clf_{m}")
        refs[m] = ref
    clfs = load_pretrained(tmp_path, ["m0", "m1"])
    x = torch.rand(4, 3, 28, 28, dtype=torch.float32)
    for m, ref in refs.items():
        assert not clfs[m].training
        assert torch.equal(clfs[m](x), ref(x))
    with pytest.raises(FileNotFoundError, match="pretrained_img_to_digit_clf_m2"):
        load_pretrained(tmp_path, ["m0", "m2"])
    torch.save(
        {"conv1.weight": torch.zeros(10, 3, 4, 4)}, tmp_path / "pretrained_img_to_digit_clf_m3"
    )
    with pytest.raises(ValueError, match="does not match the PolyMNIST classifier layout"):
        load_pretrained(tmp_path, ["m3"])
