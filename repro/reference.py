"""Reference values of the quick figures, with measured tolerances: a check that any CPU passes.

nbval compares a notebook's saved outputs with a fresh run as strings. The quick numbers depend
on the CPU's floating-point paths (AVX2 or AVX-512 kernels, thread counts, BLAS back ends): a
last-bit difference early in training grows into a different trajectory, so a printed ``0.94``
becomes ``0.93`` on another machine. The notebooks therefore print their rounded summary for the
reader in a cell nbval does not compare, and the compared cell prints the verdict of
:func:`check`: every metric of the figure against its committed reference value, within a
tolerance measured beside it, and every claim's verdict among those seen while measuring.

**The files.** ``notebooks/reference/<figure>.<profile>.json`` holds, per metric, the value of
the committed run and its tolerance, and per claim the verdicts accepted, with a note of how
they were measured (:func:`measure`): the figure is run again under perturbations that change
the floating-point path (other seeds, 2 threads, AVX2 and SSE kernels in place of AVX-512 via
``ATEN_CPU_CAPABILITY``, ``MKL_ENABLE_INSTRUCTIONS`` and ``ONEDNN_MAX_CPU_ISA``), and the
tolerance of a metric is :data:`K` times the root-mean-square deviation of those runs from the
reference (the larger of the seed runs' and the CPU-path runs'), at least :data:`FLOOR`.

Run ``python -m repro.reference measure <figure>`` after a change that moves the quick numbers
on purpose, review the diff of the reference file and commit it with the re-executed notebook.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "K",
    "FLOOR",
    "PERTURBATIONS",
    "ReferenceMismatch",
    "flatten",
    "claims",
    "reference_path",
    "check",
    "measure",
    "measure_together",
]

K = 4.0  # tolerance = K x the RMS deviation of the perturbed runs from the reference
FLOOR = 1e-6  # relative floor of a tolerance (metrics that no perturbation moved)

#: Environments that change the floating-point path of a run (each a separate process).
PERTURBATIONS: dict[str, dict[str, str]] = {
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
    "sse": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
    },
    "2-threads": {"REPRO_THREADS": "2"},
}


class ReferenceMismatch(AssertionError):
    """A metric left its tolerance or a verdict flipped; the message names each one."""


def flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested ``{key: {key: float}}`` metrics as ``{"key/key": float}`` (non-numbers dropped).

    Args:
        metrics: a result's ``metrics``.
        prefix: prepended to every key (recursion).

    Returns:
        The numeric leaves.
    """
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= flatten(value, f"{name}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def claims(result: Any) -> dict[str, str]:
    """The verdicts a result carries, ``{claim: verdict}`` (``details["paper_predictions"]``)."""
    found = getattr(result, "details", {}).get("paper_predictions", {})
    return {str(k): str(v) for k, v in found.items()}


def reference_path(name: str, profile: str) -> Path:
    """``notebooks/reference/<name>.<profile>.json`` in the checkout."""
    from repro.paths import notebooks_dir

    return notebooks_dir() / "reference" / f"{name}.{profile}.json"


def _close(value: float, ref: float, tolerance: float) -> bool:
    if math.isnan(ref):
        return math.isnan(value)
    if math.isinf(ref):
        return value == ref
    return abs(value - ref) <= tolerance


def check(result: Any, path: str | Path | None = None) -> str:
    """Compare a result with its reference file; return one CPU-independent line.

    Args:
        result: a figure's result (``cfg.name``, ``cfg.profile``, ``metrics``, ``details``).
        path: the reference file (default: :func:`reference_path` of the result's config).

    Returns:
        A line naming the file and how many metrics and verdicts matched, or saying that the
        profile has no reference (a smoke run, or a profile without a committed file).

    Raises:
        ReferenceMismatch: naming the figure, each metric outside its tolerance (value,
            reference, tolerance), each verdict not accepted, and metrics missing on either
            side.
    """
    cfg = result.cfg
    name, profile = cfg.name, cfg.profile
    if getattr(cfg, "smoke", False):
        return f"{name}: smoke run, not compared with reference values"
    path = Path(path) if path is not None else reference_path(name, profile)
    if not path.is_file():
        return f"{name}: no reference values for the {profile!r} profile ({path.name} absent)"
    ref = json.loads(path.read_text(encoding="utf-8"))
    values = flatten(result.metrics)
    problems = []
    for key, entry in ref["metrics"].items():
        if key not in values:
            problems.append(f"metric {key!r} is missing from the result")
            continue
        value, expected, tol = values[key], float(entry["value"]), float(entry["tolerance"])
        if not _close(value, expected, tol):
            problems.append(
                f"{key} = {value:.6g}, reference {expected:.6g} +- {tol:.3g} "
                f"(off by {abs(value - expected):.3g})"
            )
    extra = sorted(set(values) - set(ref["metrics"]))
    if extra:
        problems.append(f"metrics without a reference value: {extra[:5]}")
    verdicts = claims(result)
    for claim, entry in ref["verdicts"].items():
        got = verdicts.get(claim)
        if got is None:
            problems.append(f"claim {claim!r} is missing from the result")
        elif got not in entry["accepted"]:
            problems.append(
                f"claim {claim!r}: verdict {got!r}, reference {entry['value']!r} (accepted: "
                f"{entry['accepted']})"
            )
    new = sorted(set(verdicts) - set(ref["verdicts"]))
    if new:
        problems.append(f"claims without a reference verdict: {new}")
    rel = path.name
    if problems:
        raise ReferenceMismatch(
            f"{name} ({profile}): {len(problems)} difference(s) from {rel} beyond the measured "
            "tolerances:\n  " + "\n  ".join(problems) + "\nIf the change is intended, re-measure "
            f"with `python -m repro.reference measure {name}` and commit the file."
        )
    return (
        f"{name} ({profile}): {len(ref['metrics'])} metrics within their tolerances and "
        f"{len(ref['verdicts'])} verdicts as in {rel}"
    )


# ---------------------------------------------------------------------------------------------
# Measuring


def _figure(name: str) -> Any:
    from repro.registry import FIGURES

    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose from {sorted(FIGURES)}")
    return FIGURES[name]


def run_once(name: str, profile: str, seed: int, out: str | Path) -> None:
    """Run a figure's experiment (no notebook, no figure) and write its numbers to ``out``.

    Threads follow ``REPRO_THREADS`` when set (a perturbation), else the preset.

    Args:
        name: the figure.
        profile: the preset.
        seed: the config's seed.
        out: JSON file for ``{"metrics": ..., "verdicts": ...}``.
    """
    figure = _figure(name)
    settings = importlib.import_module(f"repro.papers.{figure.paper}.settings")
    module = importlib.import_module(f"repro.papers.{figure.paper}.{figure.experiment}")
    overrides: dict[str, Any] = {"seed": seed}
    if os.environ.get("REPRO_THREADS"):
        overrides["threads"] = int(os.environ["REPRO_THREADS"])
    cfg = settings.get(figure.experiment, profile, **overrides)
    tic = time.perf_counter()
    result = module.run(cfg)
    blob = {
        "metrics": flatten(result.metrics),
        "verdicts": claims(result),
        "seconds": time.perf_counter() - tic,
    }
    Path(out).write_text(json.dumps(blob, indent=1), encoding="utf-8")


def _run_subprocess(
    jobs: Sequence[tuple[str, int]], profile: str, env: Mapping[str, str]
) -> list[dict]:
    """Run ``(figure, seed)`` jobs one process each, in order, sharing one fresh cache.

    Figures measured together share their run's cache as they do in a notebook batch (the bound
    figure of ``coord`` reads the models of the cross-coherence figure); nothing is cached from
    outside the run, so every run trains, classifiers included.
    """
    blobs = []
    with tempfile.TemporaryDirectory(prefix="repro-reference-") as tmp:
        cache = Path(tmp) / "cache"
        full_env = {**os.environ, **env, "REPRO_CACHE": str(cache), "REPRO_HEADLESS": "1"}
        code = (
            "import sys; from repro.reference import run_once; "
            "run_once(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])"
        )
        for i, (name, seed) in enumerate(jobs):
            out = Path(tmp) / f"run{i}.json"
            subprocess.run(
                [sys.executable, "-c", code, name, profile, str(seed), str(out)],
                env=full_env, check=True,
            )  # fmt: skip
            blobs.append(json.loads(out.read_text(encoding="utf-8")))
    return blobs


def _rms(devs: Sequence[float]) -> float:
    return math.sqrt(sum(d * d for d in devs) / len(devs)) if devs else 0.0


def measure(
    name: str,
    profile: str = "quick",
    seeds: Sequence[int] = (1, 2, 3),
    perturbations: Sequence[str] = tuple(PERTURBATIONS),
    path: str | Path | None = None,
) -> Path:
    """Measure the tolerances of a figure's metrics and write its reference file.

    The reference run uses the preset's seed in this process's environment; each seed of
    ``seeds`` and each environment of ``perturbations`` is run in a fresh process with an empty
    cache. Per metric: the tolerance is :data:`K` x the larger of the RMS deviations of the
    seed runs and of the perturbed runs from the reference, at least :data:`FLOOR` x the value.
    Per claim: the verdicts seen in any run are accepted.

    Args:
        name: the figure.
        profile: the preset.
        seeds: extra seeds (spread of the numbers over training noise).
        perturbations: keys of :data:`PERTURBATIONS` (spread over floating-point paths).
        path: where to write (default: :func:`reference_path`).

    Returns:
        The file written.
    """
    return measure_together([name], profile, seeds, perturbations, [path])[0]


def measure_together(
    names: Sequence[str],
    profile: str = "quick",
    seeds: Sequence[int] = (1, 2, 3),
    perturbations: Sequence[str] = tuple(PERTURBATIONS),
    paths: Sequence[str | Path | None] | None = None,
) -> list[Path]:
    """:func:`measure` for several figures whose runs share each condition's cache.

    Every condition (the reference, each seed, each perturbation) runs the figures in the order
    given, one process each, in one fresh cache: a figure that reads another's units (the bound
    figure of ``coord`` reads the cross-coherence models) reads the ones trained in the same
    condition, as in a notebook batch, instead of training them again.

    Returns:
        The files written, in the order of ``names``.
    """
    figures = [_figure(n) for n in names]
    base = []
    for name, figure in zip(names, figures, strict=True):
        settings = importlib.import_module(f"repro.papers.{figure.paper}.settings")
        base.append((name, settings.get(figure.experiment, profile).seed))
    reference = _run_subprocess(base, profile, {})
    by_seed = [_run_subprocess([(n, s) for n in names], profile, {}) for s in seeds]
    by_env = [_run_subprocess(base, profile, PERTURBATIONS[p]) for p in perturbations]
    paths = list(paths) if paths is not None else [None] * len(names)
    return [
        _write(
            name,
            profile,
            base[i][1],
            seeds,
            perturbations,
            reference[i],
            [r[i] for r in by_seed],
            [r[i] for r in by_env],
            paths[i],
        )  # fmt: skip
        for i, name in enumerate(names)
    ]


def _write(
    name: str,
    profile: str,
    base_seed: int,
    seeds: Sequence[int],
    perturbations: Sequence[str],
    reference: dict,
    by_seed: Sequence[dict],
    by_env: Sequence[dict],
    path: str | Path | None,
) -> Path:
    metrics = {}
    for key, value in reference["metrics"].items():
        seed_dev = [r["metrics"][key] - value for r in by_seed if key in r["metrics"]]
        env_dev = [r["metrics"][key] - value for r in by_env if key in r["metrics"]]
        finite = [d for d in seed_dev + env_dev if math.isfinite(d)]
        spread = max(_rms([d for d in seed_dev if math.isfinite(d)]), _rms(env_dev))
        tol = max(K * spread, FLOOR * abs(value)) if math.isfinite(value) else 0.0
        metrics[key] = {
            "value": value,
            "tolerance": tol,
            "seed_rms": _rms([d for d in seed_dev if math.isfinite(d)]),
            "cpu_path_max": max((abs(d) for d in env_dev if math.isfinite(d)), default=0.0),
            "finite_deviations": len(finite),
        }
    verdicts = {}
    for claim, value in reference["verdicts"].items():
        seen = [value] + [r["verdicts"].get(claim) for r in [*by_seed, *by_env]]
        verdicts[claim] = {"value": value, "accepted": sorted({v for v in seen if v})}
    blob = {
        "figure": name,
        "profile": profile,
        "how": (
            f"value: the {profile} preset, seed {base_seed}, 1 process on "
            f"{_cpu_name()}; tolerance: {K:g} x max(RMS deviation over seeds {list(seeds)}, "
            f"RMS deviation over CPU paths {list(perturbations)}), at least {FLOOR:g} x |value|; "
            "verdicts: every verdict seen in those runs is accepted"
        ),
        "runs": {
            "reference_seconds": round(reference["seconds"], 1),
            "seeds": list(seeds),
            "perturbations": {p: PERTURBATIONS[p] for p in perturbations},
        },
        "metrics": metrics,
        "verdicts": verdicts,
    }
    target = Path(path) if path is not None else reference_path(name, profile)
    from repro.io import atomic_write_text

    atomic_write_text(target, json.dumps(blob, indent=1, sort_keys=False) + "\n")
    return target


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "an unknown CPU"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m repro.reference measure NAME [...]``: write reference files."""
    parser = argparse.ArgumentParser(prog="python -m repro.reference")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser(
        "measure",
        help="measure the tolerances of figures and write the files (figures named together "
        "share each run's cache, in the order given)",
    )
    m.add_argument("names", nargs="+", metavar="NAME")
    m.add_argument("--profile", default="quick")
    m.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3])
    m.add_argument("--perturbations", nargs="*", default=list(PERTURBATIONS))
    args = parser.parse_args(argv)
    written = measure_together(args.names, args.profile, args.seeds, args.perturbations)
    for name, path in zip(args.names, written, strict=True):
        sys.stdout.write(f"{name}: wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
