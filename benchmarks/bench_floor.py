"""The matmul + convolution floor of a training step, and how far a step is from it.

The floor of a step is the time its dense matrix products and convolutions alone take on this
CPU. Forward hooks on the model record every layer the step's forward runs (a layer run twice
appears twice):

* every ``nn.Linear`` (``zuko``/``pythae`` masked linears included) as a ``(M x in) @ (in x
  out)`` product, ``M`` = batch rows (times any leading sample dimensions), expanded into the
  GEMMs of forward + backward:

  - forward ``Y = X W^T``: ``2 M in out`` FLOPs, always;
  - input gradient ``dX = dY W``: ``2 M in out``, only when the layer's input requires grad
    (not for a first layer reading the data, nor inside ``no_grad``);
  - weight gradient ``dW = dY^T X``: ``2 M in out``, only when the weight requires grad (not
    for frozen layers);

* every ``nn.Conv{1,2,3}d`` / ``nn.ConvTranspose{1,2,3}d`` as the two ATen calls that autograd
  makes for it: the forward ``aten::convolution`` at the layer's input shape, weight, stride,
  padding and memory format, and, when anything needs a gradient, one
  ``aten::convolution_backward`` with the output mask the step uses (input gradient when the
  input requires grad, weight and bias gradients when they do). FLOPs: ``2 N Cout
  prod(out) Cin/g prod(k)`` for a convolution (``2 N Cin prod(in) Cout/g prod(k)`` for a
  transposed one) per forward, input gradient and weight gradient.

Each distinct GEMM is then timed with ``torch.mm`` on tensors of exactly those shapes and
layouts (the transposed views autograd uses), each distinct convolution call with the ATen
operator itself on fresh tensors of those shapes, at the requested thread count; the floor is
the sum of the medians (over rounds) of the best of a few calls. ``step / floor`` is the factor
a step loses to everything else: elementwise ops (activations, likelihoods), distributions, the
optimiser, memory traffic, Python and dispatch. Functional matmuls (``torch.matmul`` outside a
layer, e.g. DCCA's covariances) are not counted, so for such steps the floor is a lower bound.

    python benchmarks/bench_floor.py                     # JNF toy stages, 1 and 2 threads
    python benchmarks/bench_floor.py --threads 1 --stages joint --show-gemms
    python benchmarks/bench_floor.py --threads 1 --stages mopoe mvae    # MLP models
    python benchmarks/bench_floor.py --arch conv --preset quick --threads 1   # conv models of
                                                         # jnf_coherence_fid, every stage

Step times here come from the bare per-step loop (zero_grad, loss, backward, the optimiser that
``repro.train.fit`` builds, distribution argument validation off as in ``fit``), measured in
rounds interleaved with the floor's rounds; medians.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
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
    def shape(self) -> tuple:
        """What the timing depends on: kind and the three sizes."""
        return (self.kind, self.rows, self.fan_in, self.fan_out)

    def describe(self) -> str:
        """``"gemm fwd 256 x 1024 -> 512"``."""
        return f"gemm {self.kind:6s}{self.rows:7d} x {self.fan_in:5d} -> {self.fan_out:5d}"


@dataclass(frozen=True)
class Conv:
    """One convolution call of a step (forward, or the backward autograd runs for it).

    Attributes:
        layer: the conv module's qualified name.
        kind: ``"fwd"`` (``aten::convolution``) or ``"bwd"`` (``aten::convolution_backward``).
        transposed: a transposed convolution.
        input_shape: ``(N, Cin, *spatial)`` of the layer's input (leading dims folded into N).
        weight_shape: the weight's shape.
        bias: whether the layer has a bias.
        stride, padding, dilation, output_padding, groups: the layer's settings.
        channels_last: the input's memory format.
        mask: ``(input grad, weight grad, bias grad)`` of a ``"bwd"`` call.
    """

    layer: str
    kind: str
    transposed: bool
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    bias: bool
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    output_padding: tuple[int, ...]
    groups: int
    channels_last: bool
    mask: tuple[bool, bool, bool] = (False, False, False)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """``(N, Cout, *spatial)`` of the call's forward output."""
        n, spatial = self.input_shape[0], self.input_shape[2:]
        k = self.weight_shape[2:]
        out = []
        for i, size in enumerate(spatial):
            d, s, p = self.dilation[i], self.stride[i], self.padding[i]
            if self.transposed:
                out.append((size - 1) * s - 2 * p + d * (k[i] - 1) + self.output_padding[i] + 1)
            else:
                out.append((size + 2 * p - d * (k[i] - 1) - 1) // s + 1)
        c_out = self.weight_shape[1] * self.groups if self.transposed else self.weight_shape[0]
        return (n, c_out, *out)

    @property
    def pass_flops(self) -> int:
        """FLOPs of one pass (the forward; the input and the weight gradient cost the same)."""
        k = math.prod(self.weight_shape[2:])
        if self.transposed:  # every input pixel scatters a Cout/g x k patch
            c_in, c_out_g = self.input_shape[1], self.weight_shape[1]
            return 2 * self.input_shape[0] * math.prod(self.input_shape[2:]) * c_in * c_out_g * k
        c_out, c_in_g = self.weight_shape[0], self.weight_shape[1]
        out = self.output_shape
        return 2 * out[0] * math.prod(out[2:]) * c_out * c_in_g * k

    @property
    def flops(self) -> int:
        """Forward: one pass; backward: one pass per gradient computed (input, weight)."""
        if self.kind == "fwd":
            return self.pass_flops
        return self.pass_flops * (int(self.mask[0]) + int(self.mask[1]))

    @property
    def shape(self) -> tuple:
        """What the timing depends on (everything but the layer name)."""
        return (
            "conv", self.kind, self.transposed, self.input_shape, self.weight_shape, self.bias,
            self.stride, self.padding, self.dilation, self.output_padding, self.groups,
            self.channels_last, self.mask,
        )  # fmt: skip

    def describe(self) -> str:
        """``"convT bwd (128, 64, 7, 7) -> (128, 32, 14, 14) k4 s2 [dX dW db]"``."""
        name = "convT" if self.transposed else "conv"
        grads = [g for g, on in zip(("dX", "dW", "db"), self.mask, strict=True) if on]
        extra = f" [{' '.join(grads)}]" if self.kind == "bwd" else ""
        fmt = " NHWC" if self.channels_last else ""
        return (
            f"{name:5s}{self.kind:4s}{self.input_shape} -> {self.output_shape} "
            f"k{'x'.join(map(str, self.weight_shape[2:]))} s{self.stride[0]}{fmt}{extra}"
        )


Op = Gemm | Conv


def _conv_calls(name: str, module: nn.Module, x: Tensor) -> list[Conv]:
    """The forward (and, when gradients flow, backward) call of one conv layer's run."""
    spatial = len(module.weight.shape) - 2
    lead = x.shape[: x.dim() - spatial - 1]
    shape = (math.prod(lead), *x.shape[x.dim() - spatial - 1 :])
    if x.dim() == spatial + 1:  # unbatched input
        shape = (1, *x.shape)
    last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    last = last and not x.is_contiguous()
    padding = module.padding
    if isinstance(padding, str):  # "same"/"valid": the equivalent explicit padding
        k = module.weight.shape[2:]
        if padding == "valid":
            padding = (0,) * spatial
        else:
            padding = tuple(module.dilation[i] * (k[i] - 1) // 2 for i in range(spatial))
    common = {
        "layer": name,
        "transposed": bool(module.transposed),
        "input_shape": tuple(shape),
        "weight_shape": tuple(module.weight.shape),
        "bias": module.bias is not None,
        "stride": tuple(module.stride),
        "padding": tuple(padding),
        "dilation": tuple(module.dilation),
        "output_padding": tuple(module.output_padding),
        "groups": int(module.groups),
        "channels_last": last,
    }
    calls = [Conv(kind="fwd", **common)]
    if torch.is_grad_enabled():
        bias_grad = module.bias is not None and module.bias.requires_grad
        mask = (bool(x.requires_grad), bool(module.weight.requires_grad), bias_grad)
        if any(mask):
            calls.append(Conv(kind="bwd", mask=mask, **common))
    return calls


CONV_TYPES = (nn.modules.conv._ConvNd,)


def floor_ops(model: nn.Module, forward: Callable[[], object]) -> list[Op]:
    """The GEMMs and convolution calls of forward + backward of ``forward()``, from hooks.

    Args:
        model: the module holding every ``nn.Linear`` and conv layer the step may run.
        forward: runs the step's forward (e.g. computes the loss); its result is discarded.

    Returns:
        The ops in execution order (backward ones right after each forward one).
    """
    ops: list[Op] = []
    hooks = []

    def linear_hook(name: str) -> Callable:
        def record(module: nn.Linear, inputs: tuple, _output: Tensor) -> None:
            x = inputs[0]
            fan_in, fan_out = module.in_features, module.out_features
            rows = x.numel() // fan_in
            ops.append(Gemm(name, "fwd", rows, fan_in, fan_out))
            if not torch.is_grad_enabled():
                return
            if x.requires_grad:
                ops.append(Gemm(name, "dgrad", rows, fan_in, fan_out))
            if module.weight.requires_grad:
                ops.append(Gemm(name, "wgrad", rows, fan_in, fan_out))

        return record

    def conv_hook(name: str) -> Callable:
        def record(module: nn.Module, inputs: tuple, _output: Tensor) -> None:
            ops.extend(_conv_calls(name, module, inputs[0]))

        return record

    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear_hook(name)))
        elif isinstance(module, CONV_TYPES):
            hooks.append(module.register_forward_hook(conv_hook(name)))
    try:
        forward()
    finally:
        for h in hooks:
            h.remove()
    return ops


def linear_gemms(model: nn.Module, forward: Callable[[], object]) -> list[Gemm]:
    """The GEMMs alone of :func:`floor_ops` (the linear layers; no convolutions)."""
    return [op for op in floor_ops(model, forward) if isinstance(op, Gemm)]


class FloorTimer:
    """Times the GEMMs and convolution calls of a step alone, one round at a time.

    Operands are drawn afresh before each timed call and freed after it, so the timer holds
    no memory between rounds (a large conv step's operands would otherwise add to the
    training memory that ``bench_models.py`` measures around it).

    Args:
        ops: from :func:`floor_ops` (or :func:`linear_gemms`).
        device: where to run them.
        dtype: element type (the model's).
    """

    def __init__(
        self, ops: Sequence[Op], device: torch.device | str = "cpu", dtype=torch.float32
    ) -> None:
        self.ops = list(ops)
        self.gemms = [op for op in self.ops if isinstance(op, Gemm)]
        self.convs = [op for op in self.ops if isinstance(op, Conv)]
        self.device = torch.device(device)
        self.dtype = dtype
        first: dict[tuple, Op] = {}
        for op in self.ops:
            first.setdefault(op.shape, op)
        self.shapes = sorted(first, key=repr)
        self.example = first
        self.count = {s: sum(op.shape == s for op in self.ops) for s in self.shapes}
        self.times: dict[tuple, list[float]] = {s: [] for s in self.shapes}
        self.round()  # warm-up (MKL / oneDNN / cuBLAS handles, page faults)
        self.times = {s: [] for s in self.shapes}

    @property
    def flops(self) -> int:
        """Total FLOPs of one step's GEMMs and convolutions."""
        return sum(op.flops for op in self.ops)

    @property
    def conv_flops(self) -> int:
        """The convolutions' share of :attr:`flops`."""
        return sum(op.flops for op in self.convs)

    def _rand(self, shape: Sequence[int], channels_last: bool = False) -> Tensor:
        t = torch.empty(tuple(shape), dtype=self.dtype, device=self.device).normal_()
        return t.to(memory_format=torch.channels_last) if channels_last else t

    def _call(self, op: Op) -> Callable[[], object]:
        """A closure running ``op`` once on fresh operands of its shapes."""
        if isinstance(op, Gemm):
            m, k, n = op.rows, op.fan_in, op.fan_out
            if op.kind == "fwd":  # X (M, in) @ W^T, W (out, in)
                a, b = self._rand((m, k)), self._rand((n, k)).t()
            elif op.kind == "dgrad":  # dY (M, out) @ W (out, in)
                a, b = self._rand((m, n)), self._rand((n, k))
            else:  # dY^T (out, M) @ X (M, in)
                a, b = self._rand((m, n)).t(), self._rand((m, k))
            return lambda: torch.mm(a, b)
        x = self._rand(op.input_shape, op.channels_last)
        w = self._rand(op.weight_shape, op.channels_last)
        settings = (op.stride, op.padding, op.dilation, op.transposed, op.output_padding)
        if op.kind == "fwd":
            b = self._rand(op.weight_shape[1:2] if op.transposed else op.weight_shape[:1])
            b = b if op.bias else None
            return lambda: torch.ops.aten.convolution(x, w, b, *settings, op.groups)
        gy = self._rand(op.output_shape, op.channels_last)
        bias_sizes = [op.output_shape[1]] if op.bias else None
        mask = list(op.mask)
        return lambda: torch.ops.aten.convolution_backward(
            gy, x, w, bias_sizes, *settings, op.groups, mask
        )

    def round(self, inner: int = 3) -> float:
        """Time every distinct op (``inner`` calls each, best kept); return the round's floor."""
        total = 0.0
        for shape in self.shapes:
            run = self._call(self.example[shape])
            best = float("inf")
            for _ in range(inner):
                benchlib.synchronize(self.device)
                tic = benchlib.clock()
                run()
                benchlib.synchronize(self.device)
                best = min(best, benchlib.clock() - tic)
            del run
            self.times[shape].append(best)
            total += best * self.count[shape]
        return total

    def floor(self) -> float:
        """Seconds: sum over the step's ops of each one's median time over the rounds."""
        return sum(benchlib.median(self.times[s]) * self.count[s] for s in self.shapes)

    def conv_floor(self) -> float:
        """The convolutions' share of :meth:`floor`."""
        return sum(
            benchlib.median(self.times[s]) * self.count[s]
            for s in self.shapes
            if isinstance(self.example[s], Conv)
        )

    def table(self) -> list[dict]:
        """Per distinct op: what it is, count, median ms, GFLOP/s."""
        rows = []
        for s in self.shapes:
            op = self.example[s]
            t = benchlib.median(self.times[s])
            row = {
                "op": "gemm" if isinstance(op, Gemm) else "conv",
                "kind": op.kind,
                "describe": op.describe(),
                "count": self.count[s],
                "ms": t * 1e3,
                "gflops": op.flops / t / 1e9 if t > 0 else float("nan"),
            }
            if isinstance(op, Gemm):
                row.update({"rows": op.rows, "in": op.fan_in, "out": op.fan_out})
            rows.append(row)
        return rows


STAGES = ("joint", "flow", "gaussian", "dcca", *benchlib.MLP_MODELS)
CONV_STAGES = tuple(benchlib.CONV_ENTRIES)


def stage_setup(
    name: str,
    batch_size: int | None,
    samples: int,
    device: str,
    preset: str = "quick",
):
    """Our model stage ``name``: the model, step loss, optimiser and prepared batches.

    ``joint`` is JNF toy stage 1 (the joint VAE), ``flow``/``gaussian``/``dcca`` the stage-2
    posteriors of that variant (joint model frozen); the lower-case others are the MLP models of
    ``benchlib.MLP_MODELS`` (their single stage); the entries of ``benchlib.CONV_ENTRIES``
    (``"JNF/joint"``, ``"MoPoE"``, ...) are the conv models of ``jnf_coherence_fid`` at
    ``preset``, with the stage's batch size and optimiser unless ``batch_size`` is given.

    Returns:
        ``(model, loss_fn, optimizer, batches, batch_size)``.
    """
    from repro.train import _optimizer

    train_cfg = None
    if name in benchlib.CONV_ENTRIES:
        model, stage, train_cfg = benchlib.build_conv_stage(name, preset)
        model.to(device)
        batch_size = batch_size or train_cfg.batch_size
        data = benchlib.polymnist_data(max(samples, batch_size), seed=0)
    elif name in benchlib.MLP_MODELS:
        model = benchlib.build_mlp_model(name).to(device)
        stage = benchlib.first_stage(model)
        data = benchlib.toy_data(samples, seed=0, size=32)
    else:
        cfg, build_models = benchlib.load_jnf_toy("full")
        model = build_models(cfg)["flow" if name == "joint" else name].to(device)
        stage = "joint" if name == "joint" else "unimodal"
        data = benchlib.toy_data(samples, seed=0, size=cfg.data.size)
    batch_size = batch_size or 256
    module, bound, prepare = benchlib.stage_parts(model, stage)
    data = prepare(benchlib.to_device(data, device))
    count = max(1, min(8, len(next(iter(data.values()))) // batch_size))
    batches = benchlib.sample_batches(data, batch_size, count)

    def loss_fn(batch: dict[str, Tensor]) -> Tensor:
        return -bound(batch).mean()

    params = benchlib.trainable(module)
    if train_cfg is not None:  # the stage's own optimiser (Adam, or RMSprop for DCCA)
        optimizer = _optimizer(params, train_cfg)
    else:
        optimizer = benchlib.our_optimizer(params, lr=1e-3)
    return model, loss_fn, optimizer, batches, batch_size


def steps_per_round(step_s: float, seconds: float, cap: int = 20) -> int:
    """Steps in a timed round of about ``seconds`` (at least 1)."""
    return max(1, min(cap, round(seconds / max(step_s, 1e-9))))


def measure(
    name: str,
    threads: int,
    batch_size: int | None,
    repeats: int,
    steps: int | None,
    device: str,
    preset: str = "quick",
    round_s: float = 1.0,
) -> dict:
    """Step time (bare loop) and floor of one model stage, in interleaved rounds.

    ``steps=None`` picks the steps per round from a warm-up step so that a round takes about
    ``round_s`` seconds.
    """
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model, loss_fn, optimizer, batches, batch_size = stage_setup(
        name, batch_size, 2048, device, preset
    )
    ops = floor_ops(model, lambda: loss_fn(batches[0]))
    timer = FloorTimer(ops, device)
    step = benchlib.fit_step(loss_fn, optimizer)
    warm = benchlib.timed_steps(step, batches, 2, device)  # warm-up
    steps = steps or steps_per_round(warm, round_s)
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
        "preset": preset if name in benchlib.CONV_ENTRIES else None,
        "threads": threads,
        "device": device,
        "batch_size": batch_size,
        "optimizer": benchlib.optimizer_kind(optimizer),
        "steps_per_round": steps,
        "step_ms": step_s * 1e3,
        "step_ms_all": [t * 1e3 for t in rounds["step"]],
        "floor_ms": floor_s * 1e3,
        "conv_floor_ms": timer.conv_floor() * 1e3,
        "ratio": step_s / floor_s,
        "gflop": timer.flops / 1e9,
        "conv_gflop": timer.conv_flops / 1e9,
        "gemm_gflops": timer.flops / floor_s / 1e9,
        "n_gemms": len(timer.gemms),
        "n_convs": len(timer.convs),
        "gemms": timer.table(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print step time, floor and their ratio for the chosen stages."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stages", nargs="+", choices=STAGES + CONV_STAGES,
        help="default: joint flow gaussian (--arch mlp), every conv entry (--arch conv)",
    )  # fmt: skip
    parser.add_argument(
        "--arch", default="mlp", choices=("mlp", "conv"),
        help="conv: the models of jnf_coherence_fid (benchlib.CONV_ENTRIES) at --preset",
    )  # fmt: skip
    parser.add_argument("--preset", default="quick", choices=("quick", "full"))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--batch-size", type=int, help="default: 256 (MLP), the stage's batch size (conv)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds")
    parser.add_argument(
        "--steps", type=int, help="steps per timed round (default: about --round-s seconds)"
    )
    parser.add_argument("--round-s", type=float, default=1.0, help="seconds per step round")
    parser.add_argument("--show-gemms", action="store_true", help="print every distinct op")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--clock", default="wall", choices=benchlib.CLOCKS,
        help="wall: elapsed time; cpu: this process's CPU time (on shared cores, 1 thread)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.device == "cuda" and args.clock == "cpu":
        print("--clock cpu measures the CPU, not the GPU: use --clock wall", file=sys.stderr)
        return 2
    benchlib.set_clock(args.clock)
    if args.stages is None:
        args.stages = list(CONV_STAGES) if args.arch == "conv" else list(STAGES[:3])
    state = benchlib.repo_state()
    print(f"Matmul + convolution floor of a training step ({args.clock} clock)")
    print(benchlib.describe_state(state))
    if any(s in benchlib.CONV_ENTRIES for s in args.stages):
        cfg, _ = benchlib.load_coherence_fid(args.preset)
        print(f"jnf_coherence_fid {args.preset}: {benchlib.describe_conv_preset(cfg)}")
    print(
        f"{'stage':20s}{'thr':>4s}{'batch':>6s}{'GFLOP':>8s}{'conv':>6s}{'ops':>6s}"
        f"{'floor ms':>10s}{'conv ms':>9s}{'GF/s':>7s}{'step ms':>9s}{'step/floor':>12s}"
    )
    results = []
    for threads in args.threads:
        for name in args.stages:
            try:
                r = measure(
                    name, threads, args.batch_size, args.repeats, args.steps, args.device,
                    args.preset, args.round_s,
                )  # fmt: skip
            except LookupError as err:
                print(f"{name:20s}{threads:4d}  {err}")
                continue
            results.append(r)
            share = r["conv_gflop"] / r["gflop"] if r["gflop"] else 0.0
            print(
                f"{name:20s}{threads:4d}{r['batch_size']:6d}{r['gflop']:8.2f}{share:6.0%}"
                f"{r['n_gemms'] + r['n_convs']:6d}{r['floor_ms']:10.1f}"
                f"{r['conv_floor_ms']:9.1f}{r['gemm_gflops']:7.0f}{r['step_ms']:9.1f}"
                f"{r['ratio']:12.2f}",
                flush=True,
            )
            if args.show_gemms:
                for g in r["gemms"]:
                    print(
                        f"    {g['describe']:60s} x{g['count']:<3d}{g['ms']:9.3f} ms"
                        f"{g['gflops']:8.1f} GF/s"
                    )
    print(
        f"optimizer: {results[0]['optimizer'] if results else '-'}; medians of rounds; conv: "
        "the convolutions' share of the FLOPs; GF/s: FLOPs over the floor"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"state": state, "clock": args.clock, "results": results}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
