r"""The saliency control (``python -m experiments.saliency_control``): vanilla models at phi = 0
and phi = 0.8 per seed, the accessory box's RRF and HRF under each attribution.

``get_config(arg)``: ``arg`` is passed to the main job's configuration (``faces`` by default,
``tiny`` for the tests): the vanilla models are the main job's, cached alike.
"""

import ml_collections

from experiments.configs import main


def get_config(arg=None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.vanilla = main.get_config(arg)
  config.phis = "0,0.8"
  config.seeds = 3
  config.n_explain = 256
  # the composites tried: EpsilonPlusFlat (zennit's advice for ResNets), EpsilonGammaBox (gamma
  # on convolutions, z-box on the pixels), EpsilonAlpha2Beta1; and IG (zero baseline, 32 steps)
  config.attributions = ("lrp:epsilon_plus_flat,lrp:epsilon_gamma_box,lrp:epsilon_alpha2_beta1,"
                         "ig")
  config.target = "label"               # the relevance of each image's label, or "positive"
  config.normalization = "detoxai"      # |R| / 2 max|R|, as the main job's metrics read it
  if "tiny" in (arg or ""):
    config.seeds = 1
    config.n_explain = 8
    config.attributions = "lrp:epsilon_plus_flat,lrp:epsilon_gamma_box,ig"
  return config
