"""Bad rat recordings (issue 14): each ends in an error naming the file, the fault and the fix."""

import numpy as np
import pytest

from repro.data.neural import load_rats
from tests.test_data_neural import rat_folder  # noqa: F401  the fixture


def _spikes(root, rat="mitt"):
    return root / f"{rat}_spike_data_binned.npy"


def test_truncated_npy_names_file_and_sizes(rat_folder):  # noqa: F811
    root, _ = rat_folder
    path = _spikes(root)
    full = path.read_bytes()
    path.write_bytes(full[:-800])
    with pytest.raises(ValueError) as err:
        load_rats(root)
    message = str(err.value)
    assert "mitt_spike_data_binned.npy" in message and "truncated" in message
    assert f"{len(full):,} bytes" in message and f"{len(full) - 800:,}" in message
    assert "Dryad" in message or "download" in message


def test_cut_header_names_file(rat_folder):  # noqa: F811
    root, _ = rat_folder
    path = root / "stella_trial_info.npy"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(ValueError, match=r"stella_trial_info\.npy.*header"):
        load_rats(root)
    path.write_bytes(b"PK\x03\x04 not an npy")
    with pytest.raises(ValueError, match=r"stella_trial_info\.npy.*not a \.npy"):
        load_rats(root)


@pytest.mark.parametrize(
    "array,needle",
    [
        (np.array([[["a"] * 400]]), "<U1"),
        (np.array([[[{"x": 1}] * 400]], dtype=object), "object"),
    ],
)
def test_string_or_object_dtype_is_refused_naming_file(rat_folder, array, needle):  # noqa: F811
    root, _ = rat_folder
    np.save(_spikes(root, "barat"), array, allow_pickle=True)
    with pytest.raises(ValueError) as err:
        load_rats(root)
    message = str(err.value)
    assert "barat_spike_data_binned.npy" in message and needle in message
    assert "numeric" in message


def test_nan_inf_and_negative_counts_are_counted_with_first_index(rat_folder):  # noqa: F811
    root, _ = rat_folder
    path = _spikes(root, "superchris")
    spikes = np.load(path)
    spikes[1, 0, 7] = np.nan
    spikes[2, 0, 3] = np.nan
    spikes[0, 0, 9] = np.inf
    spikes[0, 0, 11] = -0.1
    np.save(path, spikes)
    with pytest.raises(ValueError) as err:
        load_rats(root)
    message = str(err.value)
    assert "superchris_spike_data_binned.npy" in message
    assert "2 NaN" in message and "1 infinite" in message and "1 negative" in message
    assert "(0, 0, 9)" in message  # the first bad entry in file order


def test_trial_info_with_text_dtype_or_nan_odor(rat_folder):  # noqa: F811
    root, _ = rat_folder
    path = root / "buchanan_trial_info.npy"
    info = np.load(path)
    info[2, 3] = np.nan
    np.save(path, info)
    with pytest.raises(ValueError, match=r"buchanan_trial_info\.npy.*odor column"):
        load_rats(root)
    np.save(path, info.astype(str))
    with pytest.raises(ValueError, match=r"buchanan_trial_info\.npy.*numeric"):
        load_rats(root)
