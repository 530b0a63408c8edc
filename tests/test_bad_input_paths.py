"""REPRO_DATA pointing at nothing usable (issue 14): a warning, once per value, then stand-ins."""

import warnings

import pytest

from repro import paths


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(paths, "_WARNED", set(), raising=False)


def _warnings(monkeypatch, value):
    monkeypatch.setenv("REPRO_DATA", str(value))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        root = paths.data_root()
        again = paths.data_root()
    assert root == again
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_missing_folder_warns_once(tmp_path, monkeypatch):
    messages = _warnings(monkeypatch, tmp_path / "nowhere")
    assert len(messages) == 1  # once per distinct value per process
    (msg,) = messages
    assert "REPRO_DATA" in msg and str(tmp_path / "nowhere") in msg
    assert "does not exist" in msg and "stand-in" in msg


def test_a_file_warns_and_says_it_is_not_a_folder(tmp_path, monkeypatch):
    target = tmp_path / "data.tar"
    target.write_bytes(b"x")
    (msg,) = _warnings(monkeypatch, target)
    assert "not a folder" in msg and str(target) in msg and "stand-in" in msg


def test_empty_folder_names_the_expected_dataset_folders(tmp_path, monkeypatch):
    (tmp_path / "unrelated").mkdir()
    (msg,) = _warnings(monkeypatch, tmp_path)
    for name in ("PolyMNIST", "TranslatedPolyMNIST", "MNIST", "SVHN", "rats"):
        assert name in msg
    assert "none of" in msg


def test_no_warning_for_a_usable_folder_or_when_unset(tmp_path, monkeypatch):
    (tmp_path / "rats").mkdir()
    assert _warnings(monkeypatch, tmp_path) == []
    monkeypatch.delenv("REPRO_DATA")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert paths.data_root() == paths.repo_root() / "data"  # absent data/: no warning


def test_a_new_value_warns_again(tmp_path, monkeypatch):
    assert len(_warnings(monkeypatch, tmp_path / "a")) == 1
    assert len(_warnings(monkeypatch, tmp_path / "b")) == 1
    assert _warnings(monkeypatch, tmp_path / "a") == []
