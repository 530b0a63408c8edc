"""FID and the FD proxy: closed forms, the weights policy, no network, stand-in Inception."""

import hashlib
import urllib.request

import numpy as np
import pytest
import torch

import repro.metrics.fid as fid
from repro.metrics.classifiers import DigitClassifier
from repro.metrics.fid import (
    FID_SHA256_PREFIX,
    FID_WEIGHTS_NAME,
    InceptionFeatures,
    fd_metric,
    find_inception_weights,
    frechet_distance,
)


def _no_network(*args, **kwargs):
    raise AssertionError("network access attempted in an FID test")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, no real weights: an empty TORCH_HOME and no $REPRO_FID_WEIGHTS."""
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    monkeypatch.setattr(torch.hub, "urlopen", _no_network)  # torch.hub imported it by name
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("TORCH_HUB", raising=False)
    monkeypatch.delenv(fid.FID_WEIGHTS_ENV, raising=False)
    fid._VERIFIED.clear()


def _closed_form_diagonal(mu1, var1, mu2, var2):
    """||mu1 - mu2||^2 + sum(v1 + v2 - 2 sqrt(v1 v2)) for diagonal covariances."""
    return float(((mu1 - mu2) ** 2).sum() + (var1 + var2 - 2 * np.sqrt(var1 * var2)).sum())


def test_constants_match_pytorch_fid():
    from repro.compat import import_torchvision

    import_torchvision()
    from pytorch_fid.inception import FID_WEIGHTS_URL

    assert fid.FID_WEIGHTS_URL == FID_WEIGHTS_URL
    assert FID_WEIGHTS_URL.endswith(FID_WEIGHTS_NAME) and FID_SHA256_PREFIX in FID_WEIGHTS_NAME


def test_frechet_distance_of_identical_sets_is_zero():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(500, 6))
    mu, sigma = f.mean(0), np.cov(f, rowvar=False)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_the_gaussian_closed_form():
    mu1, var1 = np.zeros(4), np.ones(4)
    mu2, var2 = np.array([1.0, -2.0, 0.5, 0.0]), np.array([4.0, 0.25, 1.0, 9.0])
    exact = _closed_form_diagonal(mu1, var1, mu2, var2)  # 5.25 + 1 + 0.25 + 0 + 4
    assert exact == pytest.approx(10.5)
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(exact)
    # from samples: N(0, I) against a shifted, rescaled set, through FDMetric's statistics
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 4, generator=g, dtype=torch.float64)
    b = torch.randn(20000, 4, generator=g, dtype=torch.float64) * torch.tensor(var2).sqrt()
    b = b + torch.tensor(mu2)
    metric = fid.FDMetric("test", "test", lambda x: x)
    assert metric.distance(a, b) == pytest.approx(exact, rel=0.03)
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(mu1, np.eye(4), mu2[:3], np.eye(3))
    with pytest.raises(ValueError, match="at least 2 feature vectors"):
        metric.statistics(a[:1])


def test_a_wrong_weights_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / FID_WEIGHTS_NAME
    bad.write_bytes(np.random.default_rng(0).bytes(1000))
    monkeypatch.setenv(fid.FID_WEIGHTS_ENV, str(bad))
    with pytest.raises(ValueError) as err:
        find_inception_weights()
    message = str(err.value)
    assert str(bad) in message and FID_SHA256_PREFIX in message and fid.FID_WEIGHTS_URL in message
    with pytest.raises(ValueError, match="sha256"):
        fd_metric(classifiers=DigitClassifier())  # never a silent fallback to the proxy
    monkeypatch.setenv(fid.FID_WEIGHTS_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match="names no file"):
        find_inception_weights()
    # the same check guards the hub cache
    monkeypatch.delenv(fid.FID_WEIGHTS_ENV)
    fid.hub_weights_path().parent.mkdir(parents=True)
    fid.hub_weights_path().write_bytes(b"stale")
    with pytest.raises(ValueError, match="does not start with"):
        find_inception_weights()


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # 64 points, 128 features
def test_absent_weights_give_the_labelled_proxy():
    assert find_inception_weights() is None
    clfs = {"m0": DigitClassifier().float(), "m1": DigitClassifier().float()}
    metric = fd_metric(clfs, "m0", dataset="PolyMNIST")
    assert metric.label == "FD-proxy (PolyMNIST m0 classifier features)"
    assert metric.key == "fd_proxy_classifier" and not metric.is_inception
    x = torch.rand(64, 3, 28, 28)
    assert metric.features(x).shape == (64, 128)
    assert metric.distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert metric.distance(metric.statistics(x), x.flip(-1) * 0.5) > 0.0
    assert clfs["m0"].training  # evaluated in eval mode, previous mode restored
    with pytest.raises(ValueError, match="does not pick one"):
        fd_metric(clfs)
    with pytest.raises(ValueError, match="no classifier was given"):
        fd_metric()


def test_requiring_inception_without_weights_raises():
    with pytest.raises(FileNotFoundError, match="place it at .*checkpoints"):
        fd_metric(require_inception=True)


def test_stand_in_weights_load_without_network(monkeypatch):
    from repro.compat import import_torchvision

    tv = import_torchvision()
    # the FID blocks subclass torchvision's and keep their parameters: same state-dict layout
    net = tv.models.inception_v3(
        num_classes=1008, aux_logits=False, weights=None, init_weights=False
    )
    path = fid.hub_weights_path()
    path.parent.mkdir(parents=True)
    torch.save({k: v.float() for k, v in net.state_dict().items()}, path)
    with pytest.raises(ValueError, match="does not start with"):
        find_inception_weights()  # a stand-in is not the real file
    monkeypatch.setattr(fid, "FID_SHA256_PREFIX", hashlib.sha256(path.read_bytes()).hexdigest()[:8])
    assert find_inception_weights() == path
    metric = fd_metric()
    assert metric.label == "FID (Inception pool3)" and metric.key == "fid" and metric.is_inception
    grey = torch.rand(2, 1, 12, 12)
    features = metric.features(grey)
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    assert isinstance(metric.extractor.__self__, InceptionFeatures)
    assert torch.allclose(metric.features(grey.expand(-1, 3, -1, -1)), features)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        metric.features(grey * 255)
