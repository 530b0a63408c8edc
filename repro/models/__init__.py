"""Multimodal VAEs on one interface (:class:`repro.models.base.MultimodalVAE`).

Import a model from its module (``from repro.models.mopoe import MoPoE``) or from here; the
registry :data:`MODELS` maps names to classes.
"""

from repro.models.avg import AVG
from repro.models.base import MASK, MultimodalVAE, Stage
from repro.models.crmvae import CRMVAE
from repro.models.iterative import GradientStep, IterativeVAE, Refiner, refine
from repro.models.jmvae import JMVAE
from repro.models.jnf import JNF
from repro.models.joint import JointVAE
from repro.models.mmvae import MMVAE
from repro.models.mmvm import MMVMVAE
from repro.models.mopoe import MoPoE
from repro.models.mvae import MVAE
from repro.models.mvtcae import MVTCAE
from repro.models.telbo import TELBO

__all__ = [
    "MASK",
    "MultimodalVAE",
    "Stage",
    "MODELS",
    "JointVAE",
    "JNF",
    "JMVAE",
    "MVAE",
    "MMVAE",
    "MoPoE",
    "AVG",
    "MVTCAE",
    "CRMVAE",
    "TELBO",
    "MMVMVAE",
    "IterativeVAE",
    "Refiner",
    "GradientStep",
    "refine",
]

MODELS: dict[str, type[MultimodalVAE]] = {
    cls.__name__: cls
    for cls in (JointVAE, JNF, JMVAE, MVAE, MMVAE, MoPoE, AVG, MVTCAE, CRMVAE, TELBO, MMVMVAE)
}
