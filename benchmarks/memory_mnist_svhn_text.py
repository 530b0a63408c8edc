"""Peak memory of the ``iai`` full profile's data path on MNIST-SVHN-Text at its real size.

The real files are not needed: fixtures in the published formats and at the published sizes
are written first (``--root``, kept between runs):

* MNIST: Debian's ``dataset-fashion-mnist`` package (``apt-get install dataset-fashion-mnist``)
  ships the four IDX files of Fashion-MNIST, byte for byte the format and size of MNIST's
  (60,000 + 10,000 images, 6,000 / 1,000 per class); they are gunzipped into
  ``<root>/MNIST/raw/``. Without the package, random IDX files of the same size are written.
* SVHN: ``train_32x32.mat`` / ``test_32x32.mat`` written with ``scipy.io.savemat`` in the real
  layout (``X``: 32x32x3xN uint8 random pixels, ``y``: Nx1 with 10 for the digit 0) and with
  SVHN's per-class counts (73,257 and 26,032 images).

MoPoE's pairing then gives ``20 x sum_c min(#MNIST_c, #SVHN_c)`` = 1,119,480 training and
200,000 test tuples (the real MNIST gives 1,121,360 training tuples).

Each measurement runs in a fresh process: build the train and test sets as
``repro.papers.iai.elbo_iterations._data`` does for the full profile, then prepare the model
inputs in one of three ways, then draw 20 training batches of 256 through
``repro.train.batches``; the peak resident set size (``VmHWM``) is reported.

* ``dense``: what the data path did before ``RowView``: every tuple as float32
  (``MnistSvhnText.batch(slice(None))``) and the text one-hot (``one_hot``);
* ``views``: today's ``elbo_iterations._tensors`` (``MnistSvhnText.x``: image views; the text
  one-hot materialised by ``one_hot``);
* ``inputs``: ``MnistSvhnText.inputs()``, every modality a view (the proposed ``_tensors``).

A mode whose materialised tensors would not fit in the memory available is skipped; measure it
at smaller ``--multiplications`` and extrapolate (its memory grows linearly with the tuples).

    python benchmarks/memory_mnist_svhn_text.py                       # all modes, 20 (full)
    python benchmarks/memory_mnist_svhn_text.py --modes dense views --multiplications 1 2 4
    python benchmarks/memory_mnist_svhn_text.py --root /scratch/mst --json memory.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")
MNIST_FILES = {
    "train-images-idx3-ubyte": (60000, 28, 28),
    "train-labels-idx1-ubyte": (60000,),
    "t10k-images-idx3-ubyte": (10000, 28, 28),
    "t10k-labels-idx1-ubyte": (10000,),
}
# images per digit 0..9 in SVHN's train_32x32.mat and test_32x32.mat
SVHN_COUNTS = {
    "train": (4948, 13861, 10585, 8497, 7458, 6882, 5727, 5595, 5045, 4659),
    "test": (1744, 5099, 4149, 2882, 2523, 2384, 1977, 2019, 1660, 1595),
}
MODES = ("dense", "views", "inputs")


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0800 + array.ndim
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_fixtures(root: Path) -> str:
    """Write MNIST (IDX) and SVHN (.mat) at full size under ``root``; return their origin."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    origin = []
    for name, shape in MNIST_FILES.items():
        path = raw / name
        if path.is_file():
            continue
        archive = FASHION / f"{name}.gz"
        if archive.is_file():
            with gzip.open(archive, "rb") as src, path.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            origin.append("fashion-mnist")
        elif len(shape) == 1:
            _write_idx(path, np.arange(shape[0]) % 10)
            origin.append("random")
        else:
            _write_idx(path, rng.integers(0, 256, shape, dtype=np.uint8))
            origin.append("random")
    import scipy.io

    svhn = root / "SVHN"
    svhn.mkdir(exist_ok=True)
    for split, counts in SVHN_COUNTS.items():
        path = svhn / f"{split}_32x32.mat"
        if path.is_file():
            continue
        digits = rng.permutation(np.repeat(np.arange(10), counts))
        x = rng.integers(0, 256, (32, 32, 3, len(digits)), dtype=np.uint8)
        y = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
        scipy.io.savemat(path, {"X": x, "y": y})
    kinds = sorted(set(origin)) or ["already there"]
    return f"MNIST: {', '.join(kinds)}; SVHN: random pixels, real class counts"


def _vm(key: str) -> int:
    """``VmHWM`` / ``VmRSS`` of this process in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def child(mode: str, multiplications: int) -> dict[str, Any]:
    """One measurement (in its own process)."""
    import torch

    torch.set_num_threads(1)
    from repro.data.mnist_svhn_text import ALPHABET, one_hot
    from repro.papers.iai import elbo_iterations as ei
    from repro.papers.iai import settings
    from repro.runtime import seed_everything
    from repro.train import batches

    base = _vm("VmRSS")
    cfg = settings.get("elbo_iterations", "full", device="cpu")
    data_cfg = dataclasses.replace(cfg.data, data_multiplications=multiplications)
    cfg = dataclasses.replace(cfg, data=data_cfg)
    tic = time.perf_counter()
    train, test = ei._data(cfg, seed_everything(cfg.seed))  # noqa: SLF001  the figure's path
    built = _vm("VmHWM")
    per_tuple = 4 * (28 * 28 + 3 * 32 * 32 + 8 * len(ALPHABET))
    need = (len(train) + len(test)) * per_tuple
    out: dict[str, Any] = {
        "mode": mode,
        "data_multiplications": multiplications,
        "n_train": len(train),
        "n_test": len(test),
        "source": train.source,
        "baseline_rss_mb": round(base / 2**20),
        "after_build_hwm_mb": round(built / 2**20),
        "dense_bytes_mb": round(need / 2**20),
    }
    if mode == "dense" and need > 0.8 * _available():
        out["skipped"] = (
            f"dense tensors need {need / 2**30:.1f} GiB, {_available() / 2**30:.1f} GiB available"
        )
        return out
    if mode == "dense":
        x = {}
        for split, d in (("train", train), ("test", test)):
            b = d.batch(slice(None))
            x[split] = {"mnist": b["mnist"], "svhn": b["svhn"], "text": one_hot(b["text"])}
    elif mode == "views":
        x = {"train": ei._tensors(train, "cpu"), "test": ei._tensors(test, "cpu")}  # noqa: SLF001
    else:
        x = {"train": train.inputs("cpu"), "test": test.inputs("cpu")}
    prepared = _vm("VmHWM")
    for k, batch in enumerate(batches(x["train"], 256, torch.Generator().manual_seed(0))):
        assert batch["svhn"].shape == (256, 3, 32, 32) and batch["svhn"].dtype == torch.float32
        if k == 19:
            break
    out.update(
        after_inputs_hwm_mb=round(prepared / 2**20),
        peak_rss_mb=round(_vm("VmHWM") / 2**20),
        seconds=round(time.perf_counter() - tic, 1),
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """Write the fixtures, measure every (mode, multiplications) in a fresh process, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="fixture folder (kept)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--multiplications", nargs="+", type=int, default=[20])
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "MULT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return 0
    root = args.root or Path(tempfile.gettempdir()) / "repro-mst-fixtures"
    origin = write_fixtures(root)
    print(f"fixtures in {root} ({origin})")
    env = dict(os.environ, REPRO_DATA=str(root), OMP_NUM_THREADS="1")
    rows = []
    for dm in args.multiplications:
        for mode in args.modes:
            done = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(dm)],
                env=env,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                print(f"{mode} x{dm}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            peak = row.get("skipped") or f"peak RSS {row['peak_rss_mb']:,} MB"
            print(
                f"{mode:6s} x{dm:<3d} {row['n_train']:>9,} train + {row['n_test']:,} test "
                f"tuples: {peak} (after building {row['after_build_hwm_mb']:,} MB; the float32 "
                f"tuples would take {row['dense_bytes_mb']:,} MB)"
            )
    if args.json:
        args.json.write_text(json.dumps({"fixtures": origin, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
