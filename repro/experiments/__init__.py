"""Experiments: one ``run_*`` function per figure, returning everything the figure needs."""

from repro.experiments.jnf_toy import run_jnf_toy

__all__ = ["run_jnf_toy"]
