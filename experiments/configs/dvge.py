r"""DVGE's reproduction (``python -m experiments.dvge``): trade-off curves and the sensitive-probe
ablation (Zhang et al. 2023) on the faces or a table.

  python -m experiments.dvge                                            # faces (tie), ~25 min
  python -m experiments.dvge --config=experiments/configs/dvge.py:census
  python -m experiments.dvge --config=experiments/configs/dvge.py:census \
      --config.data.protected=sex+race                       # two sensitive attributes
  python -m experiments.dvge --config.data.accessory=tie+hat          # faces: tie and hat
  python -m experiments.dvge --config=experiments/configs/dvge.py:german \
      --config.data.data_dir=~/data/south_german --config.data.protected=age+foreign_worker
  python -m experiments.dvge --config=experiments/configs/dvge.py:celeba \
      --config.data.data_dir=~/tfds --config.data.target=Oval_Face --config.data.protected=Male

``get_config(arg)``: ``arg`` is comma-separated -- a data set (``faces`` by default, ``celeba``,
``census``, ``adult``, ``bank``, ``compas``, ``german``) and ``tiny`` (toy settings for the
tests). The data fields are the main job's (``experiments/configs/main.py``).
"""

import ml_collections

from experiments.configs import main


def get_config(arg=None) -> ml_collections.ConfigDict:
  options = [a.strip() for a in (arg or "").split(",") if a.strip()]
  base = main.get_config(arg)
  images = base.data.name in main.IMAGE_DATA
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = base.data
  config.cache_dir = base.cache_dir
  # DVGE-D (FactorVAE), DVGE-N (plain VAE), and DVGE on the main job's trained classifier's
  # penultimate features (not in the paper: the representation that carries the shortcut)
  config.encoders = "factor,vae,model"
  config.vanilla = base                   # the classifier of "model": the main job's (cached)
  config.vae = ml_collections.ConfigDict({
      "latents": 10, "gamma": 6.4, "batch_size": 64,
      # the reference trains 1e6 steps at 1e-4; a CPU budget needs a larger step
      "learning_rate": 5e-4, "critic_learning_rate": 1e-4,
      "epochs": 20 if images else 40, "hidden": (64, 64)})   # hidden: the MLP VAE's layers
  config.classifier = ml_collections.ConfigDict({
      # d and g: the reference's 5 x 1000 MLP, smaller for a CPU
      "layers": 3, "width": 256, "learning_rate": 1e-3, "batch_size": 64 if images else 256,
      "sensitive_epochs": 20, "task_epochs": 20})
  config.seeds = 3                        # classifier seeds (d, g, probes) per trained VAE
  config.eta1 = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0"
  config.eta2 = "0.4"                     # the reference scripts' (a grid: "0,0.4")
  config.probe_eta2 = 0.4                 # the ablation tables' eta2
  config.epsilon = 1.0
  config.clip = "symmetric"
  # the pushes: toward d's prediction (the paper's +η1 ∇d) and away from it; the raw gradient
  # (the paper) and its direction per row (η = the step's length in latent units)
  config.directions = "toward,away"
  config.steps = "gradient,unit"
  config.other_eta1 = "0,0.2,0.5,1.0"     # the η1 grid of the pushes after the first
  config.removed_dims = 1                 # the "sensitive dims removed" baseline
  config.adversary_lams = "0.1,0.3,1,3,10"    # gradient-reversal baseline
  config.probe_epochs = 20
  if "tiny" in options:
    config.data.update(n_train=64, n_debias=32, n_test=32, image_size=16) if images else \
        config.data.update(n_rows=600)
    config.vae.update(latents=4, epochs=2, batch_size=16)
    config.classifier.update(layers=1, width=16, sensitive_epochs=1, task_epochs=1,
                             batch_size=16)
    config.seeds = 2
    config.eta1 = "0,0.5"
    config.eta2 = "0.4"
    config.other_eta1 = "0,0.5"
    config.steps = "gradient"
    config.adversary_lams = "1"
    config.probe_epochs = 2
  return config
