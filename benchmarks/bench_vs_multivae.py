"""repro vs MultiVae 1.0.3: training speed with identical networks, measured side by side.

MultiVae is an optional yardstick, never a dependency of ``repro``. Without it this script says
so, clearly, and still times our side (step and floor; ``--check-mopoe`` is then not run). To
run the comparison, install it in a separate environment, with torch and torchvision pinned (an
unpinned install replaces the CPU torch with a multi-GB CUDA build) and the torchvision
workaround of ``repro.compat`` (every torchvision wheel on the registry is a CUDA build, which
fails to import on the CPU torch without it)::

    python3 -m venv /work/mvae_venv
    /work/mvae_venv/bin/pip install -c constraints.txt multivae==1.0.3 -e .
    /work/mvae_venv/bin/python -m repro.compat install
    /work/mvae_venv/bin/python -c "import torch, multivae; print(torch.__version__)"  # +cpu
    /work/mvae_venv/bin/python benchmarks/bench_vs_multivae.py
    /work/mvae_venv/bin/python benchmarks/bench_vs_multivae.py --arch conv --preset quick
    /work/mvae_venv/bin/python benchmarks/bench_vs_multivae.py --arch conv --preset full

(run from the repository root; ``-e .`` makes that environment see the working tree).

**MLP comparisons** (``--arch mlp``, the default; 2 modalities ``circle``/``square`` of binary
``1 x 32 x 32`` toy images, batch 256, Adam lr 1e-3, 1 thread by default):

* ``jnf/joint``: JNF stage 1, the joint VAE (JNF toy networks: 512-unit MLPs, latent 2, unit-
  variance Normal likelihood on ``sigmoid`` means, beta 0.5). MultiVae: ``JNF.forward`` during
  warm-up epochs.
* ``jnf/flow``: JNF stage 2, MAF posteriors (2 MADE blocks, 3 x 128) fitted to the frozen joint
  posterior. MultiVae: ``JNF.forward`` after warm-up (which still runs the frozen decoders).
* ``jnf/gaussian``: stage 2 with Gaussian posteriors. MultiVae has no such model; it is its
  ``JNF`` with identity flows, i.e. the same code path without the MAF.
* ``mopoe``, ``mvae``: MLP encoders ``1024-512`` + Gaussian heads, decoders ``16-512-1024``,
  latent 16, Bernoulli likelihood, beta 1. MultiVae's ``MVAE`` with ``use_subsampling=True``
  (joint + unimodal ELBOs; ours: ``MVAE``, the same objective for 2 modalities) and ``MoPoE``
  with all subsets, each sample reconstructed from one subset's draw (contiguous chunks of the
  batch) plus the KL averaged over all subsets. Ours (``benchlib.MLP_MODELS["mopoe"]``):
  ``MoPoE(stratified="chunks", chunk_remainder="last", poe_prior_expert="full")``, MultiVae's
  per-sample objective (``--check-mopoe`` measures both on identical weights and noise,
  below); our defaults (``chunk_remainder="random"``, no prior expert) have the same cost and
  estimator but not the same values. ``mopoe-all`` is our default ``stratified="all"`` (every
  subset decoded for every sample, 3x the decoder work) vs the same MultiVae MoPoE: its
  expectation, not its estimator, shown for its cost.

**Conv comparisons** (``--arch conv``): the models of ``jnf_coherence_fid`` that MultiVae has,
built by ``coherence_fid.build_model(name, cfg)`` with ``cfg = settings.get("coherence_fid",
--preset)`` read at run time (5 PolyMNIST modalities of ``3 x 28 x 28``, the preset's conv
encoders/decoders, latent size, likelihood and scale, batch sizes), on PolyMNIST (the
stand-in when the real data is absent): ``JNF/joint`` and ``JNF/unimodal`` (MultiVae's ``JNF``
before and after its warm-up; MAFs of pythae with our MADE sizes), ``JMVAE`` (past the KL
warm-up on both sides), ``MoPoE`` (ours rebuilt on the figure's networks as
``MoPoE(stratified="chunks", chunk_remainder="last", poe_prior_expert="full")``, MultiVae's
estimator, all 31 subsets), ``MVTCAE``, ``MMVAE`` (MultiVae ``prior_and_posterior_dist=
"normal"``, ``learn_prior=False``, ``loss="iwae_looser"``: our MMVAE's stratified IWAE with
the preset's ``K``, ours rebuilt so where the figure trains another estimator). Their
networks are deep copies of ours (our ``ConvEncoder``,
``ConvDecoder`` and ``JointMLPEncoder`` modules, wrapped in pythae's ``BaseEncoder`` /
``BaseDecoder`` / ``BaseJointEncoder``: the same layers, weights and parameter order); the
networks' parameter counts are printed and checked, and the outputs compared before training.

For the MLP comparisons both sides are built from the same sizes; the MultiVae networks are
small mirror modules (pythae ``BaseEncoder``/``BaseDecoder``/``BaseJointEncoder``) that receive
a copy of our weights, and the parameter counts are printed and checked. The MAFs (zuko vs
pythae) have the same layer shapes and parameter counts but different masks, so their weights
are not copied.

Two measurements, each in rounds that alternate the sides (medians of per-round values):

* ``step``: the same bare loop on both sides, ``zero_grad; loss; backward; optimizer.step`` on
  pre-drawn batches (the same samples on both sides). The optimiser is each library's own: ours
  is what ``repro.train.fit`` builds (fused Adam), theirs ``torch.optim.Adam(
  model.parameters())`` as its trainer builds it; ``--same-optimizer`` uses plain
  ``torch.optim.Adam`` on both sides. ``torch.distributions`` argument validation is each
  library's own by default (``--validation each``: off in our step, as ``repro.train.fit``
  switches it off; MultiVae's trainer leaves torch's default, on); ``--validation off`` / ``on``
  sets it for both. MLP rounds have ``--steps`` steps, conv rounds about ``--round-s`` seconds.
* ``epoch`` (MLP by default, conv with ``--epoch-repeats``): each library's own training loop
  for one epoch of ``--samples`` pairs: our
  ``repro.train.fit`` (with the stage's ``prepare`` applied to the data beforehand, its cost
  printed separately) vs MultiVae's ``Trainer.train_step`` (its DataLoader, metrics and
  callbacks included).

``--check-mopoe`` times nothing: it builds both MoPoEs on the same weights, draws the same
latent noise on both sides (MultiVae's ``rsample_from_gaussian`` from the global RNG seeded with
``s``, ours from a ``torch.Generator`` seeded with ``s``), and prints the largest absolute
difference of the per-sample objective ``sum_m log p(x_m|z) - beta KL`` for several batch
sizes, in float64 and float32. MultiVae's per-sample value is rebuilt from its own pieces
(``inference``, ``rsample_from_gaussian``, its decoders and ``recon_log_probs``,
``calc_joint_divergence`` on one row at a time) and checked against the loss of its ``forward``.
It also compares the subset posteriors ``q(z|X_S)`` (MultiVae ``inference(x)['subsets'][S]``)
and one ``encode(x, S)`` draw with ours.

``speed-up`` = their time / our time (median of the per-round ratios). ``floor`` is the
matmul + convolution floor of each side's step (``bench_floor.py``: the GEMMs its linears run
and the convolution calls of its conv layers, each timed alone), measured in the same rounds;
``/fl`` = step time / floor. With identical networks the floors differ only where one side does
more network work for the same objective (e.g. MultiVae's JNF stage 2 still runs the frozen
joint encoder and decoders, our ``mopoe-all`` decodes every subset), so ``their /fl`` bounds the
speed-up any implementation of the same networks can reach.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import json
import logging
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import benchlib
import torch
from bench_floor import FloorTimer, floor_ops
from torch import Tensor, nn

MODALITIES = ("circle", "square")
COMPARISONS = ("jnf/joint", "jnf/flow", "jnf/gaussian", "mopoe", "mvae", "mopoe-all")


def multivae_api() -> SimpleNamespace | None:
    """Import MultiVae and define the mirror networks, or return ``None`` if it is absent."""
    try:
        import multivae
        from multivae.models import (
            JMVAE,
            JNF,
            MMVAE,
            MVAE,
            MVTCAE,
            JMVAEConfig,
            JNFConfig,
            MMVAEConfig,
            MoPoE,
            MoPoEConfig,
            MVAEConfig,
            MVTCAEConfig,
        )
        from multivae.models.nn.base_architectures import BaseJointEncoder
        from multivae.trainers import BaseTrainer, BaseTrainerConfig
        from multivae.trainers.multistage import MultistageTrainer, MultistageTrainerConfig
        from pythae.data.datasets import DatasetOutput
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn.base_architectures import BaseDecoder, BaseEncoder
        from pythae.models.normalizing_flows.base import BaseNF, BaseNFConfig
        from pythae.models.normalizing_flows.maf import MAF, MAFConfig
    except ImportError as err:
        print(f"MultiVae is not importable here ({err}); nothing to compare.")
        print("See this script's docstring for how to install it in a separate environment.")
        return None
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("multivae", "pythae"):
            logging.getLogger(name).setLevel(logging.ERROR)

    class Encoder(BaseEncoder):
        """Flatten, ``Linear(in, h), ReLU``, then ``loc`` and ``logvar`` heads."""

        def __init__(self, in_features: int, hidden: int, latent: int) -> None:
            BaseEncoder.__init__(self)
            self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
            self.loc = nn.Linear(hidden, latent)
            self.logvar = nn.Linear(hidden, latent)
            self.latent_dim = latent

        def forward(self, x: Tensor) -> Any:
            h = self.body(x.flatten(1))
            return ModelOutput(embedding=self.loc(h), log_covariance=self.logvar(h))

    class JointEncoder(BaseJointEncoder):
        """Per-modality ``Linear(in, h), ReLU``, concatenated, ``Linear(M h, h), ReLU``, heads."""

        def __init__(self, in_features: int, hidden: int, latent: int) -> None:
            BaseJointEncoder.__init__(self)
            self.modalities = sorted(MODALITIES)
            self.branches = nn.ModuleDict(
                {
                    m: nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
                    for m in self.modalities
                }
            )
            width = hidden * len(self.modalities)
            self.body = nn.Sequential(nn.Linear(width, hidden), nn.ReLU())
            self.loc = nn.Linear(hidden, latent)
            self.logvar = nn.Linear(hidden, latent)
            self.latent_dim = latent

        def forward(self, x: dict) -> Any:
            h = torch.cat([self.branches[m](x[m]) for m in self.modalities], dim=-1)
            h = self.body(h)
            return ModelOutput(embedding=self.loc(h), log_covariance=self.logvar(h))

    class Decoder(BaseDecoder):
        """``Linear(d, h), ReLU, Linear(h, prod(shape))``; ``sigmoid`` means or logits."""

        def __init__(self, latent: int, hidden: int, shape: tuple, sigmoid: bool) -> None:
            BaseDecoder.__init__(self)
            self.shape, self.sigmoid = tuple(shape), sigmoid
            self.net = nn.Sequential(
                nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, math.prod(shape))
            )

        def forward(self, z: Tensor) -> Any:
            out = self.net(z)
            out = torch.sigmoid(out) if self.sigmoid else out
            return ModelOutput(reconstruction=out.unflatten(-1, self.shape))

    class WrappedEncoder(BaseEncoder):
        """A copy of one of our Gaussian encoders (``body``, ``head.loc``, ``head.logvar``).

        Wraps :class:`repro.models.encoders.ConvEncoder` / ``MLPEncoder`` (deep-copied: same
        modules, same weights, same parameter order) in pythae's encoder interface.
        """

        def __init__(self, ours: nn.Module) -> None:
            BaseEncoder.__init__(self)
            ours = copy.deepcopy(ours)
            self.body, self.loc, self.logvar = ours.body, ours.head.loc, ours.head.logvar
            self.latent_dim = self.loc.out_features

        def forward(self, x: Tensor) -> Any:
            h = self.body(x)
            return ModelOutput(embedding=self.loc(h), log_covariance=self.logvar(h))

    class WrappedJointEncoder(BaseJointEncoder):
        """A copy of our :class:`repro.models.encoders.JointMLPEncoder` as MultiVae's."""

        def __init__(self, ours: nn.Module) -> None:
            BaseJointEncoder.__init__(self)
            ours = copy.deepcopy(ours)
            self.modalities = list(ours.modalities)
            self.branches, self.body = ours.branches, ours.body
            self.loc, self.logvar = ours.head.loc, ours.head.logvar
            self.latent_dim = self.loc.out_features

        def forward(self, x: dict) -> Any:
            h = torch.cat([self.branches[m](x[m]) for m in self.modalities], dim=-1)
            h = self.body(h)
            return ModelOutput(embedding=self.loc(h), log_covariance=self.logvar(h))

    class WrappedConvDecoder(BaseDecoder):
        """A copy of our :class:`repro.models.decoders.ConvDecoder` (its ``logits``).

        The network computation is ours, chunking of many latents on the CPU included;
        ``reconstruction`` is what MultiVae's likelihood reads: ``sigmoid(logits)`` (the mean
        of our Normal/Laplace likelihoods) or the logits (Bernoulli).
        """

        def __init__(self, ours: nn.Module) -> None:
            BaseDecoder.__init__(self)
            self.net = copy.deepcopy(ours)
            self.sigmoid = ours.kind != "bernoulli"

        def forward(self, z: Tensor) -> Any:
            out = self.net.logits(z)
            return ModelOutput(reconstruction=torch.sigmoid(out) if self.sigmoid else out)

    class IdentityFlow(BaseNF):
        """``f(z) = z``: MultiVae's JNF with Gaussian unimodal posteriors."""

        def __init__(self, dim: int) -> None:
            BaseNF.__init__(self, BaseNFConfig(input_dim=(dim,)))

        def forward(self, x: Tensor, **kwargs: Any) -> Any:
            return ModelOutput(out=x, log_abs_det_jac=torch.zeros(x.shape[0], device=x.device))

    try:
        from importlib.metadata import version

        mv_version = version("multivae")
    except Exception:  # only for the report header
        mv_version = getattr(multivae, "__version__", "?")
    return SimpleNamespace(
        version=mv_version,
        JNF=JNF,
        JNFConfig=JNFConfig,
        JMVAE=JMVAE,
        JMVAEConfig=JMVAEConfig,
        MVTCAE=MVTCAE,
        MVTCAEConfig=MVTCAEConfig,
        MMVAE=MMVAE,
        MMVAEConfig=MMVAEConfig,
        WrappedEncoder=WrappedEncoder,
        WrappedJointEncoder=WrappedJointEncoder,
        WrappedConvDecoder=WrappedConvDecoder,
        MoPoE=MoPoE,
        MoPoEConfig=MoPoEConfig,
        MVAE=MVAE,
        MVAEConfig=MVAEConfig,
        MAF=MAF,
        MAFConfig=MAFConfig,
        BaseTrainer=BaseTrainer,
        BaseTrainerConfig=BaseTrainerConfig,
        MultistageTrainer=MultistageTrainer,
        MultistageTrainerConfig=MultistageTrainerConfig,
        DatasetOutput=DatasetOutput,
        Encoder=Encoder,
        JointEncoder=JointEncoder,
        Decoder=Decoder,
        IdentityFlow=IdentityFlow,
    )


def copy_weights(src: nn.Module, dst: nn.Module) -> bool:
    """Copy parameters in registration order when every shape matches; report success."""
    a, b = list(src.parameters()), list(dst.parameters())
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b, strict=True)):
        return False
    with torch.no_grad():
        for x, y in zip(a, b, strict=True):
            y.copy_(x)
    return True


def gaussian_part(encoder: nn.Module) -> nn.Module:
    """The Gaussian encoder inside a flow posterior (``FlowPosterior.encoder``), or itself."""
    inner = getattr(encoder, "encoder", None)
    return inner if isinstance(inner, nn.Module) else encoder


@dataclasses.dataclass
class Side:
    """One library's version of a model stage, ready to time."""

    model: nn.Module  # the whole model (parameter count, GEMM hooks)
    loss: Callable[[dict], Tensor]  # batch dict -> scalar loss
    optimizer: torch.optim.Optimizer
    epoch: Callable[[], float]  # one epoch of the library's own loop; returns seconds
    note: str = ""


def build_ours(name: str, data: dict, batch_size: int, same_opt: bool) -> tuple[Side, float]:
    """Our side of comparison ``name``; also the seconds that ``Stage.prepare`` took."""
    from repro.config import TrainConfig
    from repro.train import fit

    if name.startswith("jnf/"):
        variant = name.split("/")[1]
        cfg, build_models = benchlib.load_jnf_toy("full")
        model = build_models(cfg)["flow" if variant == "joint" else variant]
        stage = "joint" if variant == "joint" else "unimodal"
    else:
        model = benchlib.build_mlp_model(name)
        stage = benchlib.first_stage(model)
    module, bound, prepare = benchlib.stage_parts(model, stage)
    tic = time.perf_counter()
    prepared = prepare(data)
    prepare_s = time.perf_counter() - tic
    params = benchlib.trainable(module)
    opt = torch.optim.Adam(params, lr=1e-3) if same_opt else benchlib.our_optimizer(params)
    train_cfg = TrainConfig(
        epochs=1, batch_size=batch_size, progress=False, checkpoint=False, restore_best=False
    )
    gen = torch.Generator().manual_seed(0)

    def epoch() -> float:
        tic = benchlib.clock()
        fit(module, bound, prepared, train_cfg, generator=gen)
        return benchlib.clock() - tic

    side = Side(model, lambda b: -bound(b).mean(), opt, epoch)
    side.prepared = prepared  # type: ignore[attr-defined]
    return side, prepare_s


def build_theirs(
    api: SimpleNamespace,
    name: str,
    ours: nn.Module,
    data: dict,
    batch_size: int,
    same_opt: bool,
    workdir: Path,
) -> Side:
    """MultiVae's side of comparison ``name``, with our weights copied where shapes allow."""
    input_dims = {m: (1, 32, 32) for m in MODALITIES}
    copied = []
    if name.startswith("jnf/"):
        variant = name.split("/")[1]
        d = ours.latent_dim
        hidden = ours.joint_encoder.body[0].out_features if _has_body(ours) else 512
        joint = api.JointEncoder(1024, hidden, d)
        copied.append(copy_weights(ours.joint_encoder, joint))
        encoders, decoders, flows = {}, {}, {}
        for m in MODALITIES:
            encoders[m] = api.Encoder(1024, hidden, d)
            copied.append(copy_weights(gaussian_part(ours.encoders[m]), encoders[m]))
            decoders[m] = api.Decoder(d, hidden, (1, 32, 32), sigmoid=True)
            copied.append(copy_weights(ours.decoders[m], decoders[m]))
            if variant == "gaussian":
                flows[m] = api.IdentityFlow(d)
            else:
                maf = api.MAFConfig(
                    input_dim=(d,), n_made_blocks=2, n_hidden_in_made=3, hidden_size=128
                )
                flows[m] = api.MAF(maf)
        config = api.JNFConfig(
            n_modalities=2,
            latent_dim=d,
            input_dims=input_dims,
            decoders_dist={m: "normal" for m in MODALITIES},
            warmup=1,
            beta=float(getattr(ours, "beta", 0.5)),
        )
        model = api.JNF(config, encoders, decoders, joint_encoder=joint, flows=flows)
        epoch_no = 1 if variant == "joint" else 2
        if epoch_no == 2:
            model._set_torch_no_grad_on_joint_vae()
        trainer_cls, trainer_cfg_cls = api.MultistageTrainer, api.MultistageTrainerConfig
    else:
        d = ours.latent_dim
        encoders = {m: api.Encoder(1024, 512, d) for m in MODALITIES}
        decoders = {m: api.Decoder(d, 512, (1, 32, 32), sigmoid=False) for m in MODALITIES}
        for m in MODALITIES:
            copied.append(copy_weights(ours.encoders[m], encoders[m]))
            copied.append(copy_weights(ours.decoders[m], decoders[m]))
        common = {
            "n_modalities": 2,
            "latent_dim": d,
            "input_dims": input_dims,
            "decoders_dist": {m: "bernoulli" for m in MODALITIES},
        }
        if name.startswith("mopoe"):
            model = api.MoPoE(api.MoPoEConfig(**common, beta=1.0), encoders, decoders)
        else:
            config = api.MVAEConfig(**common, use_subsampling=True, k=0, warmup=0, beta=1.0)
            model = api.MVAE(config, encoders, decoders)
        epoch_no = 1
        trainer_cls, trainer_cfg_cls = api.BaseTrainer, api.BaseTrainerConfig

    def loss(batch: dict) -> Tensor:
        return model(api.DatasetOutput(data=batch), epoch=epoch_no).loss

    if same_opt:
        opt = torch.optim.Adam(benchlib.trainable(model), lr=1e-3)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # as MultiVae's trainer
    from multivae.data.datasets.base import MultimodalBaseDataset

    trainer_model = copy.deepcopy(model)
    train_cfg = trainer_cfg_cls(
        output_dir=str(workdir),
        per_device_train_batch_size=batch_size,
        learning_rate=1e-3,
        num_epochs=epoch_no,
        no_cuda=True,
        seed=0,
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        trainer = trainer_cls(trainer_model, MultimodalBaseDataset(data), None, train_cfg)

    def epoch() -> float:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            tic = benchlib.clock()
            trainer.train_step(epoch_no)
            return benchlib.clock() - tic

    note = "" if all(copied) else "weights not copied (shapes differ)"
    return Side(model, loss, opt, epoch, note)


@torch.no_grad()
def max_output_gap(name: str, ours: nn.Module, theirs: nn.Module, batch: dict) -> float:
    """Largest difference between the two sides' encoder means and decoder means on ``batch``.

    Checks that the copied networks compute the same functions (the MAFs are not compared).
    """
    gaps = []
    z = torch.randn(len(batch[MODALITIES[0]]), ours.latent_dim)
    if name.startswith("jnf/"):
        a = ours.joint_encoder(batch).mean
        gaps.append((a - theirs.joint_encoder(batch).embedding).abs().max())
    for m in MODALITIES:
        enc = gaussian_part(ours.encoders[m])
        gaps.append((enc(batch[m]).mean - theirs.encoders[m](batch[m]).embedding).abs().max())
        out = theirs.decoders[m](z).reconstruction
        out = out if theirs.decoders[m].sigmoid else torch.sigmoid(out)
        gaps.append((ours.decoders[m](z).mean - out).abs().max())
    return float(max(gaps))


def _has_body(model: nn.Module) -> bool:
    body = getattr(model.joint_encoder, "body", None)
    return isinstance(body, nn.Sequential) and isinstance(body[0], nn.Linear)


CONV_COMPARISONS = ("JNF/joint", "JNF/unimodal", "JMVAE", "MoPoE", "MVTCAE", "MMVAE")
#: The MoPoE of the conv comparison: MultiVae's per-sample objective (``--check-mopoe``).
OFFICIAL_MOPOE = {"stratified": "chunks", "chunk_remainder": "last", "poe_prior_expert": "full"}


def build_ours_conv(name: str, preset: str, data: dict, same_opt: bool) -> tuple[Side, float, int]:
    """Our side of conv comparison ``name`` (the ``jnf_coherence_fid`` model at ``preset``).

    The model is ``coherence_fid.build_model`` of the figure, except MoPoE, rebuilt on the same
    networks with :data:`OFFICIAL_MOPOE` (the figure's MoPoE has ``chunk_remainder="random"``
    and no prior expert: the same cost, a different estimator from MultiVae's), and MMVAE,
    rebuilt as the stratified IWAE (``estimator="iwae"``, MultiVae's ``iwae_looser``) with the
    preset's ``K`` where the figure trains another estimator (e.g. the chunked ELBO of a quick
    preset, 5x less decoding). JMVAE is past its KL warm-up (its epoch set to ``warmup``, as
    MultiVae's ``epoch`` argument).

    Returns:
        ``(side, prepare seconds, batch size)``.
    """
    from repro.models.mopoe import MoPoE
    from repro.train import _optimizer, fit

    model, stage, train_cfg = benchlib.build_conv_stage(name, preset)
    if name == "MoPoE":
        model = MoPoE(
            model.encoders, model.decoders, model.latent_dim, beta=model.beta, K=model.K,
            **OFFICIAL_MOPOE,
        )  # fmt: skip
    if name == "MMVAE" and (model.estimator, model.stratified) != ("iwae", "all"):
        from repro.models.mmvae import MMVAE

        model = MMVAE(model.encoders, model.decoders, model.latent_dim, K=model.K, estimator="iwae")
    if name == "JMVAE":
        model.set_epoch(max(model.warmup, 1))
    module, bound, prepare = benchlib.stage_parts(model, stage)
    tic = time.perf_counter()
    prepared = prepare(data)
    prepare_s = time.perf_counter() - tic
    params = benchlib.trainable(module)
    opt = torch.optim.Adam(params, lr=train_cfg.lr) if same_opt else _optimizer(params, train_cfg)
    epoch_cfg = dataclasses.replace(
        train_cfg, epochs=1, progress=False, checkpoint=False, restore_best=False
    )
    gen = torch.Generator().manual_seed(0)

    def epoch() -> float:
        tic = benchlib.clock()
        fit(module, bound, prepared, epoch_cfg, generator=gen)
        return benchlib.clock() - tic

    side = Side(model, lambda b: -bound(b).mean(), opt, epoch)
    side.prepared = prepared  # type: ignore[attr-defined]
    return side, prepare_s, train_cfg.batch_size


def build_theirs_conv(
    api: SimpleNamespace,
    name: str,
    ours: nn.Module,
    preset: str,
    data: dict,
    batch_size: int,
    same_opt: bool,
    workdir: Path,
) -> Side:
    """MultiVae's side of conv comparison ``name`` on copies of our networks.

    Encoders, decoders and the joint encoder are deep copies of ours (the same modules and
    weights) in pythae's interfaces (:func:`multivae_api`'s ``Wrapped*``); MultiVae computes
    its own likelihoods, divergences, aggregations and objective. JNF's MAFs are pythae's,
    with the layer sizes of ours (different masks, weights not copied).
    """
    cfg, _ = benchlib.load_coherence_fid(preset)
    modalities = list(ours.modalities)
    d = ours.latent_dim
    first = ours.decoders[modalities[0]]
    kind = first.kind if first.kind in ("normal", "laplace", "bernoulli") else None
    if kind is None:
        raise LookupError(f"no MultiVae likelihood for our {first.kind!r} decoders")
    shape = tuple(next(iter(data.values())).shape[1:])
    common: dict[str, Any] = {
        "n_modalities": len(modalities),
        "latent_dim": d,
        "input_dims": {m: shape for m in modalities},
        "decoders_dist": {m: kind for m in modalities},
        "decoder_dist_params": (
            {} if kind == "bernoulli" else {m: {"scale": float(first.scale)} for m in modalities}
        ),
    }
    encoders = {m: api.WrappedEncoder(gaussian_part(ours.encoders[m])) for m in modalities}
    decoders = {m: api.WrappedConvDecoder(ours.decoders[m]) for m in modalities}
    notes = []
    epoch_no = 1
    trainer_cls, trainer_cfg_cls = api.BaseTrainer, api.BaseTrainerConfig
    if name.startswith("JNF/"):
        joint = api.WrappedJointEncoder(ours.joint_encoder)
        hidden = tuple(cfg.flow_hidden)
        if len(set(hidden)) != 1:
            notes.append(f"their MADEs: {len(hidden)} x {hidden[0]} (ours {hidden})")
        flows = {
            m: api.MAF(
                api.MAFConfig(
                    input_dim=(d,), n_made_blocks=cfg.flow_transforms,
                    n_hidden_in_made=len(hidden), hidden_size=hidden[0],
                )
            )
            for m in modalities
        }  # fmt: skip
        config = api.JNFConfig(**common, warmup=1, beta=float(ours.beta))
        model = api.JNF(config, encoders, decoders, joint_encoder=joint, flows=flows)
        if name == "JNF/unimodal":
            epoch_no = 2
            model._set_torch_no_grad_on_joint_vae()
        trainer_cls, trainer_cfg_cls = api.MultistageTrainer, api.MultistageTrainerConfig
    elif name == "JMVAE":
        joint = api.WrappedJointEncoder(ours.joint_encoder)
        config = api.JMVAEConfig(
            **common, alpha=float(ours.alpha), warmup=int(ours.warmup), beta=float(ours.beta)
        )
        model = api.JMVAE(config, encoders, decoders, joint_encoder=joint)
        epoch_no = max(int(ours.warmup), 1)
    elif name == "MoPoE":
        model = api.MoPoE(api.MoPoEConfig(**common, beta=float(ours.beta)), encoders, decoders)
    elif name == "MVTCAE":
        config = api.MVTCAEConfig(**common, alpha=float(ours.alpha), beta=float(ours.beta))
        model = api.MVTCAE(config, encoders, decoders)
    elif name == "MMVAE":
        config = api.MMVAEConfig(
            **common, K=int(ours.K), prior_and_posterior_dist="normal", learn_prior=False,
            loss="iwae_looser",
        )  # fmt: skip
        model = api.MMVAE(config, encoders, decoders)
    else:
        raise LookupError(f"no MultiVae counterpart for {name!r}")

    def loss(batch: dict) -> Tensor:
        return model(api.DatasetOutput(data=batch), epoch=epoch_no).loss

    if same_opt:
        opt = torch.optim.Adam(benchlib.trainable(model), lr=1e-3)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # as MultiVae's trainer
    from multivae.data.datasets.base import MultimodalBaseDataset

    trainer_model = copy.deepcopy(model)
    train_cfg = trainer_cfg_cls(
        output_dir=str(workdir),
        per_device_train_batch_size=batch_size,
        learning_rate=1e-3,
        num_epochs=epoch_no,
        no_cuda=True,
        seed=0,
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        trainer = trainer_cls(trainer_model, MultimodalBaseDataset(data), None, train_cfg)

    def epoch() -> float:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            tic = benchlib.clock()
            trainer.train_step(epoch_no)
            return benchlib.clock() - tic

    return Side(model, loss, opt, epoch, "; ".join(notes))


@torch.no_grad()
def conv_output_gap(ours: nn.Module, theirs: nn.Module, batch: dict) -> float:
    """Largest difference of encoder means, joint means and decoder means between the sides."""
    gaps = []
    first = next(iter(batch.values()))
    z = torch.randn(len(first), ours.latent_dim)
    if hasattr(ours, "joint_encoder") and hasattr(theirs, "joint_encoder"):
        x = {m: batch[m] for m in ours.modalities}
        gaps.append((ours.joint_encoder(x).mean - theirs.joint_encoder(x).embedding).abs().max())
    for m in ours.modalities:
        enc = gaussian_part(ours.encoders[m])
        gaps.append((enc(batch[m]).mean - theirs.encoders[m](batch[m]).embedding).abs().max())
        out = theirs.decoders[m](z).reconstruction
        out = out if theirs.decoders[m].sigmoid else torch.sigmoid(out)
        gaps.append((ours.decoders[m](z).mean - out).abs().max())
    return float(max(gaps))


def network_params(model: nn.Module) -> int:
    """Parameters of the networks alone: encoders, decoders, joint encoder, flows."""
    total = 0
    for attr in ("encoders", "decoders", "joint_encoder", "flows"):
        part = getattr(model, attr, None)
        if isinstance(part, nn.Module):
            total += benchlib.n_params(part)
    return total


def compare(
    api: SimpleNamespace,
    name: str,
    data: dict,
    args: argparse.Namespace,
    workdir: Path,
) -> dict:
    """Build both sides of ``name`` and time them in alternating rounds."""
    torch.manual_seed(0)
    theirs = None
    if args.arch == "conv":
        ours, prepare_s, batch_size = build_ours_conv(name, args.preset, data, args.same_optimizer)
        if api is not None:
            theirs = build_theirs_conv(
                api, name, ours.model, args.preset, data, batch_size, args.same_optimizer,
                workdir,
            )  # fmt: skip
    else:
        batch_size = args.batch_size
        ours, prepare_s = build_ours(name, data, batch_size, args.same_optimizer)
        if api is not None:
            theirs = build_theirs(
                api, name, ours.model, data, batch_size, args.same_optimizer, workdir
            )
    our_batches = benchlib.sample_batches(ours.prepared, batch_size, 8)
    their_batches = benchlib.sample_batches(data, batch_size, 8)
    our_validate = {"each": False, "off": False, "on": None}[args.validation]
    their_validate = {"each": None, "off": False, "on": None}[args.validation]
    our_step = benchlib.make_step(ours.loss, ours.optimizer, our_validate)
    timer = FloorTimer(floor_ops(ours.model, lambda: ours.loss(our_batches[0])))
    runs: dict[str, Callable[[], float]] = {}
    if theirs is not None:
        if args.arch == "conv":
            gap = conv_output_gap(ours.model, theirs.model, their_batches[0])  # before training
        else:
            gap = max_output_gap(name, ours.model, theirs.model, their_batches[0])
        their_step = benchlib.make_step(theirs.loss, theirs.optimizer, their_validate)
        their_timer = FloorTimer(floor_ops(theirs.model, lambda: theirs.loss(their_batches[0])))
    warm = []
    for _ in range(2):  # warm-up
        warm.append(benchlib.timed_steps(our_step, our_batches, 1))
        if theirs is not None:
            warm.append(benchlib.timed_steps(their_step, their_batches, 1))
    steps = args.steps or max(1, min(20, round(args.round_s / max(min(warm), 1e-9))))
    runs["ours"] = lambda: benchlib.timed_steps(our_step, our_batches, steps)
    runs["floor"] = timer.round
    if theirs is not None:
        runs["theirs"] = lambda: benchlib.timed_steps(their_step, their_batches, steps)
        runs["their floor"] = their_timer.round
    rounds = benchlib.interleave(runs, args.repeats)
    result: dict[str, Any] = {
        "name": name,
        "preset": args.preset if args.arch == "conv" else None,
        "batch_size": batch_size,
        "steps_per_round": steps,
        "params_ours": network_params(ours.model),
        "params_ours_all": benchlib.n_params(ours.model),
        "validation": args.validation,
        "opt_ours": benchlib.optimizer_kind(ours.optimizer),
        "step_ms_ours": benchlib.median(rounds["ours"]) * 1e3,
        "step_ms_ours_all": [t * 1e3 for t in rounds["ours"]],
        "floor_ms": timer.floor() * 1e3,
        "gflop_ours": timer.flops / 1e9,
        "prepare_s": prepare_s,
    }
    if theirs is not None:
        result.update(
            {
                "params_theirs": network_params(theirs.model),
                "params_theirs_all": benchlib.n_params(theirs.model),
                "note": theirs.note,
                "opt_theirs": benchlib.optimizer_kind(theirs.optimizer),
                "step_ms_theirs": benchlib.median(rounds["theirs"]) * 1e3,
                "step_ms_theirs_all": [t * 1e3 for t in rounds["theirs"]],
                "step_speedup": benchlib.median(
                    benchlib.paired_ratios(rounds["ours"], rounds["theirs"])
                ),
                "floor_ms_theirs": their_timer.floor() * 1e3,
                "gflop_theirs": their_timer.flops / 1e9,
                "output_gap": gap,
            }
        )
    if args.epoch_repeats and theirs is not None:
        ours.epoch()
        theirs.epoch()  # warm-up epochs
        epochs = benchlib.interleave(
            {"ours": ours.epoch, "theirs": theirs.epoch}, args.epoch_repeats
        )
        n = len(next(iter(data.values())))
        result.update(
            {
                "epoch_s_ours": benchlib.median(epochs["ours"]),
                "epoch_s_theirs": benchlib.median(epochs["theirs"]),
                "epoch_sps_ours": n / benchlib.median(epochs["ours"]),
                "epoch_sps_theirs": n / benchlib.median(epochs["theirs"]),
                "epoch_speedup": benchlib.median(
                    benchlib.paired_ratios(epochs["ours"], epochs["theirs"])
                ),
            }
        )
    return result


MOPOE_VARIANTS = {  # label: our MoPoE keyword arguments (besides beta=1, stratified="chunks")
    "official": {"chunk_remainder": "last", "poe_prior_expert": "full"},
    "rest-rand": {"poe_prior_expert": "full"},
    "defaults": {},
    "chosen-KL": {"chunk_kl": "chosen", "chunk_remainder": "last", "poe_prior_expert": "full"},
}


def _their_mopoe(api: SimpleNamespace, ours: nn.Module) -> nn.Module:
    """MultiVae's MoPoE on the mirror networks, with ``ours``'s weights copied."""
    d = ours.latent_dim
    encoders = {m: api.Encoder(1024, 512, d) for m in MODALITIES}
    decoders = {m: api.Decoder(d, 512, (1, 32, 32), sigmoid=False) for m in MODALITIES}
    for m in MODALITIES:
        if not (
            copy_weights(ours.encoders[m], encoders[m])
            and copy_weights(ours.decoders[m], decoders[m])
        ):
            raise LookupError(f"weights of {m!r} not copied (shapes differ)")
    config = api.MoPoEConfig(
        n_modalities=2,
        latent_dim=d,
        input_dims={m: (1, 32, 32) for m in MODALITIES},
        decoders_dist={m: "bernoulli" for m in MODALITIES},
        beta=float(ours.beta),
    )
    return api.MoPoE(config, encoders, decoders)


@torch.no_grad()
def their_per_sample(api: SimpleNamespace, model: nn.Module, batch: dict, seed: int) -> dict:
    """MultiVae's MoPoE objective per sample from its own pieces, and its ``forward`` loss."""
    from multivae.models.base.base_utils import rsample_from_gaussian

    inputs = api.DatasetOutput(data=batch)
    torch.manual_seed(seed)
    loss = float(model(inputs, epoch=1).loss)
    torch.manual_seed(seed)
    latents = model.inference(inputs)
    z = rsample_from_gaussian(*latents["joint"])  # the same draw as in forward
    rec = 0
    for m in model.encoders:
        recon = model.decoders[m](z).reconstruction
        log_p = model.recon_log_probs[m](recon, batch[m]) * model.rescale_factors[m]
        rec = rec + log_p.reshape(len(z), -1).sum(-1)
    mus, logvars, weights = latents["mus"], latents["logvars"], latents["weights"]
    kl = torch.stack(
        [
            model.calc_joint_divergence(
                mus[:, b : b + 1], logvars[:, b : b + 1], weights[:, b : b + 1]
            )["joint_divergence"]
            for b in range(len(z))
        ]
    )
    # which subset each row drew: the component whose mean it carries
    index = (latents["joint"][0].unsqueeze(0) - mus).abs().amax(-1).argmin(0)
    return {
        "value": rec - model.model_config.beta * kl,
        "loss": loss,
        "index": index,
        "subsets": latents["subsets"],
    }


@torch.no_grad()
def check_mopoe(api: SimpleNamespace, args: argparse.Namespace) -> list[dict]:
    """Our MoPoE vs MultiVae's on identical weights and noise; prints and returns the gaps."""
    from repro.distributions import gaussian_params
    from repro.losses.aggregate import chunk_components
    from repro.models.mopoe import MoPoE

    rows = []
    print(
        "MoPoE per-sample objective, ours vs MultiVae "
        f"{api.version} (identical weights and noise; max |difference| over the batch)"
    )
    print(
        f"{'dtype':8s}{'B':>5s}{'variant':>11s}{'objective':>11s}{'mean loss':>11s}"
        f"{'rows':>7s}{'their fwd':>11s}{'q(z|X_S)':>10s}{'encode z':>10s}"
    )
    for dtype in (torch.float64, torch.float32):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # MultiVae builds its prior expert in the default dtype
        try:
            torch.manual_seed(0)
            base = benchlib.build_mlp_model("mopoe")
            data = benchlib.toy_data(max(args.check_batch_sizes), seed=0)
            data = {m: v.to(dtype) for m, v in data.items()}
            ours_all = {
                label: MoPoE(
                    base.encoders, base.decoders, base.latent_dim, beta=1.0,
                    stratified="chunks", **kwargs,
                ).eval()
                for label, kwargs in MOPOE_VARIANTS.items()
            }  # fmt: skip
            theirs = _their_mopoe(api, ours_all["official"]).to(dtype).eval()
            for batch_size in args.check_batch_sizes:
                batch = {m: v[:batch_size] for m, v in data.items()}
                seed = 1000 + batch_size
                ref = their_per_sample(api, theirs, batch, seed)
                forward_gap = abs(-float(ref["value"].mean()) - ref["loss"])
                for label, ours in ours_all.items():
                    value = ours.bound(batch, torch.Generator().manual_seed(seed))
                    gap = float((value - ref["value"]).abs().max())
                    index = chunk_components(batch_size, 3, ours.chunk_remainder,
                                             torch.Generator().manual_seed(seed))  # fmt: skip
                    moved = int((index != ref["index"]).sum())
                    q_gap, z_gap = 0.0, 0.0
                    for key, (mu, logvar) in ref["subsets"].items():
                        subset = key.split("_")
                        loc, scale = gaussian_params(ours.posterior(batch, subset))
                        q_gap = max(q_gap, float((loc - mu).abs().max()))
                        q_gap = max(q_gap, float((2 * scale.log() - logvar).abs().max()))
                        torch.manual_seed(seed)
                        z_theirs = theirs.encode(api.DatasetOutput(data=batch), subset).z
                        z_ours = ours.sample_posterior(
                            batch, subset, 1, torch.Generator().manual_seed(seed)
                        )[0]
                        z_gap = max(z_gap, float((z_ours - z_theirs).abs().max()))
                    row = {
                        "dtype": str(dtype).removeprefix("torch."),
                        "batch": batch_size,
                        "variant": label,
                        "max_abs_objective": gap,
                        "mean_loss_gap": abs(-float(value.mean()) - ref["loss"]),
                        "rows_on_other_subsets": moved,
                        "their_forward_vs_rebuilt": forward_gap,
                        "max_abs_posterior": q_gap,
                        "max_abs_encode_z": z_gap,
                    }
                    rows.append(row)
                    print(
                        f"{row['dtype']:8s}{batch_size:5d}{label:>11s}{gap:11.2e}"
                        f"{row['mean_loss_gap']:11.2e}{moved:7d}{forward_gap:11.2e}"
                        f"{q_gap:10.2e}{z_gap:10.2e}",
                        flush=True,
                    )
        finally:
            torch.set_default_dtype(previous)
    print(
        "official: MoPoE(stratified='chunks', chunk_remainder='last', poe_prior_expert='full'); "
        "rest-rand: the same with chunk_remainder='random' (our default: the B mod 3 leftover "
        "rows on random subsets); defaults: chunk_remainder='random', no prior expert; "
        "chosen-KL: official with each row's own subset's KL (mmvmvae's rule, this repo's "
        "chunks KL before the fix). rows: rows whose subset differs from MultiVae's; their "
        "fwd: MultiVae's forward loss vs the mean of the rebuilt "
        "per-sample values; q(z|X_S): means and log-variances of every subset posterior; "
        "encode z: one draw of encode(x, S) vs sample_posterior(x, S)"
    )
    return rows


def _print_row(r: dict) -> None:
    """One line of the comparison table (our side alone when MultiVae is absent)."""
    name = r["name"]
    if "step_ms_theirs" not in r:
        print(
            f"{name:14s}{r['params_ours'] / 1e6:>19.3f}M{r['step_ms_ours']:9.1f}"
            f"{'-':>10s}{'-':>9s}{r['floor_ms']:10.1f} /{'-':>6s}"
            f"{r['step_ms_ours'] / r['floor_ms']:8.2f}  [MultiVae not importable: ours only]",
            flush=True,
        )
        return
    params = f"{r['params_ours'] / 1e6:.3f}M/{r['params_theirs'] / 1e6:.3f}M"
    line = (
        f"{name:14s}{params:>20s}{r['step_ms_ours']:9.1f}{r['step_ms_theirs']:10.1f}"
        f"{r['step_speedup']:8.2f}x"
        f"{r['floor_ms']:10.1f} /{r['floor_ms_theirs']:6.1f}"
        f"{r['step_ms_ours'] / r['floor_ms']:8.2f}"
        f"{r['step_ms_theirs'] / r['floor_ms_theirs']:7.2f}"
    )
    if "epoch_speedup" in r:
        line += (
            f"{r['epoch_sps_ours']:10.0f}{r['epoch_sps_theirs']:11.0f}{r['epoch_speedup']:7.2f}x"
        )
    flags = []
    if r["params_ours"] != r["params_theirs"]:
        flags.append("NETWORK PARAMETER COUNTS DIFFER")
    if not r["output_gap"] < 1e-4:
        flags.append(f"OUTPUTS DIFFER by {r['output_gap']:.1e}")
    if r["note"]:
        flags.append(r["note"])
    if r["prepare_s"] > 1e-3:
        flags.append(f"our Stage.prepare: {r['prepare_s']:.2f} s once")
    print(line + ("  [" + "; ".join(flags) + "]" if flags else ""), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparisons and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arch", default="mlp", choices=("mlp", "conv"),
        help="mlp: the MLP comparisons; conv: the jnf_coherence_fid models at --preset",
    )  # fmt: skip
    parser.add_argument(
        "--preset", default="quick", choices=("quick", "full"),
        help="--arch conv: the coherence_fid preset whose architecture is compared",
    )  # fmt: skip
    parser.add_argument("--only", nargs="+", choices=COMPARISONS + CONV_COMPARISONS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256, help="MLP (conv: the stage's)")
    parser.add_argument(
        "--steps", type=int,
        help="steps per timed round (default: 8 for MLP, about --round-s seconds for conv)",
    )  # fmt: skip
    parser.add_argument("--round-s", type=float, default=2.0, help="conv: seconds per round")
    parser.add_argument("--repeats", type=int, default=7, help="alternating step rounds")
    parser.add_argument(
        "--samples", type=int, help="pairs (tuples) per epoch (default 5120 MLP, 1024 conv)"
    )
    parser.add_argument(
        "--epoch-repeats", type=int,
        help="alternating epochs (0: skip end-to-end; default 3 MLP, 0 conv)",
    )  # fmt: skip
    parser.add_argument("--same-optimizer", action="store_true", help="plain Adam on both sides")
    parser.add_argument(
        "--validation", default="each", choices=("each", "off", "on"),
        help="torch.distributions argument validation in the steps: each library's own "
        "(ours off as in repro.train.fit, MultiVae's default on), off or on for both",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--clock", default="wall", choices=benchlib.CLOCKS,
        help="wall: elapsed time; cpu: this process's CPU time (on shared cores, 1 thread)",
    )  # fmt: skip
    parser.add_argument(
        "--check-mopoe",
        action="store_true",
        help="compare the MoPoE objectives per sample on identical weights and noise; no timing",
    )
    parser.add_argument(
        "--check-batch-sizes", type=int, nargs="+", default=[12, 10, 2, 256],
        help="batch sizes of --check-mopoe (3 subsets: 12 divides, 10, 2 and 256 leave rows over)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    conv = args.arch == "conv"
    if args.only is None:
        args.only = list(CONV_COMPARISONS if conv else COMPARISONS)
    wrong = [n for n in args.only if (n in CONV_COMPARISONS) != conv]
    if wrong:
        print(f"--only {wrong}: not comparisons of --arch {args.arch}", file=sys.stderr)
        return 2
    if args.samples is None:
        args.samples = 1024 if conv else 5120
    if args.epoch_repeats is None:
        args.epoch_repeats = 0 if conv else 3
    if args.steps is None and not conv:
        args.steps = 8
    benchlib.set_clock(args.clock)
    api = multivae_api()
    if api is None and args.check_mopoe:
        print("MoPoE check NOT RUN: MultiVae is not importable in this environment.")
        return 0
    torch.set_num_threads(args.threads)
    if args.check_mopoe:
        rows = check_mopoe(api, args)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            record = {"multivae": api.version, "args": vars(args), "check_mopoe": rows}
            args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
        return 0
    state = benchlib.repo_state()
    against = f"MultiVae {api.version}" if api is not None else "MultiVae (NOT IMPORTABLE)"
    batch = "the stage's batch" if conv else f"batch {args.batch_size}"
    print(
        f"repro vs {against}: {batch}, {args.threads} thread(s), validation {args.validation}, "
        f"{args.clock} clock"
    )
    print(benchlib.describe_state(state))
    if api is None:
        print(
            "MultiVae is not importable here: timing our side only (step, floor); see this "
            "script's docstring for the separate environment the comparison needs."
        )
    if conv:
        cfg, _ = benchlib.load_coherence_fid(args.preset)
        print(f"jnf_coherence_fid {args.preset}: {benchlib.describe_conv_preset(cfg)}")
        data = benchlib.polymnist_data(args.samples, seed=0)
    else:
        data = benchlib.toy_data(args.samples, seed=0)
    head = (
        f"{'model/stage':14s}{'params ours/theirs':>20s}{'ours ms':>9s}{'theirs ms':>10s}"
        f"{'speed-up':>9s}{'floor ours/theirs':>18s}{'ours/fl':>8s}{'thr/fl':>7s}"
        f"{'ours sps':>10s}{'theirs sps':>11s}{'epoch x':>8s}"
    )
    print(
        "step: bare loop, ms/step; floor: each side's matmul + convolution floor, ms (/fl: "
        "step over it); params: the networks' (encoders, decoders, joint encoder, flows); "
        "epoch: each library's own loop, samples/s"
    )
    print(head)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_multivae_") as tmp:
        for name in args.only:
            try:
                r = compare(api, name, data, args, Path(tmp))
            except LookupError as err:
                print(f"{name:14s}skipped: {err}")
                continue
            results.append(r)
            _print_row(r)
    if results and api is not None:
        print(
            f"optimisers: ours {results[0]['opt_ours']}, theirs {results[0]['opt_theirs']}; "
            f"medians of {args.repeats} step rounds and {args.epoch_repeats} epochs, sides "
            "alternating; speed-up = their time / ours, per round"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "state": state,
            "multivae": api.version if api is not None else None,
            "args": vars(args),
            "rows": results,
        }
        args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
