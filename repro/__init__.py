"""repro: notebook-first reproductions of multimodal VAE papers.

Importing the package is cheap on purpose; import the submodules you need
(``repro.config``, ``repro.experiments``, ``repro.plotting``, ...).
"""

__version__ = "0.1.0"
