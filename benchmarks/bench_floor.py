"""The matrix-multiply floor of a training step, and how far a step is from it.

The floor of a step is the time its dense matrix products alone take on this CPU: every
``nn.Linear`` that the step's forward runs (``zuko``/``pythae`` masked linears included) is
recorded with a forward hook as a ``(M x in) @ (in x out)`` product, ``M`` = batch rows (times
any leading sample dimensions), and expanded into the GEMMs of forward + backward:

* forward ``Y = X W^T``: ``2 M in out`` FLOPs, always;
* input gradient ``dX = dY W``: ``2 M in out``, only when the layer's input requires grad (not
  for a first layer reading the data, nor inside ``no_grad``);
* weight gradient ``dW = dY^T X``: ``2 M in out``, only when the weight requires grad (not for
  frozen layers).

Each GEMM is then timed with ``torch.mm`` on tensors of exactly those shapes and layouts (the
transposed views autograd uses), at the requested thread count, and the floor is the sum of the
medians. ``step / floor`` is the factor a step loses to everything else: elementwise ops,
distributions, the optimiser, Python and dispatch. Convolutions and functional matmuls are not
counted (the JNF toy, MoPoE and MVAE MLPs have none), so for other models the floor is a lower
bound.

    python benchmarks/bench_floor.py                     # JNF toy stages, 1 and 2 threads
    python benchmarks/bench_floor.py --threads 1 --stages joint --show-gemms
    python benchmarks/bench_floor.py --threads 1 --stages mopoe mvae    # MLP models

Step times here come from the bare per-step loop (zero_grad, loss, backward, the optimiser that
``repro.train.fit`` builds), measured in rounds interleaved with the floor's rounds; medians.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import benchlib
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Gemm:
    """One matrix product of a step.

    Attributes:
        layer: the ``nn.Linear``'s qualified name (a layer run twice appears twice).
        kind: ``"fwd"`` (``X W^T``), ``"dgrad"`` (``dY W``) or ``"wgrad"`` (``dY^T X``).
        rows: ``M``, the rows of the layer's input (batch times leading dims).
        fan_in: ``in``.
        fan_out: ``out``.
    """

    layer: str
    kind: str
    rows: int
    fan_in: int
    fan_out: int

    @property
    def flops(self) -> int:
        """``2 M in out``."""
        return 2 * self.rows * self.fan_in * self.fan_out

    @property
    def shape(self) -> tuple[str, int, int, int]:
        """What the timing depends on: kind and the three sizes."""
        return (self.kind, self.rows, self.fan_in, self.fan_out)


def linear_gemms(model: nn.Module, forward: Callable[[], object]) -> list[Gemm]:
    """The GEMMs of forward + backward of ``forward()``, from hooks on ``model``'s linears.

    Args:
        model: the module holding every ``nn.Linear`` the step may run.
        forward: runs the step's forward (e.g. computes the loss); its result is discarded.

    Returns:
        The GEMMs in execution order (backward ones after each forward one).
    """
    gemms: list[Gemm] = []
    hooks = []

    def hook(name: str) -> Callable:
        def record(module: nn.Linear, inputs: tuple, _output: Tensor) -> None:
            x = inputs[0]
            fan_in, fan_out = module.in_features, module.out_features
            rows = x.numel() // fan_in
            gemms.append(Gemm(name, "fwd", rows, fan_in, fan_out))
            if not torch.is_grad_enabled():
                return
            if x.requires_grad:
                gemms.append(Gemm(name, "dgrad", rows, fan_in, fan_out))
            if module.weight.requires_grad:
                gemms.append(Gemm(name, "wgrad", rows, fan_in, fan_out))

        return record

    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(hook(name)))
    try:
        forward()
    finally:
        for h in hooks:
            h.remove()
    return gemms


class FloorTimer:
    """Times the GEMMs of a step with ``torch.mm``, one round at a time.

    Args:
        gemms: from :func:`linear_gemms`.
        device: where to run them.
        dtype: element type (the model's).
    """

    def __init__(
        self, gemms: Sequence[Gemm], device: torch.device | str = "cpu", dtype=torch.float32
    ) -> None:
        self.gemms = list(gemms)
        self.device = torch.device(device)
        self.shapes = sorted({g.shape for g in self.gemms})
        self.count = {s: sum(g.shape == s for g in self.gemms) for s in self.shapes}
        gen = torch.Generator().manual_seed(0)
        self.operands: dict[tuple, tuple[Tensor, Tensor]] = {}
        for kind, rows, fan_in, fan_out in self.shapes:

            def rand(*size: int) -> Tensor:
                return torch.randn(*size, generator=gen, dtype=dtype).to(self.device)

            if kind == "fwd":  # X (M, in) @ W^T, W (out, in)
                ops = (rand(rows, fan_in), rand(fan_out, fan_in).t())
            elif kind == "dgrad":  # dY (M, out) @ W (out, in)
                ops = (rand(rows, fan_out), rand(fan_out, fan_in))
            else:  # dY^T (out, M) @ X (M, in)
                ops = (rand(rows, fan_out).t(), rand(rows, fan_in))
            self.operands[(kind, rows, fan_in, fan_out)] = ops
        self.times: dict[tuple, list[float]] = {s: [] for s in self.shapes}
        self.round()  # warm-up (MKL / cuBLAS handles, page faults)
        self.times = {s: [] for s in self.shapes}

    @property
    def flops(self) -> int:
        """Total FLOPs of one step's GEMMs."""
        return sum(g.flops for g in self.gemms)

    def round(self, inner: int = 3) -> float:
        """Time every distinct GEMM (``inner`` calls each, best kept); return the round's floor."""
        total = 0.0
        for shape in self.shapes:
            a, b = self.operands[shape]
            best = float("inf")
            for _ in range(inner):
                benchlib.synchronize(self.device)
                tic = time.perf_counter()
                torch.mm(a, b)
                benchlib.synchronize(self.device)
                best = min(best, time.perf_counter() - tic)
            self.times[shape].append(best)
            total += best * self.count[shape]
        return total

    def floor(self) -> float:
        """Seconds: sum over the step's GEMMs of each one's median time over the rounds."""
        return sum(benchlib.median(self.times[s]) * self.count[s] for s in self.shapes)

    def table(self) -> list[dict]:
        """Per distinct GEMM: sizes, count, median ms, GFLOP/s."""
        rows = []
        for s in self.shapes:
            t = benchlib.median(self.times[s])
            kind, m, k, n = s
            rows.append(
                {
                    "kind": kind,
                    "rows": m,
                    "in": k,
                    "out": n,
                    "count": self.count[s],
                    "ms": t * 1e3,
                    "gflops": 2 * m * k * n / t / 1e9 if t > 0 else float("nan"),
                }
            )
        return rows


STAGES = ("joint", "flow", "gaussian", "dcca", *benchlib.MLP_MODELS)


def stage_setup(name: str, batch_size: int, samples: int, device: str):
    """Our model stage ``name``: the model, step loss, optimiser and prepared batches.

    ``joint`` is JNF toy stage 1 (the joint VAE), ``flow``/``gaussian``/``dcca`` the stage-2
    posteriors of that variant (joint model frozen); the others are the MLP models of
    ``benchlib.MLP_MODELS`` (their single stage).
    """
    if name in benchlib.MLP_MODELS:
        model = benchlib.build_mlp_model(name).to(device)
        stage, size = benchlib.first_stage(model), 32
    else:
        cfg, build_models = benchlib.load_jnf_toy("full")
        model = build_models(cfg)["flow" if name == "joint" else name].to(device)
        stage, size = ("joint" if name == "joint" else "unimodal"), cfg.data.size
    module, bound, prepare = benchlib.stage_parts(model, stage)
    data = benchlib.toy_data(samples, seed=0, size=size)
    data = prepare(benchlib.to_device(data, device))
    batches = benchlib.sample_batches(data, batch_size, max(1, samples // batch_size))

    def loss_fn(batch: dict[str, Tensor]) -> Tensor:
        return -bound(batch).mean()

    optimizer = benchlib.our_optimizer(benchlib.trainable(module), lr=1e-3)
    return model, loss_fn, optimizer, batches


def measure(
    name: str, threads: int, batch_size: int, repeats: int, steps: int, device: str
) -> dict:
    """Step time (bare loop) and floor of one model stage, in interleaved rounds."""
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model, loss_fn, optimizer, batches = stage_setup(name, batch_size, 2048, device)
    gemms = linear_gemms(model, lambda: loss_fn(batches[0]))
    timer = FloorTimer(gemms, device)
    step = benchlib.make_step(loss_fn, optimizer)
    benchlib.timed_steps(step, batches, 3, device)  # warm-up
    rounds = benchlib.interleave(
        {
            "step": lambda: benchlib.timed_steps(step, batches, steps, device),
            "floor": timer.round,
        },
        repeats,
    )
    step_s = benchlib.median(rounds["step"])
    floor_s = timer.floor()
    return {
        "stage": name,
        "threads": threads,
        "device": device,
        "batch_size": batch_size,
        "optimizer": benchlib.optimizer_kind(optimizer),
        "step_ms": step_s * 1e3,
        "step_ms_all": [t * 1e3 for t in rounds["step"]],
        "floor_ms": floor_s * 1e3,
        "ratio": step_s / floor_s,
        "gflop": timer.flops / 1e9,
        "gemm_gflops": timer.flops / floor_s / 1e9,
        "n_gemms": len(gemms),
        "gemms": timer.table(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print step time, floor and their ratio for the chosen stages."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=list(STAGES[:3]), choices=STAGES)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--show-gemms", action="store_true", help="print every distinct GEMM")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: torch sees no CUDA device", file=sys.stderr)
        return 2
    state = benchlib.repo_state()
    print(f"Matmul floor of a training step, batch {args.batch_size}")
    print(benchlib.describe_state(state))
    print(
        f"{'stage':10s}{'thr':>4s}{'GFLOP':>8s}{'GEMMs':>7s}{'floor ms':>10s}"
        f"{'GEMM GF/s':>11s}{'step ms':>9s}{'step/floor':>12s}"
    )
    results = []
    for threads in args.threads:
        for name in args.stages:
            try:
                r = measure(name, threads, args.batch_size, args.repeats, args.steps, args.device)
            except LookupError as err:
                print(f"{name:10s}{threads:4d}  {err}")
                continue
            results.append(r)
            print(
                f"{name:10s}{threads:4d}{r['gflop']:8.2f}{r['n_gemms']:7d}{r['floor_ms']:10.1f}"
                f"{r['gemm_gflops']:11.1f}{r['step_ms']:9.1f}{r['ratio']:12.2f}",
                flush=True,
            )
            if args.show_gemms:
                for g in r["gemms"]:
                    print(
                        f"    {g['kind']:6s} {g['rows']:6d} x {g['in']:5d} -> {g['out']:5d}"
                        f"  x{g['count']:<3d}{g['ms']:9.3f} ms{g['gflops']:8.1f} GF/s"
                    )
    print(f"optimizer: {results[0]['optimizer'] if results else '-'}; medians of rounds")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"state": state, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
