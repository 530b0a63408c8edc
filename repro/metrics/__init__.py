"""Evaluation metrics (coherence, FID, latent-space probes)."""
