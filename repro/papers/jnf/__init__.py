"""``jnf``: Senellart & Allassonniere, "Bridging the inference gap in Multimodal VAEs".

arXiv 2502.03952 (JNF, JNF-Shared): ``settings`` (configs and presets), ``toy_posteriors``
(Fig. 2), ``plot`` (its figures).
"""
