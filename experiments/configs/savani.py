r"""Savani et al. (2020)'s reproduction (``python -m experiments.savani``): Table 1, Figure 1 and
Table 2 on a table.

  python -m experiments.savani                                          # census, ~10 min
  python -m experiments.savani --config=experiments/configs/savani.py:adult \
      --config.data.data_dir=~/data/adult
  python -m experiments.savani --config=experiments/configs/savani.py:compas \
      --config.data.data_dir=~/data/compas --config.data.protected=race

``get_config(arg)``: ``arg`` is comma-separated -- a table (``census`` by default, ``adult``,
``bank``, ``compas``, ``german``) and ``tiny`` (toy settings for the tests).
"""

import ml_collections
from ml_collections.config_dict import placeholder

TABLES = ("census", "adult", "bank", "compas", "german")


def get_config(arg=None) -> ml_collections.ConfigDict:
  options = [a.strip() for a in (arg or "").split(",") if a.strip()]
  names = [a for a in options if a in TABLES]
  if [a for a in options if a not in TABLES + ("tiny",)] or len(names) > 1:
    raise ValueError(f"config argument: expected a table of {TABLES} and/or 'tiny', got {arg!r}")
  name = names[0] if names else "census"
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = ml_collections.ConfigDict({
      "name": name, "data_dir": placeholder(str), "protected": placeholder(str),
      "phi": placeholder(float), "n_rows": 20000,
      # The paper's protocol: one split (seed 101), bank's clients aged 25 and older privileged.
      "table_seed": 0, "split_seed": 101, "bank_privileged_age": (25, None)})
  config.seeds = 10                      # models (initialisation seeds), trained in one program
  config.epochs = 20
  config.candidates = 201                # random perturbation (v1 configs: 201)
  config.population = 32                 # layer-wise optimisation: population per generation
  config.generations = 10                # and generations per layer
  config.adversarial_epochs = 16         # adversarial fine-tuning rounds (v1: 16)
  config.biases = "statistical_parity,equal_opportunity,average_odds"   # Figure 1's panels
  if "tiny" in options:
    config.update(seeds=2, epochs=2, candidates=4, population=4, generations=1,
                  adversarial_epochs=1, biases="statistical_parity")
    config.data.n_rows = 1500
  return config
