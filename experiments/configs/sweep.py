r"""Seed 001's phi sweep (``python -m experiments.sweep``).

``get_config(arg)``: ``arg`` is comma-separated -- ``quick`` (two phis, the tie, one seed, four
methods: a few minutes) and ``tiny`` (toy settings for the tests). ``job`` is the main job's
configuration (``experiments/configs/main.py``): data sizes, model, training, presets; each cell
sets its accessory, phi and seed.
"""

import ml_collections

from experiments.configs import main

# the paper's methods (seed 001), with the bias measure equalized odds
PAPER_METHODS = ("thropt_dp,thropt_eo,adversarial,zhang,a_clarc,rr_clarc,p_clarc,leace,"
                 "mass_mean,random")


def get_config(arg=None) -> ml_collections.ConfigDict:
  options = [a.strip() for a in (arg or "").split(",") if a.strip()]
  if [a for a in options if a not in ("quick", "tiny")]:
    raise ValueError(f"config argument: expected 'quick' and/or 'tiny', got {arg!r}")
  config = ml_collections.ConfigDict()
  config.job = main.get_config("tiny" if "tiny" in options else None)
  config.job.bias = "equalized_odds"       # Savani's objective of the weight methods: EO
  config.job.n_explain = 256
  config.phis = "0.5,0.6,0.7,0.8,0.9,0.95"
  config.accessories = "tie,hat"
  config.seeds = "0,1,2"
  config.methods = PAPER_METHODS
  config.attributions = "lrp,ig"
  if "quick" in options:
    config.phis = "0.6,0.9"
    config.accessories = "tie"
    config.seeds = "0"
    config.methods = "thropt_eo,p_clarc,leace,rr_clarc"
  if "tiny" in options:
    config.phis = "0.5,0.9"
    config.accessories = "tie"
    config.seeds = "0"
    config.methods = "thropt_dp,thropt_eo"
    config.attributions = "lrp"
    config.job.n_explain = 8
  return config
