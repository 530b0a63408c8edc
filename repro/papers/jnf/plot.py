"""The ``jnf`` paper's figures, drawn from the results of its figure modules."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from repro import explore
from repro.papers.jnf.toy_posteriors import VARIANTS, ToyResult
from repro.plotting import frame, set_style, tile

if TYPE_CHECKING:  # each figure's plot imports only what it draws
    from repro.papers.jnf.coherence_fid import CoherenceFIDResult

__all__ = ["toy_posteriors", "coherence_fid"]

VARIANT_TITLES = {
    "gaussian": "(b) Gaussian $q(z|x_1)$",
    "flow": "(c) Normalizing flow $q(z|x_1)$",
    "dcca": "(d) DCCA: $q(z|g_1(x_1))$",
}


def toy_posteriors(result: ToyResult) -> Figure:
    """Fig. 2 of arXiv 2502.03952 from a :class:`repro.papers.jnf.toy_posteriors.ToyResult`.

    (a) example pairs; (b)-(d) the joint-posterior means of test pairs coloured by
    ``(2 class - 1) * square size``, the density of ``q(z|x_1)`` for the reference large full
    square (contours at 10, 20, 40, 60, 80 % of its maximum), and circles generated from it,
    framed in red when they are not a clean disc or ring (IoU below the threshold).

    Args:
        result: the experiment result.

    Returns:
        The figure.
    """
    set_style()
    # Two rows of two panels: about 1000 px wide, the width of a notebook's output area, so
    # labels and generated circles are readable without zooming.
    fig = plt.figure(figsize=(10, 8.6), layout="constrained")
    grid = fig.add_gridspec(2, 4, width_ratios=[1.6, 0.7, 1.6, 0.7])
    slots = [(0, 2), (1, 0), (1, 2)]  # (row, first column) of panels (b), (c), (d)
    ax = fig.add_subplot(grid[0, 0:2])
    pairs = torch.stack([result.samples["square"][:, 0], result.samples["circle"][:, 0]], 1)
    ax.imshow(tile(pairs.flatten(0, 1)[:16], ncols=4), cmap="gray", vmin=0, vmax=1)
    ax.set_title("(a) pairs (square | circle)")
    ax.axis("off")
    lim = float(result.grid.abs().max())
    extent = (-lim, lim)
    levels = [0.1, 0.2, 0.4, 0.6, 0.8]
    size = result.reference.shape[-1]
    scatter, main_axes = None, [ax]
    for k, name in enumerate(VARIANTS):
        row, col = slots[k]
        ax = fig.add_subplot(grid[row, col])
        scatter = ax.scatter(
            result.embedding[:, 0], result.embedding[:, 1], c=result.colour, cmap="RdBu",
            vmin=-0.9, vmax=0.9, s=7, linewidths=0,
        )  # fmt: skip
        density = result.density[name].numpy()
        ax.contour(
            result.grid.numpy(), result.grid.numpy(), density,
            levels=[f * density.max() for f in levels], colors="black", linewidths=0.9,
        )  # fmt: skip
        ax.set(xlim=extent, ylim=extent, aspect="equal", title=VARIANT_TITLES[name])
        ax.set_xlabel("$z_1$")
        ax.set_ylabel("$z_2$")
        inset = ax.inset_axes([0.02, 0.76, 0.22, 0.22])
        inset.imshow(1 - result.reference[0].numpy(), cmap="gray", vmin=0, vmax=1)
        inset.set_xticks([])
        inset.set_yticks([])
        m = result.metrics[name]
        ax.text(
            0.98, 0.02,
            f"coherence {m['class_coherence']:.2f}\nlog q {m['heldout_log_q']:.2f}\n"
            f"unrealistic {m['unrealistic_rate']:.2f}",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=10,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
        )  # fmt: skip
        gen_ax = fig.add_subplot(grid[row, col + 1])
        gen_ax.imshow(tile(result.shown[name], ncols=4), cmap="gray", vmin=0, vmax=1)
        flags = result.shown_realistic[name].tolist()
        for i, ok in enumerate(flags):
            if not ok:
                frame(gen_ax, i, 4, size)
        bad = len(flags) - sum(flags)
        gen_ax.set_title(
            f"circles from $x_1$\n({bad} of {len(flags)} unrealistic"
            + (", framed red)" if bad else ")"),
            fontsize=10,
        )
        gen_ax.axis("off")
        main_axes += [ax, gen_ax]
    bar = fig.colorbar(scatter, ax=main_axes, shrink=0.6, pad=0.01, aspect=40)
    # colour = (2 class - 1) * size, size in [0.3, 0.9]: two scales of size, one per class
    bar.set_ticks([-0.9, -0.6, -0.3, 0.3, 0.6, 0.9])
    bar.set_ticklabels(["0.9", "0.6", "0.3", "0.3", "0.6", "0.9"])
    bar.ax.axhline(0, color="black", linewidth=1)
    bar.set_label("square size:  empty squares (red, below)  |  full squares (blue, above)")
    fig.suptitle(
        f"Toy squares/circles, {result.cfg.profile} profile, seed {result.cfg.seed}", fontsize=11
    )
    return fig


def coherence_fid(
    result: CoherenceFIDResult,
    reference: Mapping[str, Sequence[float]] | None = None,
    reference_label: str = "MultiVae benchmark",
    dataset: str = "PolyMNIST",
) -> Figure:
    """Fig. 4 of arXiv 2502.03952 from a :class:`repro.papers.jnf.coherence_fid.CoherenceFIDResult`.

    Left: conditional coherence against the number of input modalities (mean over seeds as a
    line, each seed as a dot), with the MultiVae benchmark's values as faint dashed lines (a
    sanity band: latent 512, 800 epochs). Right: one-input coherence against the FD of ``m0``
    generated from one other modality, one point per model and seed; the axis names the FD
    actually computed (Inception FID or the labelled proxy) and the data. A figure whose
    models all sit at chance says so. The ``coord`` figures draw the same panels.

    Args:
        result: the experiment result.
        reference: published coherences by number of inputs, per model, drawn dashed
            (default: :data:`repro.papers.jnf.coherence_fid.MULTIVAE_BENCHMARK`).
        reference_label: the legend entry of the dashed lines.
        dataset: the data's name in the title.

    Returns:
        The figure.
    """
    import seaborn as sns

    from repro.papers.jnf.coherence_fid import CHANCE, MULTIVAE_BENCHMARK, at_chance, short_source

    reference = MULTIVAE_BENCHMARK if reference is None else reference
    set_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained")
    colours = dict(
        zip(result.per_seed, sns.color_palette("tab10", len(result.per_seed)), strict=True)
    )
    sizes = [1]
    for name, runs in result.per_seed.items():
        sizes = sorted({k for r in runs.values() for k in r["by_size"]})
        mean = [result.metrics[name][f"coherence_{k}_inputs"] for k in sizes]
        left.plot(sizes, mean, marker="o", color=colours[name], label=name)
        for r in runs.values():
            left.scatter(sizes, [r["by_size"][k] for k in sizes], color=colours[name], s=10,
                         alpha=0.5)  # fmt: skip
        if name in reference:
            band = reference[name][: len(sizes)]
            left.plot(sizes, band, color=colours[name], linestyle="--", linewidth=1, alpha=0.45)
        right.scatter(
            [r["fd"] for r in runs.values()], [r["by_size"][1] for r in runs.values()],
            color=colours[name], s=40, label=name, edgecolors="black", linewidths=0.4,
        )  # fmt: skip
    for ax in (left, right):  # the same coherence scale on both panels, chance marked
        ax.axhline(CHANCE, color="grey", linestyle=":", linewidth=1)
        ax.set_ylim(0, 1.02)
    left.text(sizes[0], CHANCE + 0.01, "chance", color="grey", fontsize=9)
    left.plot([], [], color="grey", linestyle="--", linewidth=1, label=reference_label)
    left.set(
        xlabel="number of input modalities", ylabel="coherence (balanced accuracy)",
        title="(a) coherence by number of inputs",
    )  # fmt: skip
    left.set_xticks(sizes)
    right.set(
        xlabel=f"{result.fd_label}\n$m_0$ from one other modality (lower is better)",
        ylabel="coherence, one input", title="(b) coherence vs generation quality",
    )  # fmt: skip
    left.legend(fontsize=9, ncols=2, loc="lower right")
    right.legend(fontsize=9, ncols=2, loc="best")
    if at_chance(result.metrics, result.details.get("n_test", result.cfg.data.n_test)):
        for ax in (left, right):
            ax.text(0.5, 0.5, "every model at chance level", transform=ax.transAxes,
                    ha="center", color="firebrick", fontsize=11)  # fmt: skip
    fig.suptitle(
        f"{dataset} ({short_source(result.source)}, {result.cfg.profile} profile); "
        f"seeds {list(result.cfg.seeds)}",
        fontsize=10,
    )
    return fig


def toy_explorer(result: ToyResult) -> tuple[Callable[..., Figure], dict[str, explore.Choice]]:
    """The explorer of ``jnf_toy_posteriors``: pick a test square, see each posterior for it.

    For the chosen square (class and radius: the test square nearest to it), one panel per
    posterior (Gaussian, flow, DCCA): the true-posterior region, i.e. the joint-posterior
    means of the scatter's test pairs whose square has that class and about that size
    (coloured; the other pairs grey), the contours of ``q(z|x_1)`` for that square, and under
    it the circles generated from it, framed green when realistic and red when not. Drawn from
    ``result.squares`` (:func:`repro.papers.jnf.toy_posteriors.explore_indices`), nothing is
    retrained; a result without them says so.

    Args:
        result: the experiment result.

    Returns:
        ``(update, choices)`` for :func:`repro.explore.show`: ``update(label=1, radius=...)``
        returns a figure of about 9 x 3.5 inches.
    """
    sq = result.squares
    radii = sorted({round(float(r), 2) for r in sq["radius"]}) if sq else [0.0]
    choices = {
        "label": explore.Choice("class", options=[1, 0], names={1: "full", 0: "empty"}),
        "radius": explore.Choice(
            "radius", options=radii, default=radii[-1], names={r: f"{r:.2f}" for r in radii}
        ),
    }

    def update(label: int = 1, radius: float = radii[-1]) -> Figure:
        set_style()
        if not sq:
            fig, ax = plt.subplots(figsize=(9, 3.5))
            ax.text(0.5, 0.5, "this result has no explorer panels (ToyResult.squares is empty):\n"
                    "run toy_posteriors.run(cfg) with this version of the code",
                    ha="center", va="center", fontsize=11, transform=ax.transAxes)  # fmt: skip
            ax.axis("off")
            return fig
        gap = (sq["radius"] - radius).abs() + 10.0 * (sq["label"] != label)
        i = int(torch.argmin(gap))
        r_i, full = float(sq["radius"][i]), int(sq["label"][i]) == 1
        size = sq["images"].shape[-1]
        fig = plt.figure(figsize=(9, 3.5), layout="constrained")
        grid = fig.add_gridspec(2, 4, width_ratios=[0.55, 1, 1, 1], height_ratios=[3.2, 1])
        ax = fig.add_subplot(grid[0, 0])
        ax.imshow(1 - sq["images"][i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"square $x_1$\ntest #{int(sq['index'][i])}", fontsize=9)
        ax.axis("off")
        note = fig.add_subplot(grid[1, 0])
        note.axis("off")
        note.text(0, 0.5, f"{'full' if full else 'empty'}, size {r_i:.2f}", fontsize=9,
                  va="center")  # fmt: skip
        cls = (result.colour > 0) == full
        near = cls & ((result.colour.abs() - r_i).abs() <= 0.05)
        emb = result.embedding
        g = sq["grid"].numpy()
        lim = float(sq["grid"].abs().max())
        for k, name in enumerate(VARIANTS):
            ax = fig.add_subplot(grid[0, k + 1])
            ax.scatter(emb[~near, 0], emb[~near, 1], c="lightgrey", s=4, linewidths=0)
            ax.scatter(emb[near, 0], emb[near, 1], c="tab:blue" if full else "tab:red", s=9,
                       linewidths=0, label=f"true region ({int(near.sum())} pairs)")  # fmt: skip
            density = sq[name]["density"][i].numpy()
            if density.max() > 0:
                ax.contour(g, g, density, levels=[f * density.max() for f in (0.1, 0.4, 0.8)],
                           colors="black", linewidths=0.8)  # fmt: skip
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
            ax.set_title(VARIANT_TITLES[name][4:], fontsize=9)
            ax.tick_params(labelsize=9)
            if k == 0:
                ax.legend(fontsize=9, loc="lower left", handletextpad=0.2, borderpad=0.2)
            gen_ax = fig.add_subplot(grid[1, k + 1])
            circles = sq[name]["circles"][i][:, 0].float()
            ok = sq[name]["realistic"][i].tolist()
            gen_ax.imshow(tile(circles, ncols=len(ok)), cmap="gray", vmin=0, vmax=1)
            for j, good in enumerate(ok):
                frame(gen_ax, j, len(ok), size)
                if good:
                    gen_ax.patches[-1].set_edgecolor("tab:green")
            gen_ax.set_title(f"circles: {sum(ok)} of {len(ok)} realistic (green)", fontsize=9)
            gen_ax.axis("off")
        return fig

    return update, choices


__all__ += ["toy_explorer"]


def _subset_names(modalities: Sequence[str]) -> list[str]:
    """The conditioning subsets of sizes ``1..M-1`` as ``"m0,m2"`` strings, by size."""
    from itertools import combinations

    return [",".join(s) for k in range(1, len(modalities)) for s in combinations(modalities, k)]


def _message(ax: plt.Axes, text: str) -> None:
    """Write ``text`` in the middle of an empty panel (a view without its cached inputs)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10,
            color="firebrick", transform=ax.transAxes)  # fmt: skip
    ax.axis("off")


def conditional_explorer(
    result: CoherenceFIDResult, n_tuples: int = 20
) -> tuple[Callable[..., Figure], dict[str, explore.Choice]]:
    """The explorer of the PolyMNIST benchmark: one model's conditional samples of a test tuple.

    Pick a trained model (and seed), a conditioning subset and one of the first ``n_tuples``
    test tuples: the row shows the tuple's observed inputs and, for every other modality, one
    conditional sample decoded from ``q(z|x_S)``, with the digit its classifier predicts above
    it (green: the tuple's digit, red: another); beside it, that model's coherence from the
    chosen subset to each target (bars) and its mean at ``|S|`` inputs (dashed), from the
    run's numbers. The models and classifiers are read from the cache
    (:func:`repro.papers.jnf.coherence_fid.load_trained`,
    :func:`repro.papers.jnf.coherence_fid.cached_classifiers`), never trained; when one is
    absent the view says so in text. The samples use a generator seeded by the tuple's index,
    so a view is reproducible. The ``coord`` cross-coherence figure uses it too.

    Args:
        result: the result of :func:`repro.papers.jnf.coherence_fid.run_benchmark`.
        n_tuples: how many test tuples the slider offers (the first ones).

    Returns:
        ``(update, choices)`` for :func:`repro.explore.show`:
        ``update(model=..., seed=..., inputs="m0", index=0)`` returns a figure of about
        12 x 3 inches.
    """
    from repro.data.polymnist import MODALITIES
    from repro.papers.jnf import coherence_fid as bench
    from repro.runtime import default_dtype

    cfg = result.cfg
    names = list(result.per_seed)
    seeds = sorted({s for runs in result.per_seed.values() for s in runs})
    modalities = list(MODALITIES)
    options = _subset_names(modalities)
    n_shown = max(1, min(n_tuples, int(result.details.get("n_test", n_tuples))))
    loaded: dict[str, object] = {}  # the test tuples, the classifiers and the last model

    def inputs_of() -> tuple[object, object]:
        if "test" not in loaded:
            with default_dtype(torch.float32):
                _, _, test = bench._data(cfg)  # the run's draw (seeded: the same tuples)
            loaded["test"] = test.subset(torch.arange(min(n_shown, len(test))))
            loaded["classifiers"] = bench.cached_classifiers(cfg)
        return loaded["test"], loaded["classifiers"]

    def model_of(name: str, seed: int) -> object:
        key = f"{name}/{seed}"
        if loaded.get("key") != key:
            try:
                loaded["model"] = bench.load_trained(cfg, name, seed)
            except FileNotFoundError:
                loaded["model"] = None
            loaded["key"] = key
        return loaded["model"]

    def update(
        model: str = names[0], seed: int = seeds[0], inputs: str = options[0], index: int = 0
    ) -> Figure:
        subset = inputs.split(",")
        bad = sorted(set(subset) - set(modalities))
        if bad:
            raise ValueError(f"inputs {inputs!r} names unknown modalities {bad}")
        targets = [m for m in modalities if m not in subset]
        set_style()
        fig = plt.figure(figsize=(12, 3.0), layout="constrained")
        grid = fig.add_gridspec(1, len(modalities) + 1, width_ratios=[1] * len(modalities) + [2.4])
        bars = fig.add_subplot(grid[0, len(modalities)])  # fig.axes[0]; the images follow
        run = result.per_seed.get(model, {}).get(seed)
        if run is None:
            _message(bars, f"no result for {model} seed {seed} in this run")
        else:
            values = [run["per_subset"].get(f"{'+'.join(subset)}->{m}", float("nan"))
                      for m in targets]  # fmt: skip
            bars.bar(targets, values, color="tab:blue")
            mean = run["by_size"].get(len(subset))
            if mean is not None:
                bars.axhline(mean, color="black", linestyle="--", linewidth=1,
                             label=f"mean, {len(subset)} input(s): {mean:.2f}")  # fmt: skip
                bars.legend(fontsize=8, loc="upper right")
            bars.axhline(bench.CHANCE, color="grey", linestyle=":", linewidth=1)
            bars.set(ylim=(0, 1.02), ylabel="coherence", title=f"coherence from {inputs}")
        test, classifiers = inputs_of()
        index = min(max(int(index), 0), len(test) - 1)
        digit = int(test.label[index])
        vae = model_of(model, seed) if run is not None else None
        missing = []
        if vae is None:
            missing.append(f"no trained {model} seed {seed} in the cache")
        if classifiers is None:
            missing.append("no digit classifiers in the cache")
        if missing:
            text = "; ".join(missing) + ":\nrun the figure first with the same cache"
            _message(fig.add_subplot(grid[0, : len(modalities)]), text)
        else:
            image_axes = [fig.add_subplot(grid[0, k]) for k in range(len(modalities))]
            x = {m: test.x[m][index : index + 1] for m in subset}
            g = torch.Generator().manual_seed(index)  # fixed: the same view every time
            with torch.no_grad(), default_dtype(torch.float32):
                out = vae.generate(x, subset, n=1, generator=g, **bench.sampler_kwargs(cfg, vae))
                shown = {m: test.x[m][index] if m in subset else out[m][0, 0] for m in modalities}
                pred = {m: int(classifiers[m](shown[m][None]).argmax(-1)) for m in targets}
            for ax, m in zip(image_axes, modalities, strict=True):
                ax.imshow(shown[m].clamp(0, 1).permute(1, 2, 0).numpy())
                ax.set_xticks([])
                ax.set_yticks([])
                if m in subset:
                    ax.set_title(f"{m} (input)", fontsize=10)
                else:
                    ok = pred[m] == digit
                    ax.set_title(f"{m}: {pred[m]}", fontsize=10,
                                 color="tab:green" if ok else "firebrick")  # fmt: skip
        fig.suptitle(
            f"{model} seed {seed}: test tuple {index} (digit {digit}), inputs {inputs}; samples "
            "of the other modalities, the classifier's digit above each",
            fontsize=10,
        )
        return fig

    choices = {
        "model": explore.Choice("model", options=names),
        "seed": explore.Choice("seed", options=seeds),
        "inputs": explore.Choice("inputs", options=options),
        "index": explore.Choice("test tuple", low=0, high=n_shown - 1),
    }
    return update, choices


__all__ += ["conditional_explorer"]
