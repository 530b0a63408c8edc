"""Rat hippocampus recordings of the MMVM VAE (Sutter et al., NeurIPS 2024, arXiv 2403.05300).

Five rats (Shahbaba et al., Nat Commun 13:787, 2022; Dryad doi:10.7280/D14X30) smelled odors
A-E; each rat is one modality, ``barat, buchanan, mitt, stella, superchris`` = ``m0 .. m4``.
The pipeline follows ``yangmeng96/mmvmvae-hippocampal: utils/RatsDataset.py`` (notes
``papers/mmvm.md`` §3):

* files per rat under ``<root>``: ``{rat}_spike_data_binned.npy`` of shape
  ``(trials, neurons, 400)`` (10-ms bins over -2 s .. +2 s, odor onset at bin 200; each value is
  the mean of ten 1-ms spike indicators, i.e. ``count / 10``) and ``{rat}_trial_info.npy`` of
  shape ``(trials, 4)`` with columns ``[correct, in-sequence, position, odor 1-5]``;
* one 25-bin window per rat starting at bins ``[225, 225, 250, 250, 225]``; each window gives
  16 overlapping 100-ms sub-windows (10 bins, stride 1), flattened neuron-major, so that
  ``D_m = 10 N_m`` and entry ``10 n + b`` is neuron ``n`` at bin ``b`` of the sub-window;
* odor E is dropped and the label is ``odor - 1`` in ``{0, 1, 2, 3}``; no other filtering;
* artificial pairing: for odor ``k`` the number of trials is the minimum over the rats, and the
  sample ``(k, j, t)`` takes the ``j``-th odor-``k`` trial (file order) of every rat at
  sub-window offset ``t``.

:func:`simulate_rats` draws the calibrated stand-in of ``papers/mmvm.md`` §4 (odor identity is
the only information shared by the rats) through the same windowing and pairing, and
:func:`rats` picks the real files under ``data_root()/"rats"`` when present, else the simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from repro.paths import data_root, repo_root

__all__ = [
    "RATS",
    "NEURONS",
    "WINDOW_START",
    "RatWindows",
    "expected_files",
    "load_rats",
    "simulate_recordings",
    "simulate_rats",
    "simulator_statistics",
    "trial_split",
    "rats",
]

RATS = ("barat", "buchanan", "mitt", "stella", "superchris")  # modalities m0..m4 (mmvm.md §3)
NEURONS = (92, 79, 104, 49, 46)  # units per rat, mmvm.md §3 statistics table
WINDOW_START = (225, 225, 250, 250, 225)  # window start bins per rat, mmvm.md §3
N_BINS = 400  # 10-ms bins over -2 s .. +2 s
ONSET_BIN = 200  # odor onset
WINDOW = 25  # bins per window
SUB_WINDOW = 10  # bins per 100-ms sub-window
N_OFFSETS = WINDOW - SUB_WINDOW + 1  # 16 sub-windows, stride 1
N_ODORS = 5  # A-E on disk
N_LABELS = 4  # A-D after dropping E
ODOR_COLUMN = 3  # trial_info columns [correct, in-sequence, position, odor 1-5]
DRYAD = "Dryad doi:10.7280/D14X30 (Shahbaba et al., Nat Commun 13:787, 2022)"

#: Per-rat odor-tuning scale tau_m of the simulator (mmvm.md §4, "recommended").
TAU = (1.1, 1.0, 1.2, 0.8, 1.0)


@dataclass(frozen=True)
class RatWindows:
    """Paired 100-ms sub-windows of the five rats.

    Attributes:
        x: ``{rat: (N, 10 N_rat)}`` float32, sub-windows flattened neuron-major (entry
            ``10 n + b`` is neuron ``n`` at bin ``b``); values are spike counts / 10.
        label: ``(N,)`` int64 odor in ``{0, 1, 2, 3}`` (A-D), the only shared information.
        trial: ``(N,)`` int64 index of the paired trial tuple ``(odor, rank)`` of the sample.
        offset: ``(N,)`` int64 sub-window offset ``0 .. 15`` inside the rat's window.
        source: ``"Dryad recordings (<folder>)"`` or ``"simulator: ..."``.
    """

    x: dict[str, Tensor]
    label: Tensor
    trial: Tensor
    offset: Tensor
    source: str

    def __post_init__(self) -> None:
        n = self.label.shape[0]
        bad = {m: tuple(v.shape) for m, v in self.x.items() if v.dim() != 2 or v.shape[0] != n}
        bad |= {
            name: tuple(v.shape)
            for name, v in (("trial", self.trial), ("offset", self.offset))
            if v.shape != (n,)
        }
        if self.label.dim() != 1 or bad:
            raise ValueError(f"every entry needs N = {n} rows like label; got {bad}")

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def subset(self, index: Tensor | slice | list[int]) -> RatWindows:
        """Return the samples at ``index``.

        Args:
            index: a slice, an int64 index tensor/list or a boolean mask of length ``N``.

        Returns:
            A new :class:`RatWindows` with the same ``source``.
        """
        return RatWindows(
            {m: v[index] for m, v in self.x.items()},
            self.label[index],
            self.trial[index],
            self.offset[index],
            self.source,
        )


# ---------------------------------------------------------------------------------------------
# The shared pipeline: windowing, odor-E drop, pairing


def _windows(values: Tensor) -> Tensor:
    """``(T, N, 25)`` window -> ``(T, 16, 10 N)`` sub-windows flattened neuron-major."""
    sub = values.unfold(2, SUB_WINDOW, 1)  # (T, N, 16, 10)
    return sub.permute(0, 2, 1, 3).reshape(values.shape[0], N_OFFSETS, -1)


def _pair(windows: dict[str, Tensor], odor: dict[str, Tensor], source: str) -> RatWindows:
    """Pair the rats' trials by (odor, rank) and expand the 16 sub-windows.

    Args:
        windows: ``{rat: (T_rat, N_rat, 25)}`` the rat's window of every trial.
        odor: ``{rat: (T_rat,)}`` int64 odor in ``1 .. 5`` (file coding).
        source: the ``source`` string of the result.

    Returns:
        The paired samples, ordered by odor, rank, then offset.
    """
    picks: dict[str, list[Tensor]] = {m: [] for m in RATS}
    labels = []
    for k in range(1, N_LABELS + 1):  # odor E (5) is dropped
        rows = {m: torch.nonzero(odor[m] == k).flatten() for m in RATS}
        n_k = min(len(r) for r in rows.values())
        for m in RATS:
            picks[m].append(rows[m][:n_k])
        labels.append(torch.full((n_k,), k - 1, dtype=torch.int64))
    label = torch.cat(labels)
    n_trials = label.shape[0]
    if n_trials == 0:
        raise ValueError(f"{source}: no odor A-D has a trial in every rat; nothing to pair")
    x = {}
    for m in RATS:
        sub = _windows(windows[m][torch.cat(picks[m])])  # (T, 16, 10 N)
        x[m] = sub.reshape(n_trials * N_OFFSETS, -1).to(torch.float32)
    trial = torch.arange(n_trials).repeat_interleave(N_OFFSETS)
    offset = torch.arange(N_OFFSETS).repeat(n_trials)
    return RatWindows(x, label.repeat_interleave(N_OFFSETS), trial, offset, source)


def _window_bins(rat: str) -> slice:
    start = WINDOW_START[RATS.index(rat)]
    return slice(start, start + WINDOW)


# ---------------------------------------------------------------------------------------------
# Real recordings


def _display(path: Path) -> str:
    path = Path(path).absolute()
    try:
        return str(path.relative_to(repo_root()))
    except (ValueError, FileNotFoundError):
        return str(path)


def expected_files(root: str | Path) -> list[Path]:
    """The files :func:`load_rats` reads, two per rat in the order of :data:`RATS`.

    Args:
        root: folder of the recordings.

    Returns:
        ``[root/barat_spike_data_binned.npy, root/barat_trial_info.npy, ...]``.
    """
    root = Path(root)
    return [
        root / f"{rat}_{kind}.npy" for rat in RATS for kind in ("spike_data_binned", "trial_info")
    ]


_REFETCH = f"Fix: download the file again from {DRYAD} and replace it"
_STAGE = "loading the rat recordings"
_KINDS = {
    "U": "text",
    "S": "bytes",
    "O": "Python objects, which are never unpickled",
    "V": "structured records",
    "c": "complex numbers",
    "M": "dates",
    "m": "time spans",
}


def _load_npy(path: Path) -> np.ndarray:
    """Read a numeric ``.npy`` file, checking its header and size before numpy parses it.

    Raises:
        ValueError: for a file that is not ``.npy``, a cut header, a truncated body, or a
            non-numeric dtype (strings, objects: never unpickled); the message names the file.
    """
    where = f"{_STAGE}: {_display(path)}"
    size = path.stat().st_size
    with path.open("rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
        except ValueError as err:
            raise ValueError(
                f"{where} is not a .npy file ({err}; {size:,} bytes). {_REFETCH}."
            ) from err
        try:
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(handle)
        except (ValueError, OSError, SyntaxError) as err:
            raise ValueError(
                f"{where}: the .npy header is cut or unreadable ({err}; the file has "
                f"{size:,} bytes): an interrupted download or copy. {_REFETCH}."
            ) from err
        offset = handle.tell()
    if dtype.kind not in "biuf":  # bool, int, uint, float
        raise ValueError(
            f"{where} holds dtype {'object' if dtype.kind == 'O' else dtype.str} "
            f"({_KINDS.get(dtype.kind, dtype.kind)}), expected numeric spike counts / trial "
            f"codes (float or int). Is it the right file? {_REFETCH}."
        )
    expected = offset + math.prod(shape) * dtype.itemsize
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        raise ValueError(
            f"{where} is {state}: its header ({dtype.str}, shape {shape}) implies "
            f"{expected:,} bytes, the file has {size:,}. {_REFETCH}."
        )
    return np.load(path, allow_pickle=False)


def _check_counts(spikes: np.ndarray, path: Path) -> None:
    """Spike counts must be finite and non-negative; name the file, the counts, the first."""
    values = spikes.astype(np.float64, copy=False) if spikes.dtype.kind == "f" else None
    if values is None:
        bad = spikes < 0
        nan = inf = 0
    else:
        isnan, isinf = np.isnan(values), np.isinf(values)
        nan, inf = int(isnan.sum()), int(isinf.sum())
        bad = isnan | isinf | (values < 0)
    negative = int(bad.sum()) - nan - inf
    if nan or inf or negative:
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{_STAGE}: {_display(path)} holds {nan} NaN, {inf} infinite and {negative} "
            f"negative entries of {spikes.size:,} (first at (trial, neuron, bin) = {first}: "
            f"{spikes[first]}); binned spike counts must be finite and >= 0, so the file is "
            f"corrupt or was modified. {_REFETCH}."
        )


def load_rats(root: str | Path) -> RatWindows:
    """Read the five rats' recordings and build the MMVM samples (mmvm.md §3).

    Every file is checked before use (``.npy`` header, byte size, numeric dtype; never
    unpickled) and the spike counts must be finite and non-negative.

    Args:
        root: folder holding ``{rat}_spike_data_binned.npy`` ``(trials, neurons, 400)`` and
            ``{rat}_trial_info.npy`` ``(trials, 4)`` for every rat (the LFP files are unused).

    Returns:
        ``4 * sum_k n_k * 16`` samples, ``n_k`` the per-odor minimum trial count over the rats,
        with ``x[rat]`` of shape ``(N, 10 N_rat)``.

    Raises:
        FileNotFoundError: when any expected file is missing; the message lists all of them
            and the Dryad DOI.
        ValueError: for a truncated or non-``.npy`` file, a non-numeric dtype, NaN, infinite
            or negative spike counts, arrays of the wrong shape, mismatched trial counts or
            odor codes outside ``1 .. 5``; the message names the file.
    """
    root = Path(root)
    files = expected_files(root)
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"rat recordings incomplete at {_display(root)}: missing "
            f"{[p.name for p in missing]}. Expected the files "
            f"{[p.name for p in files]} (from {DRYAD}); put them in that folder."
        )
    windows, odor = {}, {}
    for rat in RATS:
        spikes_path = root / f"{rat}_spike_data_binned.npy"
        info_path = root / f"{rat}_trial_info.npy"
        spikes = _load_npy(spikes_path)
        info = _load_npy(info_path)
        if spikes.ndim != 3 or spikes.shape[2] != N_BINS:
            raise ValueError(
                f"{_STAGE}: {_display(spikes_path)} has shape {spikes.shape}, expected "
                f"(trials, neurons, {N_BINS})"
            )
        if info.ndim != 2 or info.shape[1] <= ODOR_COLUMN or info.shape[0] != spikes.shape[0]:
            raise ValueError(
                f"{_STAGE}: {_display(info_path)} has shape {info.shape}, expected "
                f"({spikes.shape[0]}, 4) like the trials of the spike file"
            )
        _check_counts(spikes, spikes_path)
        codes = np.asarray(info[:, ODOR_COLUMN], dtype=np.float64)
        if not np.all(np.isin(codes, np.arange(1, N_ODORS + 1))):
            bad = sorted(set(codes[~np.isin(codes, np.arange(1, N_ODORS + 1))].tolist()))
            first = int(np.flatnonzero(~np.isin(codes, np.arange(1, N_ODORS + 1)))[0])
            raise ValueError(
                f"{_STAGE}: {_display(info_path)}: odor column holds {bad[:5]} (first at "
                f"trial {first}), expected 1 .. 5. {_REFETCH}."
            )
        windows[rat] = torch.from_numpy(np.ascontiguousarray(spikes[:, :, _window_bins(rat)]))
        odor[rat] = torch.from_numpy(codes.astype(np.int64))
    return _pair(windows, odor, f"Dryad recordings ({_display(root)})")


# ---------------------------------------------------------------------------------------------
# Simulator (mmvm.md §4)


def _check_sim(n_trials_per_odor: int, tau: tuple[float, ...]) -> None:
    if n_trials_per_odor < 1:
        raise ValueError(f"n_trials_per_odor must be >= 1, got {n_trials_per_odor}")
    if len(tau) != len(RATS) or any(t < 0 for t in tau):
        raise ValueError(f"tau needs {len(RATS)} non-negative values (one per rat), got {tau}")


def _simulate(
    generator: torch.Generator,
    n_trials_per_odor: int,
    bins: dict[str, Tensor],
    tau: tuple[float, ...] = TAU,
    selective: float = 0.35,
    private_scale: float = 0.3,
    gain_sigma: float = 0.3,
) -> dict[str, tuple[Tensor, Tensor]]:
    """Draw ``{rat: (counts (T, N, len(bins)), trial_info (T, 4))}`` (see :func:`simulate_rats`)."""
    _check_sim(n_trials_per_odor, tau)
    g = generator
    f64 = torch.float64
    out = {}
    for m, rat in enumerate(RATS):
        n = NEURONS[m]
        t = N_ODORS * n_trials_per_odor
        # Per-neuron parameters.
        rate = (math.log(1.5) + torch.randn(n, generator=g, dtype=f64)).exp().clamp(0.1, 40.0)
        chosen = torch.rand(n, generator=g, dtype=f64) < selective
        theta = tau[m] * torch.randn(n, N_ODORS, generator=g, dtype=f64) * chosen[:, None]
        peak = 150.0 + 850.0 * torch.rand(n, generator=g, dtype=f64)  # ms after onset
        width = 100.0 + 300.0 * torch.rand(n, generator=g, dtype=f64)  # ms, Gaussian sd
        loading = private_scale * torch.randn(n, 2, generator=g, dtype=f64)
        # Per-trial variables: odors A-E, 50 each by default, shuffled.
        odor = torch.arange(N_ODORS).repeat_interleave(n_trials_per_odor)
        odor = odor[torch.randperm(t, generator=g)]
        s = torch.randn(t, 2, generator=g, dtype=f64)
        gain = (gain_sigma * torch.randn(t, generator=g, dtype=f64)).exp()
        correct = torch.rand(t, generator=g, dtype=f64) < 0.9
        in_seq = torch.rand(t, generator=g, dtype=f64) < 0.85
        # Rates on the requested bins (bin centres in ms after onset).
        centre = (bins[rat].to(f64) - ONSET_BIN) * 10.0 + 5.0  # (B,)
        phi = torch.exp(-0.5 * ((centre[None, :] - peak[:, None]) / width[:, None]) ** 2)  # (N, B)
        log_mod = theta.T[odor][:, :, None] * phi[None] + (s @ loading.T)[:, :, None]  # (T, N, B)
        lam = rate[None, :, None] * gain[:, None, None] * log_mod.exp()  # Hz
        p = (lam * 1e-3).clamp(max=1.0)  # spike probability per 1-ms bin
        counts = torch.binomial(torch.full_like(p, 10.0), p, generator=g)
        position = torch.where(in_seq, odor + 1, torch.randint(1, 6, (t,), generator=g))
        info = torch.stack([correct.to(f64), in_seq.to(f64), position.to(f64), odor + 1.0], 1)
        out[rat] = (counts, info)
    return out


def simulate_recordings(
    generator: torch.Generator, n_trials_per_odor: int = 50, **params: object
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Simulated recordings in the on-disk format of :func:`load_rats` (all 400 bins).

    Slower than :func:`simulate_rats` (about 1 s for 50 trials per odor); use it to write
    stand-in files, e.g. ``np.save(root / f"{rat}_spike_data_binned.npy", spikes)``.

    Args:
        generator: source of randomness (CPU).
        n_trials_per_odor: trials per odor A-E and rat.
        **params: ``tau``, ``selective``, ``private_scale``, ``gain_sigma`` of
            :func:`simulate_rats`.

    Returns:
        ``{rat: (spikes (T, N_rat, 400) float64 counts / 10, trial_info (T, 4) float64)}``.
    """
    every = {rat: torch.arange(N_BINS) for rat in RATS}
    sim = _simulate(generator, n_trials_per_odor, every, **params)
    return {rat: ((c / 10.0).numpy(), info.numpy()) for rat, (c, info) in sim.items()}


def simulate_rats(
    generator: torch.Generator,
    n_trials_per_odor: int = 50,
    tau: tuple[float, ...] = TAU,
    selective: float = 0.35,
    private_scale: float = 0.3,
    gain_sigma: float = 0.3,
) -> RatWindows:
    """The calibrated rat simulator of mmvm.md §4, windowed and paired like the real data.

    For rat ``m``, neuron ``n``, trial ``i`` with odor ``k_i`` and 10-ms bin ``t``::

        lambda = r_mn g_i exp(Theta_m[n, k_i] phi_mn(t) + V_m[n]^T s_i)   (Hz)
        count ~ Binomial(10, min(lambda * 1 ms, 1)),  x = count / 10

    with (mmvm.md §4 table) ``N_m = [92, 79, 104, 49, 46]``; baselines ``r`` LogNormal
    (median 1.5 Hz, sigma_log 1) clipped to [0.1, 40] Hz; 35 % odor-selective cells with
    ``Theta ~ N(0, tau_m^2)`` over the 5 odors, 0 otherwise, independently per rat; profile
    ``phi`` a Gaussian bump peaking 150-1000 ms after onset with width 100-400 ms; private
    ``s_i ~ N(0, I_2)`` with loadings ``V ~ N(0, 0.3^2)``; gain ``g ~ LogNormal(0, 0.3)``;
    50 shuffled trials per odor A-E; ``tau = [1.1, 1.0, 1.2, 0.8, 1.0]``. The odor is the only
    information shared by the rats (each rat draws its own cells and its own trials).

    Inferred where the note is silent: peaks and widths are uniform on their ranges and the
    width is the bump's standard deviation; ``phi`` is evaluated at bin centres; the optional
    trial flags are Bernoulli (correct 0.9, in-sequence 0.85) and the position column is the
    odor for in-sequence trials, else uniform on 1-5. Only the 25 window bins of each rat are
    drawn (rates are independent across bins, so the samples have the distribution of windowed
    :func:`simulate_recordings`, not its exact values).

    Args:
        generator: source of randomness (CPU); the only one used.
        n_trials_per_odor: trials per odor A-E and rat (50 in mmvm.md §4; 3,200 samples).
        tau: per-rat odor-tuning scale (log-rate sd of selective cells).
        selective: fraction of odor-selective cells.
        private_scale: sd of the loadings on the 2-D private latent.
        gain_sigma: sd of the log trial gain.

    Returns:
        ``4 * n_trials_per_odor * 16`` samples in the layout of :func:`load_rats`.

    Raises:
        ValueError: for ``n_trials_per_odor < 1`` or a ``tau`` without one value per rat.
    """
    tau = tuple(float(t) for t in tau)
    window = {rat: torch.arange(N_BINS)[_window_bins(rat)] for rat in RATS}
    sim = _simulate(generator, n_trials_per_odor, window, tau, selective, private_scale, gain_sigma)
    windows = {rat: c / 10.0 for rat, (c, _) in sim.items()}
    odor = {rat: info[:, ODOR_COLUMN].to(torch.int64) for rat, (_, info) in sim.items()}
    source = (
        f"simulator: mmvm.md §4, {n_trials_per_odor} trials/odor, tau={list(tau)}, "
        f"selective={selective}, private_scale={private_scale}, gain_sigma={gain_sigma}"
    )
    return _pair(windows, odor, source)


# ---------------------------------------------------------------------------------------------
# Statistics, splits, dispatch


def _decode(features: np.ndarray, label: np.ndarray, folds: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(folds, int(np.bincount(label).min()))
    if folds < 2 or len(np.unique(label)) < 2:
        return float("nan")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
    cv = StratifiedKFold(folds)
    return float(cross_val_score(model, features, label, cv=cv).mean())


def simulator_statistics(data: RatWindows, folds: int = 10) -> dict:
    """Summary statistics comparable with the numbers of mmvm.md §3-§4.

    Args:
        data: real or simulated samples.
        folds: folds of the decoding cross-validation (mmvm.md: 10).

    Returns:
        A dict with

        * ``"frac_zero"``, ``"frac_0.1"``, ``"frac_0.2"``, ``"frac_above_0.2"``, ``"nonzero"``:
          ``{rat: float}`` fractions of the entries (mmvm.md §4: about 2.6 % nonzero);
        * ``"mean_rate_hz"``: ``{rat: float}``, mean value x 1000 (values are 1-ms means);
        * ``"sq_norm"``: ``{rat: float}`` mean ``||x||^2`` per sample (mmvm.md §4: about 0.13
          for 46 neurons, about 1 summed over the rats);
        * ``"decoding_accuracy"``: ``{rat: float}``, ``folds``-fold accuracy of
          ``LogisticRegression(C=0.1)`` on standardised trial-level mean activity (each neuron
          averaged over the rat's 25-bin window), chance 0.25 (mmvm.md: 0.706 for SuperChris);
        * ``"samples_per_odor"``: ``[int] * 4`` and ``"trials_per_odor"``: ``[int] * 4``.
    """
    label = data.label.numpy()
    trial = data.trial.numpy()
    stats: dict = {
        key: {}
        for key in (
            "frac_zero",
            "frac_0.1",
            "frac_0.2",
            "frac_above_0.2",
            "nonzero",
            "mean_rate_hz",
            "sq_norm",
            "decoding_accuracy",
        )
    }
    trials, first = np.unique(trial, return_index=True)
    trial_label = label[first]
    for rat, x in data.x.items():
        counts = torch.round(x.double() * 10).numpy()
        stats["frac_zero"][rat] = float((counts == 0).mean())
        stats["frac_0.1"][rat] = float((counts == 1).mean())
        stats["frac_0.2"][rat] = float((counts == 2).mean())
        stats["frac_above_0.2"][rat] = float((counts > 2).mean())
        stats["nonzero"][rat] = float((counts > 0).mean())
        stats["mean_rate_hz"][rat] = float(x.double().mean()) * 1000.0
        stats["sq_norm"][rat] = float(x.double().square().sum(1).mean())
        sub = x.double().reshape(len(x), -1, SUB_WINDOW)  # (S, N, 10)
        per_trial = torch.zeros(len(trials), sub.shape[1], dtype=torch.float64)
        index = torch.from_numpy(np.searchsorted(trials, trial))
        per_trial.index_add_(0, index, sub.mean(2))
        features = (per_trial / torch.bincount(index)[:, None]).numpy()
        stats["decoding_accuracy"][rat] = _decode(features, trial_label, folds)
    stats["samples_per_odor"] = [int((label == k).sum()) for k in range(N_LABELS)]
    stats["trials_per_odor"] = [int((trial_label == k).sum()) for k in range(N_LABELS)]
    return stats


def trial_split(
    data: RatWindows, test_fraction: float = 0.2, generator: torch.Generator | None = None
) -> tuple[RatWindows, RatWindows]:
    """Split by trial tuple, stratified by odor: no held-out trial has a training sub-window.

    Args:
        data: the samples.
        test_fraction: fraction of each odor's trial tuples held out (rounded, at least 1 and
            at most all but 1 when the odor has >= 2 tuples).
        generator: randomness of the split; ``None`` seeds one with 0.

    Returns:
        ``(train, test)``.

    Raises:
        ValueError: for ``test_fraction`` outside ``(0, 1)``.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    trials, first = np.unique(data.trial.numpy(), return_index=True)
    trial_label = data.label.numpy()[first]
    held = []
    for k in np.unique(trial_label):
        ids = torch.from_numpy(trials[trial_label == k])
        n_test = min(max(round(test_fraction * len(ids)), 1), max(len(ids) - 1, 1))
        held.append(ids[torch.randperm(len(ids), generator=generator)[:n_test]])
    test = torch.isin(data.trial, torch.cat(held))
    return data.subset(~test), data.subset(test)


def rats(
    generator: torch.Generator | None = None, root: str | Path | None = None, **sim_params
) -> RatWindows:
    """The real recordings when present, else the simulator.

    Real data is read from ``root``, by default ``data_root()/"rats"``; when the default
    folder holds none of the expected files, :func:`simulate_rats` is drawn instead (``source``
    says which). ``sim_params`` only apply to the simulator.

    Args:
        generator: randomness of the simulator; ``None`` seeds one with 0.
        root: folder of the recordings; given explicitly, it must hold them.
        **sim_params: keyword arguments of :func:`simulate_rats`.

    Returns:
        The samples.

    Raises:
        FileNotFoundError: when ``root`` is given (or the default folder is partial) and files
            are missing.
    """
    if root is not None:
        return load_rats(root)
    base = data_root() / "rats"
    if any(p.is_file() for p in expected_files(base)):
        return load_rats(base)
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    return simulate_rats(generator, **sim_params)
