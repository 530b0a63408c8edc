"""Datasets: embedded defaults that run offline, and loaders for the real data."""
