"""Training throughput and peak memory of the JNF toy stages (paper-size networks, batch 256).

Each stage runs in its own process (so that peak memory is that stage's), through the package's
own training loop ``repro.train.fit``: a warm-up epoch, then timed epochs.

    python benchmarks/bench_jnf_toy.py                    # CPU, 1 thread
    python benchmarks/bench_jnf_toy.py --threads 2
    python benchmarks/bench_jnf_toy.py --device cuda      # on a GPU machine
    python benchmarks/bench_jnf_toy.py --json runs/bench/jnf_toy_cpu.json

Reported per stage: samples/s (median over ``--repeats`` timed epochs); training memory (CPU:
peak RSS during training minus the RSS just before it, i.e. activations, gradients and optimiser
state; CUDA: ``torch.cuda.max_memory_allocated``); the process's peak RSS (CPU, includes torch
itself and the data); and each stage's throughput relative to stage 1 (the joint VAE).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("projectors", "joint", "gaussian", "flow", "dcca")


def _child(stage: str, device: str, threads: int, samples: int, repeats: int) -> dict:
    import torch

    from repro import config
    from repro.data.toy_square import make_pairs
    from repro.experiments.jnf_toy import build_models
    from repro.train import fit

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    cfg = config.get("jnf_toy_posteriors", "full")
    data = make_pairs(samples, generator).x
    models = build_models(cfg)
    for model in models.values():
        model.to(device)
    data = {k: v.to(device) for k, v in data.items()}
    model = models["dcca" if stage == "projectors" else "flow" if stage == "joint" else stage]
    module, bound = model.prepare_stage(stage if stage in ("projectors", "joint") else "unimodal")
    preset = {"projectors": cfg.dcca_train, "joint": cfg.joint_train}.get(stage, cfg.unimodal_train)
    train_cfg = dataclasses.replace(preset, epochs=1, progress=False, checkpoint=False)
    rss_before = _current_rss_mb()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    fit(module, bound, data, train_cfg, generator=generator)  # warm-up
    rates = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fit(module, bound, data, train_cfg, generator=generator)
        if device == "cuda":
            torch.cuda.synchronize()
        rates.append(samples / (time.perf_counter() - tic))
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == "cuda":
        training_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        training_mb = peak_rss - rss_before
    return {
        "stage": stage,
        "samples_per_s": statistics.median(rates),
        "samples_per_s_all": rates,
        "peak_memory_mb": training_mb,
        "process_peak_rss_mb": peak_rss,
        "batch_size": train_cfg.batch_size,
    }


def _current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    """Run every stage in a child process and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=5120, help="samples per timed epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = _child(args.child, args.device, args.threads, args.samples, args.repeats)
        print(json.dumps(result))
        return 0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("--device cuda: torch sees no CUDA device", file=sys.stderr)
            return 2
    rows = []
    for stage in args.stages:
        cmd = [sys.executable, __file__, "--child", stage, "--device", args.device]
        cmd += ["--threads", str(args.threads), "--samples", str(args.samples)]
        cmd += ["--repeats", str(args.repeats)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    reference = next((r["samples_per_s"] for r in rows if r["stage"] == "joint"), None)
    cpu = platform.processor() or platform.machine()
    print(f"JNF toy training, device={args.device}, threads={args.threads}, {cpu}")
    print("stage         batch   samples/s  vs joint  train MB   RSS MB")
    for r in rows:
        ratio = r["samples_per_s"] / reference if reference else float("nan")
        r["ratio_to_joint"] = ratio
        print(
            f"{r['stage']:12s}{r['batch_size']:7d}{r['samples_per_s']:12.0f}"
            f"{ratio:10.2f}{r['peak_memory_mb']:10.1f}{r['process_peak_rss_mb']:9.0f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "device": args.device,
            "threads": args.threads,
            "samples": args.samples,
            "rows": rows,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
