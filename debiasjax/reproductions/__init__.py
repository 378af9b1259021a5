"""Paper reproductions as library functions (the ``experiments/`` programs are thin mains).

- :func:`savani`: Savani, White & Govindarajulu (2020), Table 1, Figure 1 and Table 2.
- :func:`dvge`: Zhang et al. (2023)'s DVGE trade-off curves and probe ablation.
- :func:`biased_digits`: Biased-MNIST's table (Bahng et al. 2020; Nahon et al. 2023) on the
  procedural digits: vanilla, LfF, JTT, IRENE and the unsupervised Voronoi-cell method.
"""

from debiasjax.reproductions.biased_mnist import biased_digits
from debiasjax.reproductions.dvge_2023 import dvge
from debiasjax.reproductions.savani_2020 import savani

__all__ = ["biased_digits", "dvge", "savani"]
