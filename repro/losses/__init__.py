"""Objectives as pure functions, one module per family.

Each function returns a quantity to **maximise**: a bound per sample, shape ``(B,)``, or, for
batch-level statistics such as DCCA, a scalar. The caller reduces and negates:
``loss = -elbo(...).mean()``. Functions take the latent samples ``z`` (or the log-weights) as
arguments instead of drawing them, so every objective can be checked against a closed form
(``tests/test_losses*.py``).

* :mod:`repro.losses.bounds`: log-likelihood, KL, ELBO, importance weights, IWAE;
* :mod:`repro.losses.jnf`: JNF stage 2, subset densities, DCCA.
"""

from repro.losses.bounds import elbo, iwae, kl, log_importance_weights, log_likelihood
from repro.losses.jnf import canonical_correlations, dcca, jnf_ljm, subset_log_density

__all__ = [
    "log_likelihood",
    "kl",
    "elbo",
    "log_importance_weights",
    "iwae",
    "jnf_ljm",
    "subset_log_density",
    "canonical_correlations",
    "dcca",
]
