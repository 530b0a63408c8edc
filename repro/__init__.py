"""repro: notebook-first reproductions of multimodal VAE papers.

Importing the package is cheap on purpose; import the submodules you need
(``repro.models``, ``repro.train``, ``repro.papers.jnf``, ...).
"""

__version__ = "0.1.0"
