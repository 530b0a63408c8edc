"""Models: networks that return ``torch.distributions`` objects."""
