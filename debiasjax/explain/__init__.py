"""Explanations: LRP (rules and composites), integrated gradients, gradient-based saliency, figures.

* :func:`lrp` -- relevance of a Flax Linen model, one compiled backward pass;
* :func:`integrated_gradients`, :func:`gradient`, :func:`gradient_x_input`, :func:`smoothgrad` --
  for any ``apply_fn(x) -> logits``; :func:`integrated_gradients_in_groups` -- one compiled step
  group at a time, for large images and many steps;
* :mod:`debiasjax.explain.rules` -- Epsilon, ZPlus, AlphaBeta, Gamma, Flat, WSquare, ZBox, the
  zennit composites and :func:`zennit_compatible` (zennit's stabilised sums);
* :func:`saliency_maps` -- heatmaps of a dataset; :mod:`debiasjax.explain.figures` -- PNG figures.
"""

from debiasjax.explain import figures, rules
from debiasjax.explain.gradients import (gradient, gradient_x_input, integrated_gradients,
                                         integrated_gradients_in_groups, quadrature, smoothgrad)
from debiasjax.explain.lrp import folded_forward, lrp
from debiasjax.explain.maps import saliency_maps
from debiasjax.explain.rules import (COMPOSITES, AlphaBeta, Composite, Epsilon, Flat, Gamma,
                                     WSquare, ZBox, ZPlus, epsilon_alpha2_beta1,
                                     epsilon_alpha2_beta1_flat, epsilon_gamma_box, epsilon_plus,
                                     epsilon_plus_flat, lrp_zero, zennit_compatible)

__all__ = ["lrp", "saliency_maps", "figures", "folded_forward", "integrated_gradients",
           "integrated_gradients_in_groups", "gradient", "gradient_x_input", "smoothgrad",
           "quadrature", "rules", "Composite", "Epsilon", "ZPlus", "AlphaBeta", "Gamma", "Flat",
           "WSquare", "ZBox", "COMPOSITES", "lrp_zero", "epsilon_plus", "epsilon_plus_flat",
           "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat", "epsilon_gamma_box",
           "zennit_compatible"]
