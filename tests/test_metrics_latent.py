import math

import pytest
import torch
from torch import nn

from repro.metrics.classifiers import predict
from repro.metrics.coherence import coherence
from repro.metrics.latent import (
    MLPClassifier,
    cross_coherence,
    latent_means,
    linear_probe,
    self_reconstruction_error,
    train_mlp_classifiers,
)
from repro.models.decoders import MLPDecoder
from repro.models.encoders import MLPEncoder
from repro.models.mmvm import MMVMVAE

K = 4  # classes (odours)


def _tiny_mmvm(modalities=("a", "b"), in_dim=6, latent_dim=2):
    torch.manual_seed(1)
    enc = {m: MLPEncoder((in_dim,), (8,), latent_dim) for m in modalities}
    dec = {m: MLPDecoder(latent_dim, (8,), (in_dim,), kind="normal") for m in modalities}
    return MMVMVAE(enc, dec, latent_dim)


def _circle_means(n, shifts, noise=0.1, radius=3.0, seed=0):
    """Balanced labels; modality k puts class c at angle 2 pi (c + shift_k) / K."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    z = {}
    for name, shift in shifts.items():
        angle = 2 * math.pi * (y + shift) / K
        centre = radius * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
        z[name] = centre + noise * torch.randn(n, 2, generator=g)
    return z, y


# -- latent_means -----------------------------------------------------------------------------
def test_latent_means_equal_unimodal_posterior_means_and_restore_mode():
    model = _tiny_mmvm()
    model.train()
    x = {m: torch.randn(10, 6) for m in model.modalities}
    means = latent_means(model, x, batch_size=3)
    assert model.training
    assert sorted(means) == ["a", "b"]
    for m in model.modalities:
        assert means[m].shape == (10, 2)
        assert not means[m].requires_grad
        with torch.no_grad():
            expected = model.posterior({m: x[m]}, [m]).mean
        torch.testing.assert_close(means[m], expected)


def test_self_reconstruction_error_is_the_summed_squared_error_of_the_decoded_mean():
    model = _tiny_mmvm()
    model.train()
    x = {m: torch.randn(7, 6) for m in model.modalities}
    err = self_reconstruction_error(model, x, batch_size=3)
    assert model.training  # mode restored
    expected = {}
    with torch.no_grad():
        model.eval()
        for m in model.modalities:
            x_hat = model.decoders[m](model.posterior({m: x[m]}, [m]).mean).mean
            expected[m] = float(((x_hat - x[m]) ** 2).sum(1).mean())
    for m in model.modalities:
        assert err[m] == pytest.approx(expected[m], rel=1e-10)
    assert err["sum"] == pytest.approx(sum(expected.values()), rel=1e-10)
    # a decoder that returns the data exactly has zero error
    x0 = {m: torch.zeros(4, 6) for m in model.modalities}
    for dec in model.decoders.values():
        nn.init.zeros_(dec.net[-1].weight), nn.init.constant_(dec.net[-1].bias, -30.0)
    assert self_reconstruction_error(model, x0)["sum"] < 1e-20


def test_latent_means_rejects_missing_or_mismatched_modalities():
    model = _tiny_mmvm()
    with pytest.raises(ValueError, match="lacks modalities"):
        latent_means(model, {"a": torch.randn(4, 6)})
    with pytest.raises(ValueError, match="same number of rows"):
        latent_means(model, {"a": torch.randn(4, 6), "b": torch.randn(5, 6)})


# -- linear_probe -----------------------------------------------------------------------------
def test_linear_probe_separable_means_give_one():
    train_z, train_y = _circle_means(200, {"a": 0, "b": 0}, seed=0)
    test_z, test_y = _circle_means(200, {"a": 0, "b": 0}, seed=1)
    acc = linear_probe(train_z, train_y, test_z, test_y)
    assert acc == {"a": 1.0, "b": 1.0, "all": 1.0}


def test_linear_probe_shuffled_labels_are_near_chance():
    # Test labels drawn independently of the means: the number of hits on 400 test points is
    # Binomial(400, 1/4) whatever the classifier, SE = sqrt(.25 * .75 / 400) ~ 0.022; 0.1 is
    # about 4.6 SE (the stacked probe has 800 points, SE ~ 0.015).
    g = torch.Generator().manual_seed(3)
    train_z = {m: torch.randn(400, 2, generator=g) for m in "ab"}
    test_z = {m: torch.randn(400, 2, generator=g) for m in "ab"}
    train_y = torch.randint(0, K, (400,), generator=g)
    test_y = torch.randint(0, K, (400,), generator=g)
    acc = linear_probe(train_z, train_y, test_z, test_y)
    for key, value in acc.items():
        assert abs(value - 1 / K) < 0.1, (key, value)


def test_linear_probe_stacked_fails_when_each_modality_rotates_the_classes():
    # Modality k places class c where modality 0 places class (c + k) mod 4: each cluster
    # location carries all four classes equally once stacked, so the Bayes-optimal accuracy of
    # the stacked probe is 1/4, while every modality alone is perfectly separable: aligned vs
    # unaligned latent spaces (Fig. 4). Only the points a decision boundary cuts off from
    # their cluster deviate from exactly 1/4 (800 test points, SE <= 0.015): tolerance 0.05.
    shifts = {f"rat{k}": k for k in range(K)}
    train_z, train_y = _circle_means(200, shifts, seed=0)
    test_z, test_y = _circle_means(200, shifts, seed=1)
    acc = linear_probe(train_z, train_y, test_z, test_y)
    assert all(acc[m] == 1.0 for m in shifts)
    assert abs(acc["all"] - 1 / K) < 0.05


def test_linear_probe_subsamples_deterministically():
    train_z, train_y = _circle_means(300, {"a": 0, "b": 1}, noise=2.0, seed=0)
    test_z, test_y = _circle_means(200, {"a": 0, "b": 1}, noise=2.0, seed=1)
    first = linear_probe(train_z, train_y, test_z, test_y, max_train=50, seed=7)
    assert first == linear_probe(train_z, train_y, test_z, test_y, max_train=50, seed=7)
    assert first != linear_probe(train_z, train_y, test_z, test_y)  # full set differs


def test_linear_probe_validates_inputs():
    z, y = _circle_means(20, {"a": 0, "b": 0})
    with pytest.raises(ValueError, match="same modalities"):
        linear_probe(z, y, {"a": z["a"]}, y)
    with pytest.raises(ValueError, match="offending shapes"):
        linear_probe(z, y[:-1], z, y)
    with pytest.raises(ValueError, match="single class"):
        linear_probe(z, torch.zeros(20, dtype=torch.long), z, y)
    with pytest.raises(ValueError, match="one shared D"):
        linear_probe(z, y, {"a": z["a"], "b": torch.randn(20, 3)}, y)


# -- MLP classifiers --------------------------------------------------------------------------
def _blobs(n, seed, dim=5):
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.eye(K, dim)
    y = torch.arange(n) % K
    return {m: centres[y] + 0.5 * torch.randn(n, dim, generator=g) for m in "ab"}, y


def test_mlp_classifier_default_architecture():
    clf = MLPClassifier(46, K)
    widths = [
        (layer.in_features, layer.out_features)
        for layer in clf.net
        if hasattr(layer, "in_features")
    ]
    assert widths == [(46, 1024), (1024, 512), (512, 256), (256, 64), (64, K)]
    assert sum(isinstance(layer, nn.LeakyReLU) for layer in clf.net) == 4
    with pytest.raises(ValueError, match="46 features"):
        clf(torch.randn(3, 45))


def test_train_mlp_classifiers_learns_and_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    x, y = _blobs(400, seed=0)
    test_x, test_y = _blobs(200, seed=1)
    kwargs = {"epochs": 30, "lr": 5e-3, "hidden": (32, 16)}
    clfs = train_mlp_classifiers(
        x, y, generator=torch.Generator().manual_seed(0), cache=False, **kwargs
    )
    for m, clf in clfs.items():
        assert not clf.training
        assert coherence(predict(clf, test_x[m]), test_y) > 0.95
    again = train_mlp_classifiers(x, y, generator=torch.Generator().manual_seed(0), **kwargs)
    assert list((tmp_path / "classifiers").glob("mlp-*.pt"))
    cached = train_mlp_classifiers(x, y, generator=torch.Generator().manual_seed(0), **kwargs)
    for m in clfs:
        for k, v in clfs[m].state_dict().items():
            torch.testing.assert_close(again[m].state_dict()[k], v, rtol=0, atol=0)
            torch.testing.assert_close(cached[m].state_dict()[k], v, rtol=0, atol=0)


def test_train_mlp_classifiers_validates_inputs():
    x, y = _blobs(8, seed=0)
    with pytest.raises(ValueError, match="offending shapes"):
        train_mlp_classifiers(x, y[:-1], cache=False)
    with pytest.raises(ValueError, match="must be positive"):
        train_mlp_classifiers(x, y, epochs=0, cache=False)
    with pytest.raises(ValueError, match="classes 0..K-1"):
        train_mlp_classifiers(x, y - 1, cache=False)


# -- cross_coherence --------------------------------------------------------------------------
class _OracleModel:
    """Fake model: column 0 of every row is its index; 'generation' returns the true target
    rows (or noise), so coherence reduces to the target classifier's accuracy (or chance)."""

    def __init__(self, data, noise=False):
        self.data, self.noise, self.calls = data, noise, []

    @property
    def modalities(self):
        return sorted(self.data)

    def generate(self, x, subset, n=1, generator=None):
        (m,) = subset
        self.calls.append(m)
        rows = x[m][:, 0].round().long()
        if self.noise:
            shape = (n, len(rows), self.data[m].shape[1])
            return {t: torch.randn(shape, generator=generator) for t in self.data}
        return {t: v[rows].expand(n, -1, -1) for t, v in self.data.items()}


def _indexed_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    data, clfs = {}, {}
    for k, m in enumerate("abc"):
        features = torch.nn.functional.one_hot(y, K).double() + 0.6 * torch.randn(n, K, generator=g)
        data[m] = torch.cat([torch.arange(n).double()[:, None], features], 1)
        clf = nn.Linear(K + 1, K)
        with torch.no_grad():
            clf.weight.zero_()
            clf.weight[:, 1:] = torch.eye(K) * (1 + k)
            clf.bias.zero_()
        clfs[m] = clf
    return data, y, clfs


def test_cross_coherence_with_true_targets_equals_classifier_accuracy():
    data, y, clfs = _indexed_data(300, seed=0)
    model = _OracleModel(data)
    result = cross_coherence(model, data, y, clfs, torch.Generator().manual_seed(0), batch_size=64)
    assert sorted(result["pairs"]) == sorted(f"{m}->{t}" for m in "abc" for t in "abc")
    assert len(result["pairs"]) == 9  # M^2, the m = m' pairs included
    acc = {t: coherence(predict(clfs[t], data[t]), y) for t in "abc"}
    assert all(0.5 < a < 1 for a in acc.values())  # imperfect classifiers: a real check
    for m in "abc":
        for t in "abc":
            assert result["pairs"][f"{m}->{t}"] == pytest.approx(acc[t])
    assert result["mean"] == pytest.approx(sum(result["pairs"].values()) / 9)
    cross = [v for key, v in result["pairs"].items() if key[0] != key[-1]]
    assert result["cross_mean"] == pytest.approx(sum(cross) / 6)
    assert model.calls == list("abc") * 5  # one generate per source and batch


def test_cross_coherence_with_noise_is_near_chance():
    # Noise is independent of the balanced labels: each pair's hit count on 600 points is
    # about Binomial(600, 1/4), SE ~ 0.018; 0.08 is about 4.5 SE (mean of 9 pairs: tighter).
    data, y, clfs = _indexed_data(600, seed=0)
    result = cross_coherence(
        _OracleModel(data, noise=True), data, y, clfs, torch.Generator().manual_seed(0)
    )
    for key, value in result["pairs"].items():
        assert abs(value - 1 / K) < 0.08, (key, value)
    assert abs(result["mean"] - 1 / K) < 0.04


def test_cross_coherence_real_model_is_seeded_and_restores_modes():
    model = _tiny_mmvm()
    model.train()
    x = {m: torch.randn(20, 6) for m in model.modalities}
    y = torch.arange(20) % K
    clfs = {m: MLPClassifier(6, K, hidden=(4,)).train() for m in model.modalities}
    first = cross_coherence(model, x, y, clfs, torch.Generator().manual_seed(5), batch_size=7)
    second = cross_coherence(model, x, y, clfs, torch.Generator().manual_seed(5), batch_size=7)
    assert first == second
    assert model.training and all(c.training for c in clfs.values())
    assert all(0 <= v <= 1 for v in first["pairs"].values())


def test_cross_coherence_validates_inputs():
    data, y, clfs = _indexed_data(10, seed=0)
    model = _OracleModel(data)
    with pytest.raises(ValueError, match="classifiers lack modalities"):
        cross_coherence(model, data, y, {"a": clfs["a"]}, None)
    with pytest.raises(ValueError, match="offending shapes"):
        cross_coherence(model, data, y[:-1], clfs, None)
    with pytest.raises(ValueError, match="at least 2 modalities"):
        cross_coherence(_OracleModel({"a": data["a"]}), data, y, clfs, None)
