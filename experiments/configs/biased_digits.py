r"""The Biased-MNIST table on the procedural digits (``python -m experiments.biased_digits``).

  python -m experiments.biased_digits                      # MLP, 20k digits, 3 seeds, ~15 min CPU
  python -m experiments.biased_digits --config=experiments/configs/biased_digits.py:full

``get_config(arg)``: ``arg`` is comma-separated -- ``full`` (the papers' size: SimpleConvNet on
60k digits for 80 epochs, SGD 0.1 with steps at 40 and 60; for a GPU) and ``tiny`` (toy
settings for the tests).

The CPU default trains LfF's Colored-MNIST network (an MLP of 3 x 100) on 20k digits for 20
epochs with Adam 1e-3: the convolutional reference network costs ~160 MFLOP per training image,
about 25 images per second on two CPU cores at full width, so its table needs an accelerator.
"""

import ml_collections


def get_config(arg=None) -> ml_collections.ConfigDict:
  options = [a.strip() for a in (arg or "").split(",") if a.strip()]
  if [a for a in options if a not in ("full", "tiny")]:
    raise ValueError(f"config argument: expected 'full' and/or 'tiny', got {arg!r}")
  config = ml_collections.ConfigDict()
  config.rhos = "0.99,0.995,0.997,0.999"
  config.seeds = 3                        # initialisations and data orders, stacked per run
  # oracle: the Voronoi method's debiased run given the true colours (the reference's
  # --bias_supervised), the labelled upper bound of the unsupervised method
  config.methods = "vanilla,lff,jtt,irene,oracle,online"
  config.data = ml_collections.ConfigDict({
      "n_train": 20000, "n_test": 10000, "n_biased_test": 2000, "seed": 0})
  # model: "mlp" (LfF's Colored-MNIST MLP, `layers` x `width`) or "cnn" (Bahng et al.'s
  # SimpleConvNet, `width` 16 = 16/32/64/128 channels, kernel 7, Tanh before the pool as in
  # IRENE and the Voronoi-cell code)
  config.model = ml_collections.ConfigDict({"name": "mlp", "layers": 3, "width": 100})
  config.epochs = 20
  config.batch_size = 100
  # "adam" (ReBias' and LfF's 1e-3) or "sgd" (IRENE's and the Voronoi code's: momentum 0.9,
  # weight decay 1e-4, x0.1 at `milestones`)
  config.optimizer = ml_collections.ConfigDict({
      "name": "adam", "learning_rate": 1e-3, "milestones": ()})
  config.head_learning_rate = 0.1         # the privacy head's SGD (IRENE, Voronoi code)
  config.irene = ml_collections.ConfigDict({"alpha": 0.5, "gamma": 0.2})   # IRENE's defaults
  config.online = ml_collections.ConfigDict({"alpha": 1.0, "gamma": 2.0, "skip": 1})
  config.lff = ml_collections.ConfigDict({"q": 0.7, "ema": 0.7})
  # JTT: the bias is learned within the first epoch on these data (the Voronoi paper's
  # observation), so T = 1; lambda_up = 100 ~ 1 / (1 - rho) at rho = 0.99
  config.jtt = ml_collections.ConfigDict({"first_epochs": 1, "lambda_up": 100.0})
  if "full" in options:
    config.data.update(n_train=60000, n_test=10000, n_biased_test=10000)
    config.model = ml_collections.ConfigDict({"name": "cnn", "layers": 4, "width": 16})
    config.epochs = 80
    config.optimizer.update(name="sgd", learning_rate=0.1, milestones=(40, 60))
  if "tiny" in options:
    config.rhos = "0.95,0.99"
    config.seeds = 2
    config.data.update(n_train=600, n_test=200, n_biased_test=100)
    config.model.update(layers=2, width=32)
    config.epochs = 3
    config.batch_size = 50
  return config
