"""Training throughput, peak memory and matmul-floor ratio of every model and training stage.

Each (model/stage, device, threads) runs in its own process, so that peak memory is that
stage's, through the package's own loop ``repro.train.fit``: the stage is prepared with
``model.prepare_stage(stage)`` (its ``Stage.prepare`` applied to the data once, timed apart),
one warm-up epoch, then ``--repeats`` timed epochs of ``--samples`` pairs.

    python benchmarks/bench_models.py                       # CPU, 1 and 2 threads, ~3 min
    python benchmarks/bench_models.py --threads 1 --only jnf/joint jnf/flow
    python benchmarks/bench_models.py --device cuda         # on a GPU machine
    python benchmarks/bench_models.py --profile jnf/flow    # torch.profiler, top ops
    python benchmarks/bench_models.py --json runs/bench/models_cpu.json

Models and stages (``--only``): the JNF toy at paper size (512-unit MLPs on 32x32 toy pairs,
latent 2; batch 256, DCCA projectors 800): ``jnf/projectors`` (JNF-DCCA's DCCA stage),
``jnf/joint`` (stage 1, the joint VAE), ``jnf/gaussian``, ``jnf/flow``, ``jnf/dcca`` (stage 2,
unimodal posteriors on the frozen joint model); and MLP models on the same pairs (encoders
``1024-512`` + Gaussian heads, decoders ``16-512-1024``, Bernoulli, latent 16, batch 256):
``mopoe`` (MultiVae's objective: one subset per sample, in chunks), ``mvae`` (default),
``mopoe-all`` (every subset decoded for every sample), ``mvtcae``, ``crmvae`` (on request). A
model whose module does not exist yet is reported as missing.

Reported: samples/s (median over the timed epochs) and ms per step; training memory (CPU:
peak RSS during training minus the RSS just before it, i.e. activations, gradients, optimiser
state and allocator slack; CUDA: ``torch.cuda.max_memory_allocated``); the process's peak RSS;
and, for ``--floor`` stages (default ``jnf/joint``), the matmul floor of a step
(``bench_floor.py``) and step time / floor, from epochs and floor rounds interleaved.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import benchlib
import torch

JNF_STAGES = ("jnf/projectors", "jnf/joint", "jnf/gaussian", "jnf/flow", "jnf/dcca")
ENTRIES = JNF_STAGES + tuple(benchlib.MLP_MODELS)
DEFAULT = JNF_STAGES + ("mopoe", "mvae")


def build(entry: str, device: str, samples: int):
    """Model, stage parts, training config and data of ``entry``.

    Returns:
        ``(model, module, bound, prepare, train_cfg, data)``.

    Raises:
        LookupError: when the model's module or class does not exist (yet).
    """
    from repro.config import TrainConfig

    if entry.startswith("jnf/"):
        cfg, build_models = benchlib.load_jnf_toy("full")
        variant = entry.split("/")[1]
        models = build_models(cfg)
        name = {"projectors": "dcca", "joint": "flow"}.get(variant, variant)
        stage = variant if variant in ("projectors", "joint") else "unimodal"
        preset = {"projectors": cfg.dcca_train, "joint": cfg.joint_train}.get(
            stage, cfg.unimodal_train
        )
        model = models[name]
        size = cfg.data.size
    else:
        from repro.config import TrainConfig

        model = benchlib.build_mlp_model(entry)
        stage, preset, size = benchlib.first_stage(model), TrainConfig(), 32
    model.to(device)
    module, bound, prepare = benchlib.stage_parts(model, stage)
    train_cfg = dataclasses.replace(
        preset, epochs=1, progress=False, checkpoint=False, restore_best=False
    )
    data = benchlib.to_device(benchlib.toy_data(samples, seed=0, size=size), device)
    return model, module, bound, prepare, train_cfg, data


def child(entry: str, device: str, threads: int, samples: int, repeats: int, floor: bool) -> dict:
    """Measure one entry in this process; returns the row."""
    from bench_floor import FloorTimer, linear_gemms

    from repro.train import fit

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, module, bound, prepare, train_cfg, data = build(entry, device, samples)
    tic = time.perf_counter()
    data = prepare(data)
    benchlib.synchronize(device)
    prepare_s = time.perf_counter() - tic
    generator = torch.Generator().manual_seed(0)
    steps = math.ceil(samples / train_cfg.batch_size)

    def epoch() -> float:
        benchlib.synchronize(device)
        tic = time.perf_counter()
        fit(module, bound, data, train_cfg, generator=generator)
        benchlib.synchronize(device)
        return time.perf_counter() - tic

    rss_before = benchlib.current_rss_mb()
    benchlib.reset_peak_rss()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    epoch()  # warm-up
    seconds = [epoch() for _ in range(repeats)]
    if device == "cuda":
        train_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        train_mb = benchlib.peak_hwm_mb() - rss_before
    row = {
        "entry": entry,
        "device": device,
        "threads": threads,
        "batch_size": train_cfg.batch_size,
        "optimizer": train_cfg.optimizer,
        "samples_per_s": samples / benchlib.median(seconds),
        "samples_per_s_all": [samples / s for s in seconds],
        "ms_per_step": benchlib.median(seconds) / steps * 1e3,
        "train_mb": train_mb,
        "process_peak_rss_mb": benchlib.peak_rss_mb(),
        "prepare_s": prepare_s,
        "params": benchlib.n_params(model),
        "trainable": sum(p.numel() for p in benchlib.trainable(module)),
    }
    if floor:
        batch = benchlib.sample_batches(data, train_cfg.batch_size, 1)[0]
        timer = FloorTimer(linear_gemms(model, lambda: bound(batch).mean()), device)
        rounds = benchlib.interleave({"epoch": epoch, "floor": timer.round}, repeats + 2)
        step_s = benchlib.median(rounds["epoch"]) / steps
        row.update(
            {
                "floor_ms": timer.floor() * 1e3,
                "floor_step_ms": step_s * 1e3,
                "floor_ratio": step_s / timer.floor(),
                "gflop_per_step": timer.flops / 1e9,
            }
        )
    return row


GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul")


def profile(entry: str, device: str, threads: int, steps: int, rows: int) -> None:
    """Print torch.profiler's top ops by self CPU time, per step, over ``steps`` bare steps.

    The bare step is what ``fit`` does per batch (zero_grad, loss, backward, the optimiser that
    ``fit`` builds) without the data shuffling. Besides the top ops, the self time is split
    into matrix products, the optimiser's kernels and everything else.
    """
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, module, bound, prepare, train_cfg, data = build(entry, device, 4 * 256)
    data = prepare(data)
    batches = benchlib.sample_batches(data, train_cfg.batch_size, 4)
    optimizer = benchlib.our_optimizer(benchlib.trainable(module), lr=train_cfg.lr)
    step = benchlib.make_step(lambda b: -bound(b).mean(), optimizer)
    per_step = min(benchlib.timed_steps(step, batches, 3, device) for _ in range(3))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        benchlib.timed_steps(step, batches, steps, device)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) / 1e3 / steps  # ms per step
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    print(
        f"\n{entry}: batch {train_cfg.batch_size}, {threads} thread(s), {device}, "
        f"{benchlib.optimizer_kind(optimizer)}; best unprofiled step {per_step * 1e3:.1f} ms, "
        f"profiled self CPU {total:.1f} ms/step ({steps} steps)"
    )
    groups = {"matmul": 0.0, "optimizer": 0.0, "other": 0.0}
    for e in events:
        ms = e.self_cpu_time_total / 1e3 / steps
        if e.key in GEMM_OPS:
            groups["matmul"] += ms
        elif "adam" in e.key.lower() or e.key.startswith("Optimizer."):
            groups["optimizer"] += ms
        else:
            groups["other"] += ms
    print("  " + ", ".join(f"{k} {v:.1f} ms ({v / total:.0%})" for k, v in groups.items()))
    print(f"  {'op':44s}{'ms/step':>9s}{'share':>7s}{'calls/step':>11s}")
    for e in events[:rows]:
        ms = e.self_cpu_time_total / 1e3 / steps
        print(f"  {e.key[:44]:44s}{ms:9.2f}{ms / total:7.1%}{e.count / steps:11.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run every entry in a child process per thread count and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=list(DEFAULT), choices=ENTRIES)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--samples", type=int, default=5120, help="pairs per timed epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs")
    parser.add_argument(
        "--floor", nargs="*", default=["jnf/joint"], help="entries that get the floor ratio"
    )
    parser.add_argument("--profile", nargs="+", choices=ENTRIES, help="profile these instead")
    parser.add_argument("--profile-steps", type=int, default=5)
    parser.add_argument("--profile-rows", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", choices=ENTRIES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.child:
        try:
            row = child(
                args.child,
                args.device,
                args.threads[0],
                args.samples,
                args.repeats,
                args.child in args.floor,
            )
        except LookupError as err:
            row = {"entry": args.child, "missing": str(err)}
        print(json.dumps(row))
        return 0
    state = benchlib.repo_state()
    if args.profile:
        print(benchlib.describe_state(state))
        for entry in args.profile:
            for threads in args.threads:
                try:
                    profile(entry, args.device, threads, args.profile_steps, args.profile_rows)
                except LookupError as err:
                    print(f"{entry}: {err}")
        return 0
    print(f"Training throughput, device={args.device}, {args.samples} pairs per epoch")
    print(benchlib.describe_state(state))
    print(
        f"{'model/stage':16s}{'thr':>4s}{'batch':>6s}{'samples/s':>11s}{'ms/step':>9s}"
        f"{'train MB':>10s}{'RSS MB':>8s}{'floor ms':>10s}{'/floor':>8s}{'prepare s':>11s}"
    )
    rows = []
    for threads in args.threads:
        for entry in args.only:
            cmd = [sys.executable, __file__, "--child", entry, "--device", args.device]
            cmd += ["--threads", str(threads), "--samples", str(args.samples)]
            cmd += ["--repeats", str(args.repeats), "--floor", *args.floor]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{entry:16s}{threads:4d}  {tail}")
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            if "missing" in row:
                print(f"{entry:16s}{threads:4d}  {row['missing']}")
                continue
            rows.append(row)
            floor = (
                f"{row['floor_ms']:10.1f}{row['floor_ratio']:8.2f}"
                if "floor_ms" in row
                else f"{'-':>10s}{'-':>8s}"
            )
            print(
                f"{entry:16s}{threads:4d}{row['batch_size']:6d}{row['samples_per_s']:11.0f}"
                f"{row['ms_per_step']:9.1f}{row['train_mb']:10.1f}"
                f"{row['process_peak_rss_mb']:8.0f}{floor}{row['prepare_s']:11.2f}",
                flush=True,
            )
    print(
        "median of timed epochs through repro.train.fit; /floor: step time over the matmul "
        "floor, epochs and floor rounds interleaved"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"state": state, "device": args.device, "samples": args.samples, "rows": rows}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
