"""One package per reproduced paper: its settings, one module per figure, its plots.

``repro/papers/<key>/settings.py`` holds the frozen configs with ``quick``/``full`` presets;
each figure module has ``run(cfg) -> result`` and ``summary(result) -> str``; ``plot.py`` draws
that paper's figures. Shared code lives in the library modules around this package.
"""
