"""Training throughput, peak memory and floor ratio of every model and training stage.

Each (model/stage, device, threads) runs in its own process, so that peak memory is that
stage's, through the package's own loop ``repro.train.fit``: the stage is prepared with
``model.prepare_stage(stage)`` (its ``Stage.prepare`` applied to the data once, timed apart),
one warm-up epoch, then ``--repeats`` timed epochs, interleaved with the rounds of the step's
floor (``bench_floor.py``) where it is measured.

    python benchmarks/bench_models.py                       # MLP, CPU, 1 and 2 threads, ~3 min
    python benchmarks/bench_models.py --threads 1 --only jnf/joint jnf/flow
    python benchmarks/bench_models.py --arch conv --preset quick      # jnf_coherence_fid models
    python benchmarks/bench_models.py --arch conv --preset full --only MoPoE JNF/joint
    python benchmarks/bench_models.py --device cuda         # on a GPU machine
    python benchmarks/bench_models.py --profile jnf/flow    # torch.profiler, top ops
    python benchmarks/bench_models.py --arch conv --profile MoPoE --preset full
    python benchmarks/bench_models.py --json runs/bench/models_cpu.json

**MLP entries** (``--arch mlp``, the default): the JNF toy at paper size (512-unit MLPs on 32x32
toy pairs, latent 2; batch 256, DCCA projectors 800): ``jnf/projectors`` (JNF-DCCA's DCCA
stage), ``jnf/joint`` (stage 1, the joint VAE), ``jnf/gaussian``, ``jnf/flow``, ``jnf/dcca``
(stage 2, unimodal posteriors on the frozen joint model); and MLP models on the same pairs
(encoders ``1024-512`` + Gaussian heads, decoders ``16-512-1024``, Bernoulli, latent 16,
batch 256): ``mopoe`` (MultiVae's objective: one subset per sample, in chunks), ``mvae``
(default), ``mopoe-all`` (every subset decoded for every sample), ``mvtcae``, ``crmvae`` (on
request). Epochs of ``--samples`` pairs; the floor for ``--floor`` entries (default
``jnf/joint``).

**Conv entries** (``--arch conv``): every model and training stage of ``jnf_coherence_fid``
(``repro/papers/jnf/coherence_fid.py``: ``build_model(name, cfg)`` with ``cfg =
settings.get("coherence_fid", --preset)``, read at run time, so the preset's current conv
encoders/decoders, latent size and batch sizes are what is measured), on PolyMNIST (the stand-in
when the real data is absent): ``JNF/joint``, ``JNF/unimodal``, ``JNF-DCCA/projectors``,
``JNF-DCCA/joint``, ``JNF-DCCA/unimodal``, ``JMVAE``, ``MoPoE``, ``MVTCAE``, ``MMVAE``, ``MVAE``,
``CRMVAE``, each with its stage's ``TrainConfig`` (batch size, optimiser). An epoch has as many
steps as take about ``--epoch-s`` seconds (2 to 16, from a first short epoch), and every entry
gets the floor.

Reported: samples/s (median over the timed epochs) and ms per step; training memory (CPU:
peak RSS during training minus the RSS just before it, i.e. activations, gradients, optimiser
state and allocator slack; CUDA: ``torch.cuda.max_memory_allocated``); the process's peak RSS;
and, where measured, the matmul + convolution floor of a step (``bench_floor.py``) and step
time / floor, from the same timed epochs (median epoch / steps) and floor rounds interleaved.
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
CONV_ENTRIES = tuple(benchlib.CONV_ENTRIES)


def build(entry: str, device: str, samples: int, preset: str = "quick"):
    """Model, stage parts, training config and data of ``entry``.

    Returns:
        ``(model, module, bound, prepare, train_cfg, data)``.

    Raises:
        LookupError: when the model's module or class does not exist (yet).
    """
    from repro.config import TrainConfig

    if entry in benchlib.CONV_ENTRIES:
        model, stage, preset_cfg = benchlib.build_conv_stage(entry, preset)
        data = benchlib.polymnist_data(samples, seed=0)
    elif entry.startswith("jnf/"):
        cfg, build_models = benchlib.load_jnf_toy("full")
        variant = entry.split("/")[1]
        models = build_models(cfg)
        name = {"projectors": "dcca", "joint": "flow"}.get(variant, variant)
        stage = variant if variant in ("projectors", "joint") else "unimodal"
        preset_cfg = {"projectors": cfg.dcca_train, "joint": cfg.joint_train}.get(
            stage, cfg.unimodal_train
        )
        model = models[name]
        data = benchlib.toy_data(samples, seed=0, size=cfg.data.size)
    else:
        model = benchlib.build_mlp_model(entry)
        stage, preset_cfg = benchlib.first_stage(model), TrainConfig()
        data = benchlib.toy_data(samples, seed=0, size=32)
    model.to(device)
    module, bound, prepare = benchlib.stage_parts(model, stage)
    train_cfg = dataclasses.replace(
        preset_cfg, epochs=1, progress=False, checkpoint=False, restore_best=False
    )
    return model, module, bound, prepare, train_cfg, benchlib.to_device(data, device)


def child(
    entry: str,
    device: str,
    threads: int,
    samples: int,
    repeats: int,
    floor: bool,
    preset: str = "quick",
    epoch_s: float | None = None,
) -> dict:
    """Measure one entry in this process; returns the row.

    With ``epoch_s`` (conv entries), the epoch length is chosen from a first 2-step epoch so
    that an epoch takes about ``epoch_s`` seconds (2 to 16 steps); ``samples`` is then only
    the size of the pool the epochs are cut from.
    """
    from bench_floor import FloorTimer, floor_ops

    from repro.train import fit

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, module, bound, prepare, train_cfg, data = build(entry, device, samples, preset)
    tic = time.perf_counter()
    data = prepare(data)
    benchlib.synchronize(device)
    prepare_s = time.perf_counter() - tic
    generator = torch.Generator().manual_seed(0)
    batch_size = train_cfg.batch_size
    pool = data

    def cut(n: int) -> dict:
        return {k: v[:n] for k, v in pool.items()}

    def epoch() -> float:
        benchlib.synchronize(device)
        tic = benchlib.clock()
        fit(module, bound, data, train_cfg, generator=generator)
        benchlib.synchronize(device)
        return benchlib.clock() - tic

    rss_before = benchlib.current_rss_mb()
    benchlib.reset_peak_rss()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if epoch_s is not None:  # a 2-step epoch gives the step time, hence the epoch length
        data = cut(2 * batch_size)
        probe = epoch() / 2
        steps = max(2, min(16, round(epoch_s / probe)))
        data = cut(steps * batch_size)
    n = len(next(iter(data.values())))
    steps = math.ceil(n / batch_size)
    epoch()  # warm-up
    timer = None
    if floor:
        batch = benchlib.sample_batches(data, batch_size, 1)[0]
        timer = FloorTimer(floor_ops(model, lambda: bound(batch).mean()), device)
        rounds = benchlib.interleave({"epoch": epoch, "floor": timer.round}, repeats)
        seconds = rounds["epoch"]
    else:
        seconds = [epoch() for _ in range(repeats)]
    if device == "cuda":
        train_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        train_mb = benchlib.peak_hwm_mb() - rss_before
    row = {
        "entry": entry,
        "preset": preset if entry in benchlib.CONV_ENTRIES else None,
        "device": device,
        "threads": threads,
        "batch_size": batch_size,
        "optimizer": train_cfg.optimizer,
        "samples": n,
        "steps_per_epoch": steps,
        "samples_per_s": n / benchlib.median(seconds),
        "samples_per_s_all": [n / s for s in seconds],
        "ms_per_step": benchlib.median(seconds) / steps * 1e3,
        "train_mb": train_mb,
        "process_peak_rss_mb": benchlib.peak_rss_mb(),
        "prepare_s": prepare_s,
        "params": benchlib.n_params(model),
        "trainable": sum(p.numel() for p in benchlib.trainable(module)),
    }
    if timer is not None:
        step_s = benchlib.median(seconds) / steps
        row.update(
            {
                "floor_ms": timer.floor() * 1e3,
                "conv_floor_ms": timer.conv_floor() * 1e3,
                "floor_step_ms": step_s * 1e3,
                "floor_ratio": step_s / timer.floor(),
                "gflop_per_step": timer.flops / 1e9,
                "conv_gflop_per_step": timer.conv_flops / 1e9,
            }
        )
    return row


GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul")
CONV_OPS = (
    "aten::convolution",
    "aten::_convolution",
    "aten::convolution_backward",
    "aten::mkldnn_convolution",
    "aten::slow_conv_transpose2d",
    "aten::_slow_conv2d_forward",
    "aten::_slow_conv2d_backward",
)


def profile(
    entry: str, device: str, threads: int, steps: int, rows: int, preset: str = "quick"
) -> None:
    """Print torch.profiler's top ops by self CPU time, per step, over ``steps`` bare steps.

    The bare step is what ``fit`` does per batch (zero_grad, loss, backward, the optimiser that
    ``fit`` builds, distribution validation off) without the data shuffling. Besides the top
    ops, the self time is split into matrix products, convolutions, the optimiser's kernels
    and everything else.
    """
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from repro.train import _optimizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, module, bound, prepare, train_cfg, data = build(entry, device, 2048, preset)
    data = prepare(data)
    batches = benchlib.sample_batches(data, train_cfg.batch_size, 4)
    optimizer = _optimizer(benchlib.trainable(module), train_cfg)
    step = benchlib.fit_step(lambda b: -bound(b).mean(), optimizer)
    per_step = min(benchlib.timed_steps(step, batches, 2, device) for _ in range(2))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        benchlib.timed_steps(step, batches, steps, device)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) / 1e3 / steps  # ms per step
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    where = f"{entry} ({preset})" if entry in benchlib.CONV_ENTRIES else entry
    print(
        f"\n{where}: batch {train_cfg.batch_size}, {threads} thread(s), {device}, "
        f"{benchlib.optimizer_kind(optimizer)}; best unprofiled step {per_step * 1e3:.1f} ms, "
        f"profiled self CPU {total:.1f} ms/step ({steps} steps)"
    )
    groups = {"matmul": 0.0, "conv": 0.0, "optimizer": 0.0, "other": 0.0}
    for e in events:
        ms = e.self_cpu_time_total / 1e3 / steps
        if e.key in GEMM_OPS:
            groups["matmul"] += ms
        elif e.key in CONV_OPS:
            groups["conv"] += ms
        elif "adam" in e.key.lower() or "rmsprop" in e.key.lower() or e.key.startswith("Optim"):
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
    parser.add_argument(
        "--arch", default="mlp", choices=("mlp", "conv"),
        help="mlp: the JNF toy and MLP models; conv: the models of jnf_coherence_fid",
    )  # fmt: skip
    parser.add_argument(
        "--preset", default="quick", choices=("quick", "full"),
        help="--arch conv: the coherence_fid preset whose architecture is measured",
    )  # fmt: skip
    parser.add_argument("--only", nargs="+", choices=ENTRIES + CONV_ENTRIES)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument(
        "--samples", type=int, default=5120,
        help="pairs per timed epoch (MLP); the pool epochs are cut from (conv)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs")
    parser.add_argument(
        "--epoch-s", type=float, default=4.0, help="--arch conv: about this many s per epoch"
    )
    parser.add_argument(
        "--floor", nargs="*",
        help="entries that get the floor ratio (default: jnf/joint; every conv entry)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", nargs="+", choices=ENTRIES + CONV_ENTRIES, help="profile these instead"
    )
    parser.add_argument("--profile-steps", type=int, default=5)
    parser.add_argument("--profile-rows", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--clock", default="wall", choices=benchlib.CLOCKS,
        help="wall: elapsed time; cpu: this process's CPU time (on shared cores, 1 thread)",
    )  # fmt: skip
    parser.add_argument("--child", choices=ENTRIES + CONV_ENTRIES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    conv = args.arch == "conv"
    if args.only is None:
        args.only = list(CONV_ENTRIES if conv else DEFAULT)
    if args.floor is None:
        args.floor = list(CONV_ENTRIES) + ["jnf/joint"]
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.device == "cuda" and args.clock == "cpu":
        print("--clock cpu measures the CPU, not the GPU: use --clock wall", file=sys.stderr)
        return 2
    benchlib.set_clock(args.clock)
    if args.child:
        is_conv = args.child in benchlib.CONV_ENTRIES
        try:
            row = child(
                args.child,
                args.device,
                args.threads[0],
                max(args.samples, 2048) if is_conv else args.samples,
                args.repeats,
                args.child in args.floor,
                args.preset,
                args.epoch_s if is_conv else None,
            )
        except LookupError as err:
            row = {"entry": args.child, "missing": str(err)}
        print(json.dumps(row))
        return 0
    state = benchlib.repo_state()
    conv_cfg = None
    if conv or any(e in benchlib.CONV_ENTRIES for e in (args.profile or args.only)):
        try:
            conv_cfg, _ = benchlib.load_coherence_fid(args.preset)
        except LookupError as err:
            print(err)
    if args.profile:
        print(benchlib.describe_state(state))
        if conv_cfg is not None:
            print(f"jnf_coherence_fid {args.preset}: {benchlib.describe_conv_preset(conv_cfg)}")
        for entry in args.profile:
            for threads in args.threads:
                try:
                    profile(
                        entry, args.device, threads, args.profile_steps, args.profile_rows,
                        args.preset,
                    )  # fmt: skip
                except LookupError as err:
                    print(f"{entry}: {err}")
        return 0
    if conv:
        print(
            f"Training throughput, device={args.device}, about {args.epoch_s:g} s per epoch, "
            f"{args.clock} clock"
        )
    else:
        print(
            f"Training throughput, device={args.device}, {args.samples} pairs per epoch, "
            f"{args.clock} clock"
        )
    print(benchlib.describe_state(state))
    if conv_cfg is not None:
        print(f"jnf_coherence_fid {args.preset}: {benchlib.describe_conv_preset(conv_cfg)}")
    print(
        f"{'model/stage':20s}{'thr':>4s}{'batch':>6s}{'samples/s':>11s}{'ms/step':>9s}"
        f"{'train MB':>10s}{'RSS MB':>8s}{'floor ms':>10s}{'/floor':>8s}{'prepare s':>11s}"
    )
    rows = []
    for threads in args.threads:
        for entry in args.only:
            cmd = [sys.executable, __file__, "--child", entry, "--device", args.device]
            cmd += ["--threads", str(threads), "--samples", str(args.samples)]
            cmd += ["--repeats", str(args.repeats), "--floor", *args.floor]
            cmd += ["--preset", args.preset, "--epoch-s", str(args.epoch_s), "--clock", args.clock]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{entry:20s}{threads:4d}  {tail}")
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            if "missing" in row:
                print(f"{entry:20s}{threads:4d}  {row['missing']}")
                continue
            rows.append(row)
            floor = (
                f"{row['floor_ms']:10.1f}{row['floor_ratio']:8.2f}"
                if "floor_ms" in row
                else f"{'-':>10s}{'-':>8s}"
            )
            print(
                f"{entry:20s}{threads:4d}{row['batch_size']:6d}{row['samples_per_s']:11.0f}"
                f"{row['ms_per_step']:9.1f}{row['train_mb']:10.1f}"
                f"{row['process_peak_rss_mb']:8.0f}{floor}{row['prepare_s']:11.2f}",
                flush=True,
            )
    print(
        "median of timed epochs through repro.train.fit; /floor: step time over the matmul + "
        "convolution floor, epochs and floor rounds interleaved"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "state": state,
            "device": args.device,
            "arch": args.arch,
            "preset": args.preset if conv else None,
            "config": dataclasses.asdict(conv_cfg) if conv_cfg is not None else None,
            "samples": args.samples,
            "clock": args.clock,
            "rows": rows,
        }
        args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
