"""Paper reproductions as library functions (the ``experiments/`` programs are thin mains).

- :func:`savani`: Savani, White & Govindarajulu (2020), Table 1, Figure 1 and Table 2.
- :func:`dvge`: Zhang et al. (2023)'s DVGE trade-off curves and probe ablation.
- :func:`biased_digits`: Biased-MNIST's table (Bahng et al. 2020; Nahon et al. 2023) on the
  procedural digits: vanilla, LfF, JTT, IRENE and the unsupervised Voronoi-cell method.
- :func:`sweep`: seed 001's phi sweep (Fig. 3), resumable cell by cell, and its research
  questions.
- :func:`saliency_control`: whether the saliency metrics separate a model that leans on the
  accessory (phi = 0.8) from one that cannot (phi = 0).
"""

from debiasjax.reproductions.biased_mnist import biased_digits
from debiasjax.reproductions.dvge_2023 import dvge
from debiasjax.reproductions.phi_sweep import sweep
from debiasjax.reproductions.saliency_control import saliency_control
from debiasjax.reproductions.savani_2020 import savani

__all__ = ["biased_digits", "dvge", "saliency_control", "savani", "sweep"]
