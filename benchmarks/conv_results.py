"""Markdown table of the conv benchmarks (``bench_models.py`` + ``bench_vs_multivae.py`` JSON).

Reads the ``--json`` outputs of ``bench_models.py --arch conv`` (samples/s at each thread count,
training memory, step / floor) and, optionally, of ``bench_vs_multivae.py --arch conv``
(MultiVae's step time over ours, 1 thread) for one preset, and prints one markdown table with
the machine, the commit and the architecture it was measured on::

    python benchmarks/bench_models.py --arch conv --preset quick --json runs/bench/mq.json
    python benchmarks/bench_vs_multivae.py --arch conv --preset quick --json runs/bench/vq.json
    python benchmarks/conv_results.py runs/bench/mq.json --vs runs/bench/vq.json
    python benchmarks/conv_results.py mq1.json mq2.json --vs vq.json   # 1 and 2 threads apart

Several ``bench_models.py`` files are merged (e.g. 1 thread on the CPU clock, 2 threads on the
wall clock); the clock of each thread count is named in its column header.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import benchlib

#: Stages without a MultiVae 1.0.3 counterpart in the comparison, and why.
NOT_COMPARED = {
    "JNF-DCCA/projectors": "no JNF-DCCA in MultiVae 1.0.3",
    "JNF-DCCA/joint": "no JNF-DCCA in MultiVae 1.0.3",
    "JNF-DCCA/unimodal": "no JNF-DCCA in MultiVae 1.0.3",
    "MVAE": "not compared",
    "CRMVAE": "not compared",
}


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "" if value is None else f"{value:{spec}}{suffix}"


def table(records: dict | Sequence[dict], vs: dict | None = None) -> str:
    """The markdown table (header line, rows, a provenance line).

    Args:
        records: the JSON record(s) of ``bench_models.py --arch conv`` (one preset; a later
            record's rows replace an earlier one's for the same entry and thread count).
        vs: the JSON record of ``bench_vs_multivae.py --arch conv`` (same preset), or ``None``.

    Returns:
        Markdown text.
    """
    records = [records] if isinstance(records, dict) else list(records)
    models = records[0]
    rows: dict[str, dict[int, dict]] = {}
    clocks: dict[int, str] = {}
    loads: dict[int, object] = {}
    for record in records:
        for row in record["rows"]:
            rows.setdefault(row["entry"], {})[row["threads"]] = row
            clocks[row["threads"]] = record.get("clock", "wall")
            loads[row["threads"]] = (record["state"].get("load_average") or ["?"])[0]
    threads = sorted({t for r in rows.values() for t in r})
    speed = {r["name"]: r for r in (vs or {}).get("rows", []) if "step_speedup" in r}
    head = ["model / stage", "batch"]
    head += [f"samples/s, {t} thread{'s' if t > 1 else ''} ({clocks[t]} clock)" for t in threads]
    head += ["training memory (1 thread)", "step / floor (1 thread)"]
    head += ["vs MultiVae 1.0.3 (1 thread, step)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in benchlib.CONV_ENTRIES:
        if entry not in rows:
            continue
        by = rows[entry]
        one = by.get(1) or by[min(by)]
        cells = [entry, str(one["batch_size"])]
        cells += [_fmt(by[t]["samples_per_s"], ",.0f") if t in by else "" for t in threads]
        cells.append(_fmt(one["train_mb"], ",.0f", " MB"))
        cells.append(_fmt(one.get("floor_ratio"), ".2f"))
        if entry in speed:
            r = speed[entry]
            cells.append(
                f"{r['step_speedup']:.2f}x ({r['step_ms_theirs']:.0f} / {r['step_ms_ours']:.0f} ms;"
                f" their step / floor {r['step_ms_theirs'] / r['floor_ms_theirs']:.2f})"
            )
        else:
            cells.append(f"({NOT_COMPARED.get(entry, 'not measured')})")
        lines.append("| " + " | ".join(cells) + " |")
    state = models["state"]
    cfg = models.get("config") or {}
    arch = (
        f"channels {tuple(cfg.get('channels', ()))}, latent {cfg.get('latent_dim')}, "
        f"{cfg.get('likelihood')} likelihood (scale {cfg.get('scale')}), MMVAE "
        f"{cfg.get('mmvae_estimator', 'iwae')}/{cfg.get('mmvae_stratified', 'all')} "
        f"K {cfg.get('mmvae_K')}"
        if cfg
        else "?"
    )
    lines.append("")
    load = ", ".join(f"{t} thread(s) {loads[t]}" for t in threads)
    lines.append(
        f"Preset `{models.get('preset')}` ({arch}), {state['cpu']} ({state.get('cores', '?')} "
        f"cores; load average when each run started: {load}), torch {state['torch']}, commit "
        f"{state['commit']} (+{state['dirty_files']} uncommitted files)"
        + (
            f"; MultiVae comparison at commit {vs['state']['commit']}, load average "
            f"{(vs['state'].get('load_average') or ['?'])[0]}"
            if vs
            else ""
        )
        + "."
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table of one preset."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", type=Path, nargs="+", help="bench_models.py --arch conv --json output(s)"
    )
    parser.add_argument("--vs", type=Path, help="bench_vs_multivae.py --arch conv --json output")
    args = parser.parse_args(argv)
    records = [json.loads(path.read_text()) for path in args.models]
    vs = json.loads(args.vs.read_text()) if args.vs else None
    print(table(records, vs), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
