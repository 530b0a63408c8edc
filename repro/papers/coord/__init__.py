"""``coord``: Suzuki & Matsuo, coordination-based multimodal VAEs (OpenReview Rn8u4MYgeNJ).

"Mitigating the limitations of multimodal VAEs with coordination-based approach", ICLR 2023
submission (papers/coordination.md). Modules: ``settings`` (configs and presets),
``cross_coherence`` (cross-coherence against generation quality on translated PolyMNIST),
``bounds`` (the exact bound hierarchy of §3 on a linear-Gaussian model: ELBO, conditional
ELBOs, MVTCAE and JMVAE-KL against their targets), ``plot`` (its figures).
"""
