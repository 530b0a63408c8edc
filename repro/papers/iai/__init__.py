"""``iai``: Oshima, Suzuki & Matsuo, iterative amortized inference in multimodal VAEs.

arXiv 2410.11403: ``settings`` (configs and presets), ``elbo_iterations`` (ELBO vs refinement
iteration, cross-modal generations, the probe / similarity table), ``plot`` (its figures).
"""
