"""HMC mixing on linear-Gaussian subset posteriors, where the exact posterior is known.

Model (``tests/linear_gaussian.py``): ``z ~ N(0, I_D)``, ``x_j = a_j z + b_j + noise`` with
diagonal ``a_j``, for ``M`` modalities. The experts are the exact unimodal posteriors
``q_j = p(z | x_j)`` (diagonal Gaussians), the HMC target is the JNF subset density

    log p~(z | x_S) = sum_{j in S} log q_j(z) - (|S| - 1) log N(z; 0, I),

whose normalised form is exactly ``p(z | x_S)``. In each setting all chains condition on the
same data point ``x ~ p(x)`` (so that their mean estimates that posterior's mean; averaging over
data points would hide the bias, since every posterior mean averages to the prior mean), and
start from the JNF mixture-of-experts draw (``j in S`` uniform, ``z0 ~ q_j``). Chain states
are standardised by the exact posterior, ``u = (z - mean_S) / std_S``, so that across chains
``u ~ N(0, I)`` once mixed. Two geometries (``--geometries``): ``random`` (posterior stds
within a factor ~3 across dims) and ``wide`` (within a factor ~15, like a VAE latent with
strongly and weakly informed dims); see :func:`make_model`.

Reported per setting and checkpoint (``grads``: gradient evaluations so far, warm-up included,
not counting the <= 20 one-leapfrog trials of the initial step-size search): acceptance rate
(post-warm-up, mean over chains), median step size, ``|bias|`` of the chain mean of ``u`` in
posterior-std units (max and mean over dims), and the variance ratio ``var(u)`` (min and max
over dims). The Monte Carlo standard error of a bias is ``1/sqrt(chains)``; the printed 95 %
noise floors are what perfectly mixed chains would reach. A final table gives the worst case
over geometries and subsets.

    python benchmarks/hmc_mixing.py                            # 2000 chains, D in {2, 16, 128}
    python benchmarks/hmc_mixing.py --chains 4000 --dims 2 16 --threads 2
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repro.samplers import JNF_REFERENCE, RECOMMENDED, hmc  # noqa: E402
from tests.linear_gaussian import LinearGaussian  # noqa: E402


def make_model(
    modalities: int, dim: int, geometry: str, generator: torch.Generator
) -> LinearGaussian:
    """Draw a linear-Gaussian model.

    Args:
        modalities: number of modalities ``M``.
        dim: latent dimension ``D``.
        geometry: ``"random"``: ``LinearGaussian.random`` (per-modality precisions
            ``a^2/psi`` in about ``[0.2, 20]``, posterior stds within a factor ~3 of each
            other); ``"wide"``: per-modality, per-dim precisions log-uniform in
            ``[0.05, 100]`` (posterior stds from ~0.06 to ~0.95, like a VAE latent with
            strongly and weakly informed dims).
        generator: source of the parameters.

    Returns:
        The model, modalities named ``m0, m1, ...``.
    """
    names = tuple(f"m{i}" for i in range(modalities))
    if geometry == "random":
        return LinearGaussian.random(names, dim=dim, generator=generator)
    if geometry != "wide":
        raise ValueError(f"unknown geometry {geometry!r}")
    low, high = math.log(0.05), math.log(100.0)
    a, b, psi = {}, {}, {}
    for m in names:
        precision = torch.exp(low + (high - low) * torch.rand(dim, generator=generator))
        a[m] = precision.sqrt()
        b[m] = torch.randn(dim, generator=generator)
        psi[m] = torch.ones(dim)
    return LinearGaussian(a, b, psi)


def make_problem(
    modalities: int,
    size: int,
    dim: int,
    chains: int,
    generator: torch.Generator,
    geometry: str = "random",
):
    """Build a linear-Gaussian subset posterior and the JNF mixture-of-experts initial states.

    Args:
        modalities: number of modalities ``M``.
        size: subset size ``|S|`` (the first ``|S|`` modalities).
        dim: latent dimension ``D``.
        chains: number of chains, all conditioned on the same data point ``x ~ p(x)``.
        generator: source of the model, data and initial-state noise.
        geometry: see :func:`make_model`.

    Returns:
        ``(log_prob, z0, mean, std)``: the unnormalised target, ``(chains, D)`` initial states
        and the exact posterior mean and std, both ``(chains, D)``.
    """
    model = make_model(modalities, dim, geometry, generator)
    names = model.modalities
    _, x = model.sample(1, generator)
    x = {m: v.expand(chains, dim) for m, v in x.items()}
    subset = names[:size]
    experts = [model.posterior(x, [m]).base_dist for m in subset]
    locs = torch.stack([q.loc for q in experts])
    scales = torch.stack([q.scale for q in experts])
    exponent = size - 1

    def log_prob(z):
        expert = -0.5 * ((z - locs) / scales).pow(2).sum(-1).sum(0)
        return expert + 0.5 * exponent * z.pow(2).sum(-1)

    pick = torch.randint(size, (chains,), generator=generator)
    rows = torch.arange(chains)
    z0 = locs[pick, rows] + scales[pick, rows] * torch.randn(chains, dim, generator=generator)
    exact = model.posterior(x, list(subset)).base_dist
    return log_prob, z0, exact.loc, exact.scale


def mixing_stats(samples, mean, std) -> dict:
    """Bias and variance ratio of chain states against the exact posterior.

    Args:
        samples: ``(chains, D)`` states, one per chain.
        mean: ``(chains, D)`` exact posterior means.
        std: ``(chains, D)`` exact posterior standard deviations.

    Returns:
        ``max_bias``, ``mean_bias`` (``|mean(u)|`` over dims, in posterior-std units),
        ``var_min`` and ``var_max`` (``var(u)`` over dims), with ``u = (z - mean) / std``.
    """
    u = (samples - mean) / std
    bias = u.mean(0).abs()
    var = u.var(0)
    return dict(
        max_bias=float(bias.max()),
        mean_bias=float(bias.mean()),
        var_min=float(var.min()),
        var_max=float(var.max()),
    )


def run_setting(name, settings, problem, checkpoints, generator) -> list[dict]:
    """Run one HMC setting on one problem and evaluate it at the given post-warm-up steps.

    Args:
        name: label of the setting.
        settings: keyword arguments of :func:`repro.samplers.hmc`.
        problem: ``(log_prob, z0, mean, std)`` from :func:`make_problem`.
        checkpoints: post-warm-up step counts at which to evaluate (clipped to ``n_steps``).
        generator: HMC noise.

    Returns:
        One row per checkpoint.
    """
    log_prob, z0, mean, std = problem
    start = time.perf_counter()
    result = hmc(log_prob, z0, generator=generator, **settings)
    seconds = time.perf_counter() - start
    warm = settings.get("adapt_steps", 0)
    leap = settings["n_leapfrog"]
    rows = []
    for t in sorted({min(c, settings["n_steps"]) for c in checkpoints}):
        row = dict(setting=name, steps=t, grads=(warm + t) * leap)
        row.update(mixing_stats(result.samples[t - 1], mean, std))
        row["accept"] = float(result.acceptance.mean())
        row["eps"] = float(result.step_size.median())
        row["seconds"] = seconds
        rows.append(row)
    return rows


def noise_floor(chains: int, dim: int, level: float = 0.95) -> tuple[float, float]:
    """Monte Carlo noise of the statistics for perfectly mixed, independent chains.

    Args:
        chains: number of chains.
        dim: number of dims the max / min is taken over.
        level: probability of staying below the floor.

    Returns:
        ``(bias, var)``: the ``level`` quantile of ``max |b|`` over ``dim`` dims, and of
        ``max |var(u) - 1|`` (normal approximation, standard error ``sqrt(2 / (chains - 1))``).
    """
    q = float(torch.special.ndtri(torch.tensor((1.0 + level ** (1.0 / dim)) / 2.0)))
    return q / math.sqrt(chains), q * math.sqrt(2.0 / (chains - 1))


def main(argv=None) -> None:
    """Print the mixing table for the reference and the recommended settings.

    Args:
        argv: command-line arguments (``sys.argv`` when ``None``).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chains", type=int, default=2000)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 16, 128])
    parser.add_argument("--modalities", type=int, nargs="+", default=[3, 4, 5])
    parser.add_argument("--geometries", nargs="+", default=["random", "wide"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument(
        "--checkpoints", type=int, nargs="+", default=[10, 50, 100], help="post-warm-up steps"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(getattr(torch, args.dtype))
    settings = {"reference": JNF_REFERENCE, "recommended": RECOMMENDED}
    print(f"chains={args.chains}, standard error of a bias {args.chains**-0.5:.3f} sigma")
    for dim in args.dims:
        b, v = noise_floor(args.chains, dim)
        print(f"  95% noise floor at D={dim}: max|b| {b:.3f}, max|var - 1| {v:.3f}")
    for name, kwargs in settings.items():
        print(f"{name}: {kwargs}")
    header = (
        f"{'geometry':<8} {'D':>4} {'M':>2} {'|S|':>3} {'setting':<12} {'steps':>5} {'grads':>5} "
        f"{'accept':>6} {'eps':>7} {'max|b|':>7} {'mean|b|':>7} {'var_min':>7} {'var_max':>7} "
        f"{'sec':>5}"
    )
    print(header)
    print("-" * len(header))
    total = time.perf_counter()
    worst: dict = {}
    for geometry in args.geometries:
        for dim in args.dims:
            for modalities in args.modalities:
                for size in range(2, modalities):
                    seed = args.seed * 100_000 + dim * 100 + modalities * 10 + size
                    problem = make_problem(
                        modalities,
                        size,
                        dim,
                        args.chains,
                        torch.Generator().manual_seed(seed),
                        geometry,
                    )
                    for name, kwargs in settings.items():
                        rows = run_setting(
                            name,
                            kwargs,
                            problem,
                            args.checkpoints,
                            torch.Generator().manual_seed(seed + 1),
                        )
                        for r in rows:
                            print(
                                f"{geometry:<8} {dim:>4} {modalities:>2} {size:>3} "
                                f"{r['setting']:<12} {r['steps']:>5} {r['grads']:>5} "
                                f"{r['accept']:>6.3f} {r['eps']:>7.4f} {r['max_bias']:>7.3f} "
                                f"{r['mean_bias']:>7.3f} {r['var_min']:>7.3f} "
                                f"{r['var_max']:>7.3f} {r['seconds']:>5.1f}",
                                flush=True,
                            )
                        final = rows[-1]
                        key = (dim, name, final["steps"], final["grads"])
                        w = worst.setdefault(key, dict(b=0.0, v=0.0, lo=1.0, hi=0.0))
                        w["b"] = max(w["b"], final["max_bias"])
                        w["v"] = max(w["v"], abs(final["var_min"] - 1), abs(final["var_max"] - 1))
                        w["lo"] = min(w["lo"], final["accept"])
                        w["hi"] = max(w["hi"], final["accept"])
    print("\nworst case over geometries and subsets, at the last step:")
    print(
        f"{'D':>4} {'setting':<12} {'steps':>5} {'grads':>5} {'max|b|':>7} {'max|v-1|':>8} accept"
    )
    for (dim, name, steps, grads), w in worst.items():
        print(
            f"{dim:>4} {name:<12} {steps:>5} {grads:>5} {w['b']:>7.3f} {w['v']:>8.3f} "
            f"{w['lo']:.2f}-{w['hi']:.2f}"
        )
    print(f"total {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
