"""Objectives as pure functions, one module per family.

Each function returns a quantity to **maximise**: a bound per sample, shape ``(B,)``, or, for
batch-level statistics such as DCCA, a scalar. The caller reduces and negates:
``loss = -elbo(...).mean()``. Functions take the latent samples ``z`` (or the log-weights) as
arguments instead of drawing them, so every objective can be checked against a closed form
(``tests/test_losses*.py``).

* :mod:`repro.losses.bounds`: log-likelihood, KL, ELBO, importance weights, IWAE;
* :mod:`repro.losses.aggregate`: aggregated posteriors (MVAE, MMVAE, MoPoE, AVG);
* :mod:`repro.losses.coordination`: coordination-based models (JMVAE-KL, MVTCAE, CRMVAE, TELBO);
* :mod:`repro.losses.jnf`: JNF stage 2, subset densities, DCCA;
* :mod:`repro.losses.mmvm`: the MMVM mixture-prior regulariser (pairwise bound or exact by MC);
* :mod:`repro.losses.iterative`: the ELBO of Gaussian parameters and its gradient, alignment KL
  (iterative amortized inference).
"""

from repro.losses.aggregate import (
    aggregate_elbo,
    aggregate_log_weights,
    mmvae_dreg,
    mmvae_iwae,
    mvae_elbo,
    stratified_elbo,
)
from repro.losses.bounds import elbo, iwae, kl, log_importance_weights, log_likelihood
from repro.losses.coordination import conditional_elbo, crmvae, jmvae_kl, mvtcae, telbo
from repro.losses.iterative import alignment_kl, elbo_gradients, elbo_of_params
from repro.losses.jnf import canonical_correlations, dcca, jnf_ljm, subset_log_density
from repro.losses.mmvm import mixture_prior_kl, mmvm_objective

__all__ = [
    "log_likelihood",
    "kl",
    "elbo",
    "log_importance_weights",
    "iwae",
    "aggregate_elbo",
    "aggregate_log_weights",
    "mvae_elbo",
    "mmvae_iwae",
    "mmvae_dreg",
    "stratified_elbo",
    "conditional_elbo",
    "jmvae_kl",
    "mvtcae",
    "crmvae",
    "telbo",
    "jnf_ljm",
    "subset_log_density",
    "canonical_correlations",
    "dcca",
    "mixture_prior_kl",
    "mmvm_objective",
    "elbo_of_params",
    "elbo_gradients",
    "alignment_kl",
]
