"""``mmvm``: Sutter et al., "Unity by Diversity" (MMVM VAE), NeurIPS 2024, arXiv 2403.05300.

Modules: ``settings`` (configs and presets), ``networks`` (the rat encoders and decoders),
``latents`` (Fig. 4), ``tradeoff`` (Fig. 3), ``plot`` (their figures).
"""
