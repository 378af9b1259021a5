"""Bias mining from Voronoi cells at the bottleneck (Nahon, Nguyen & Tartaglione, ICCV 2023;
``renahon/mining_bias_target_alignment_from_voronoi_cells``), without bias labels.

During a vanilla run, before each epoch, the training set is passed in eval mode: the centroid
``c_k`` of class k is the mean bottleneck feature of the samples correctly classified as k, and
the boundary between classes i and j is the perpendicular bisector of their centroids,
``w = c_j - c_i``, ``b = (|c_i|^2 - |c_j|^2) / 2``. A misclassified sample (target t,
prediction p) lies ``|w . z + b| / |w|`` beyond the t/p boundary; normalised by the mean
centroid norm, ``rel = dist * K / sum_k |c_k|``. The epoch where the mean ``rel`` of the
misclassified samples peaks, e*, is when the bias is learned best: at e* the misclassified
samples are the bias-misaligned ones and their predicted class is the pseudo bias label b*.
The debiased run then weights every sample by ``1 / rho_t`` (aligned) or ``1 / (1 - rho_t)``
(misaligned), ``rho_t`` the share of class t classified correctly at e* (only when every
``rho_t`` lies strictly in (0, 1), as the reference), and removes b* from the bottleneck with
IRENE's head and MI term on the pseudo-misaligned samples (:mod:`debiasjax.methods.irene`).

Every function here is pure and fixed-shape (masks, no boolean indexing): it jits and vmaps
over seeds. The reference skips the first epoch (``warmup_epochs=1``); :func:`peak_epoch`
takes the epochs to skip.

:func:`mining_trainer` does the mining inside the compiled training loop, with no extra pass:
every step's training-mode forward pass adds its correctly classified features to the epoch's
centroid sums and the distances of its misclassified samples (to the previous epoch's
centroids) to the epoch's score, and keeps every sample's latest prediction; at each epoch's
end the score is compared with the best so far and the predictions of the best epoch are kept.
The reference instead runs an eval-mode pass over the training set before each epoch; here the
centroids lag by one epoch and the features are the training forward's (dropout, batch
statistics), the price of mining for free. It never reads a bias label.

:func:`mined_from_checkpoints` is the post-hoc form for a model already trained: the
reference's eval-mode procedure over the per-epoch checkpoints its run kept. :func:`two_runs`
is the whole method: the mining run, then the debiased run.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from debiasjax import _checks
from debiasjax.methods.adversarial import _model_state, _train_forward
from debiasjax.methods.finetuning import FineTuning
from debiasjax.models.taps import tap
from debiasjax.train import Trainer, check_labels_fit_head, weighted_cross_entropy


def class_centroids(z: jax.Array, y: jax.Array, pred: jax.Array, num_classes: int):
  """``(centroids [K, D], counts [K])``: the mean feature of the correctly classified samples
  of each class (zeros for a class with none)."""
  hit = jax.nn.one_hot(y, num_classes, dtype=z.dtype) * (pred == y)[:, None].astype(z.dtype)
  counts = hit.sum(0)
  return hit.T @ z / jnp.maximum(counts, 1.0)[:, None], counts


def boundary_distances(z: jax.Array, y: jax.Array, pred: jax.Array, centroids: jax.Array):
  """Every sample's normalised distance ``rel`` to the bisector of its target's and its
  prediction's centroids (0 for correctly classified samples)."""
  ci, cj = centroids[y], centroids[pred]
  w = cj - ci
  b = 0.5 * (jnp.sum(ci * ci, -1) - jnp.sum(cj * cj, -1))
  norm = jnp.linalg.norm(w, axis=-1)
  dist = jnp.abs(jnp.sum(w * z, -1) + b) / jnp.where(norm > 0, norm, 1.0)
  scale = centroids.shape[0] / jnp.maximum(jnp.linalg.norm(centroids, axis=-1).sum(), 1e-12)
  return jnp.where(pred != y, dist * scale, 0.0)


def epoch_score(z: jax.Array, y: jax.Array, pred: jax.Array, num_classes: int) -> jax.Array:
  """The mean ``rel`` of the misclassified samples of one eval pass (0 when none is)."""
  centroids, _ = class_centroids(z, y, pred, num_classes)
  rel = boundary_distances(z, y, pred, centroids)
  wrong = (pred != y).sum()
  return jnp.where(wrong > 0, rel.sum() / jnp.maximum(wrong, 1), 0.0)


def peak_epoch(scores: jax.Array, skip: int = 1) -> jax.Array:
  """e*: the index of the largest score, ignoring the first ``skip`` entries."""
  scores = jnp.asarray(scores)
  return jnp.argmax(jnp.where(jnp.arange(scores.shape[-1]) < skip, -jnp.inf, scores), -1)


class Mined(NamedTuple):
  """What the mining gives the debiased run: pseudo bias labels, which samples count as
  misaligned, per-sample weights and the per-class aligned shares ``rho``."""
  bias: jax.Array          # b*: the class predicted at e* [N]
  misaligned: jax.Array    # prediction != target at e* [N]
  weight: jax.Array        # 1 / rho_t or 1 / (1 - rho_t) [N]
  rho: jax.Array           # [K]


def mine(y: jax.Array, pred: jax.Array, num_classes: int) -> Mined:
  """Pseudo bias labels and weights from the predictions ``pred`` at e*: ``rho_t = 1 -
  #misaligned_t / #class_t``; weights ``1 / rho_t`` (aligned) and ``1 / (1 - rho_t)``
  (misaligned) when every ``rho_t`` is in (0, 1), else all ones (the reference's rule)."""
  misaligned = pred != y
  onehot = jax.nn.one_hot(y, num_classes)
  per_class = onehot.sum(0)
  rho = 1.0 - (onehot * misaligned[:, None]).sum(0) / jnp.maximum(per_class, 1.0)
  usable = jnp.all((rho > 0) & (rho < 1))
  r = rho[y]
  weight = jnp.where(misaligned, 1.0 / jnp.where(r < 1, 1.0 - r, 1.0), 1.0 / jnp.where(r > 0, r,
                                                                                       1.0))
  return Mined(pred, misaligned, jnp.where(usable, weight, 1.0), rho)


def precision_recall(flagged: jax.Array, truth: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Precision and recall of the flagged samples against the true bias-conflicting ones."""
  flagged, truth = flagged.astype(jnp.float32), truth.astype(jnp.float32)
  both = jnp.sum(flagged * truth)
  return both / jnp.maximum(flagged.sum(), 1.0), both / jnp.maximum(truth.sum(), 1.0)


class Voronoi(NamedTuple):
  """The mining's running statistics (fixed shapes: K classes, D features, N samples)."""
  sums: jax.Array          # [K, D] features of this epoch's correct samples
  counts: jax.Array        # [K]
  centroids: jax.Array     # [K, D] of the previous epoch
  score_sum: jax.Array     # this epoch's sum of rel over misclassified samples
  wrong: jax.Array         # this epoch's misclassified samples
  pred: jax.Array          # [N] every sample's latest prediction
  best_score: jax.Array    # the best finished epoch's score
  best_epoch: jax.Array    # e* so far (-1: none yet)
  best_pred: jax.Array     # [N] the predictions of e*
  scores: jax.Array        # [E] every finished epoch's score


class MiningState(NamedTuple):
  """A supervised training state with the mining's statistics."""
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  mining: Voronoi


def _finish_epoch(m: Voronoi, epoch: jax.Array, skip: int) -> Voronoi:
  """Closes epoch ``epoch``: its score against the best, its centroids for the next one."""
  score = m.score_sum / jnp.maximum(m.wrong, 1.0)
  better = (epoch >= skip) & (m.wrong > 0) & (score > m.best_score)
  return Voronoi(jnp.zeros_like(m.sums), jnp.zeros_like(m.counts),
                 m.sums / jnp.maximum(m.counts, 1.0)[:, None], jnp.zeros_like(m.score_sum),
                 jnp.zeros_like(m.wrong), m.pred, jnp.where(better, score, m.best_score),
                 jnp.where(better, epoch, m.best_epoch), jnp.where(better, m.pred, m.best_pred),
                 m.scores.at[epoch].set(score, mode="drop"))


def mining_trainer(model, layer: str, features: jax.ShapeDtypeStruct,
                   tx: optax.GradientTransformation, *, num_classes: int, num_examples: int,
                   steps_per_epoch: int, num_epochs: int, skip: int = 1,
                   train_kwargs=None) -> Trainer:
  """Vanilla training (softmax cross-entropy) that mines the bias at ``layer`` as it goes.

  Args:
    model, layer: the Flax module and its bottleneck's module path (e.g. ``"pool"``).
    features: shape of one sample's bottleneck (``[1, D]``).
    tx: the optimizer.
    num_classes, num_examples: K classes, N training samples.
    steps_per_epoch, num_epochs: the run's shape (epoch e covers its steps).
    skip: the first ``skip`` epochs are never e* (the reference: 1).
    train_kwargs: the training-mode forward's keyword arguments (default ``{"train": True}``).

  Batches carry ``x``, ``y`` and ``index`` (each row's position in the training set, 0..N-1);
  :func:`mined` closes the last epoch and gives e*'s pseudo labels and weights.
  """
  for name, value, low in (("num_classes", num_classes, 2), ("num_examples", num_examples, 1),
                           ("steps_per_epoch", steps_per_epoch, 1), ("num_epochs", num_epochs, 1),
                           ("skip", skip, 0)):
    _checks.check_int(name, value, low)
  train_kwargs = {"train": True} if train_kwargs is None else dict(train_kwargs)
  init, update = _mining_steps(model, layer, features, tx, num_classes, num_examples,
                               steps_per_epoch, num_epochs, skip,
                               tuple(sorted(train_kwargs.items())))

  def check(state, data):
    check_labels_fit_head(model, {"params": state.params, **state.model_state}, data)
    index = data.get("index")
    if index is None or not np.array_equal(np.sort(np.asarray(index)), np.arange(num_examples)):
      raise ValueError(f"data['index']: expected every row's position 0..{num_examples - 1} "
                       "(np.arange(N)), so the mining can keep each sample's prediction")
  return Trainer(init, update, check=check)


@functools.lru_cache(maxsize=16)
def _mining_steps(model, layer, features, tx, k, n, steps_per_epoch, num_epochs, skip,
                  train_kwargs):
  train_kwargs = dict(train_kwargs)
  layer_tap = tap(model, layer)
  d = int(np.prod(features.shape[1:]))

  def init(key, variables):
    del key
    params = variables["params"]
    f32, i32 = jnp.float32, jnp.int32
    stats = Voronoi(jnp.zeros((k, d), f32), jnp.zeros(k, f32), jnp.zeros((k, d), f32),
                    jnp.zeros((), f32), jnp.zeros((), i32), jnp.full(n, -1, i32),
                    jnp.full((), -jnp.inf, f32), jnp.full((), -1, i32), jnp.full(n, -1, i32),
                    jnp.zeros(num_epochs, f32))
    return MiningState(jnp.zeros((), i32), params, _model_state(variables), tx.init(params),
                       stats)

  def update(st: MiningState, batch, key):
    epoch = st.step // steps_per_epoch
    closed = _finish_epoch(st.mining, epoch - 1, skip)
    m = jax.tree.map(lambda a, b: jnp.where((st.step % steps_per_epoch == 0) & (epoch > 0), a, b),
                     closed, st.mining)
    _, k_drop = jax.random.split(key)

    def loss_fn(p):
      logits, new_state, z = _train_forward(model, {"params": p, **st.model_state}, batch["x"],
                                            k_drop, train_kwargs, layer_tap)
      ce = weighted_cross_entropy(logits, batch["y"], batch.get("weight"))
      return ce, (logits, new_state, z)

    (loss, (logits, new_state, z)), grads = jax.value_and_grad(loss_fn, has_aux=True)(st.params)
    updates, opt = tx.update(grads, st.opt_state, st.params)
    z = jax.lax.stop_gradient(z.reshape(z.shape[0], -1)).astype(jnp.float32)
    pred = jnp.argmax(logits, -1).astype(jnp.int32)
    y = batch["y"]
    correct = jax.nn.one_hot(y, k, dtype=z.dtype) * (pred == y)[:, None]
    rel = boundary_distances(z, y, pred, m.centroids)
    ready = epoch >= 1                       # no centroids before the first epoch has ended
    m = m._replace(sums=m.sums + correct.T @ z, counts=m.counts + correct.sum(0),
                   score_sum=m.score_sum + jnp.where(ready, rel.sum(), 0.0),
                   wrong=m.wrong + jnp.where(ready, (pred != y).sum(), 0).astype(jnp.int32),
                   pred=m.pred.at[batch["index"]].set(pred))
    return (MiningState(st.step + 1, optax.apply_updates(st.params, updates), new_state, opt, m),
            {"loss": loss, "accuracy": jnp.mean(pred == y)})

  return init, update


def mined(state: MiningState, y, num_classes: int, steps_per_epoch: int, skip: int = 1):
  """``(Mined, e*, epoch scores)`` of a finished :func:`mining_trainer` run (its last epoch
  closed here)."""
  epoch = state.step // steps_per_epoch
  m = _finish_epoch(state.mining, jnp.where(state.step % steps_per_epoch == 0, epoch - 1, epoch),
                    skip)
  return mine(jnp.asarray(y), m.best_pred, num_classes), m.best_epoch, m.scores


def mined_from_checkpoints(model, layer: str, checkpoints, template, x, y, *, num_classes: int,
                           skip: int = 1, steps=None):
  """The post-hoc form: mining from the checkpoints a finished vanilla run kept (one per
  epoch), by the reference's own procedure: an eval-mode pass over the training set per
  checkpoint (:func:`debiasjax.evaluate.map_batches`, so it is split over the devices),
  centroids, the epoch score, e* and the pseudo labels. Returns ``(Mined, e* as a step,
  {step: score})``.

  Args:
    model, layer: the trained Flax module and its bottleneck.
    checkpoints: a :class:`debiasjax.checkpoint.Checkpoints` holding training states.
    template: a training state of the run's structure (what the checkpoints restore into).
    x, y: the training set (no bias labels).
    skip: the first ``skip`` checkpoints are never e*.
    steps: the checkpoint steps to read (default: every one kept, in order).
  """
  from debiasjax.evaluate import map_batches
  from debiasjax.train import variables_of
  steps = sorted(checkpoints.all_steps()) if steps is None else list(steps)
  if len(steps) <= skip:
    raise ValueError(f"checkpoints: expected more than skip={skip} checkpoints (one per epoch "
                     f"of the vanilla run), got {len(steps)} in {checkpoints.directory}")
  layer_tap = tap(model, layer)

  def forward(variables, xb):
    logits, z = layer_tap.forward(variables, xb)
    return jnp.argmax(logits, -1).astype(jnp.int32), z.reshape(z.shape[0], -1)

  y = jnp.asarray(y)
  scores, preds = {}, {}
  for step in steps:
    variables = variables_of(checkpoints.restore(template, step=step))
    pred, z = map_batches(forward, variables, np.asarray(x))
    preds[step] = pred
    scores[step] = float(epoch_score(jnp.asarray(z), y, jnp.asarray(pred), num_classes))
  best = steps[int(peak_epoch(jnp.asarray([scores[s] for s in steps]), skip))]
  return mine(y, jnp.asarray(preds[best]), num_classes), best, scores


def mined_columns(found: Mined) -> dict:
  """The debiased run's data columns from mined (or true) bias labels: ``private`` (b*),
  ``weight`` and ``mi_mask`` (the misaligned samples), as
  :func:`~debiasjax.methods.irene.irene_trainer` reads them."""
  return {"private": np.asarray(found.bias), "weight": np.asarray(found.weight),
          "mi_mask": np.asarray(found.misaligned, np.float32)}


def two_runs(model, layer: str, x, y, *, key, num_classes: int, num_epochs: int,
             batch_size: int, tx: optax.GradientTransformation,
             head_tx: Optional[optax.GradientTransformation] = None, alpha: float = 1.0,
             gamma: float = 2.0, skip: int = 1, steps_per_call=None):
  """The unsupervised method end to end on a training set ``(x, y)`` without bias labels: a
  vanilla run that mines (:func:`mining_trainer`), then a run from the same initialisation
  on the mined weights with IRENE's head on b* and the MI term on the pseudo-misaligned
  samples (:func:`debiasjax.methods.irene.irene_trainer`; the reference: gamma 2, the head
  trained by SGD 0.1, ``head_tx``'s default).

  ``key``: one PRNG key, or [K] keys: K seeds (seed k: initialisation ``key[k]``, data order
  k), each of the two runs one vmapped program, every seed mining its own b*.

  Returns ``(vanilla variables, debiased variables, Mined, e*)`` (stacked along K with K keys).
  """
  from debiasjax import train
  from debiasjax.methods import irene
  x, y = np.asarray(x), np.asarray(y)
  _checks.check_key("key", key)
  stacked = key.ndim == 1
  n = len(y)
  steps_per_epoch = n // batch_size
  variables = train.initial_variables(model, key, x)
  one = jax.tree.map(lambda a: a[0], variables) if stacked else variables
  features = jax.eval_shape(lambda v, xb: tap(model, layer).activations(v, xb), one, x[:1])
  miner = mining_trainer(model, layer, features, tx, num_classes=num_classes, num_examples=n,
                         steps_per_epoch=steps_per_epoch, num_epochs=num_epochs, skip=skip)
  seeds = list(range(key.shape[0])) if stacked else 0
  run = dict(key=key, num_steps=steps_per_epoch * num_epochs, batch_size=batch_size,
             steps_per_call=steps_per_call, seed=seeds, stacked=stacked)
  each = jax.vmap if stacked else (lambda f: f)
  state = train.fit(miner, each(miner.init)(key, variables),
                    {"x": x, "y": y, "index": np.arange(n)}, **run)
  found, e_star, _ = each(lambda s: mined(s, y, num_classes, steps_per_epoch, skip))(state)
  remover = irene.irene_trainer(model, layer, features, num_private=num_classes, alpha=alpha,
                                gamma=gamma, tx=tx, head_tx=head_tx or irene.sgd())
  columns = mined_columns(found)
  debiased = train.fit(remover, each(remover.init)(key, variables), {"x": x, "y": y, **columns},
                       per_model=tuple(columns) if stacked else (), **run)
  return train.variables_of(state), train.variables_of(debiased), found, e_star


def voronoi_debiasing(*, num_steps: int = 500, batch_size: int = 64, alpha: float = 1.0,
                      gamma: float = 2.0, learning_rate: float = 1e-4,
                      head_learning_rate: float = 0.1, objective=None,
                      layer: Optional[str] = None,
                      train_kwargs: Optional[dict] = None) -> FineTuning:
  """The unsupervised method as post-hoc fine-tuning for :func:`debiasjax.debias`, given only
  the trained model and the debias split without its group labels.

  Mining: the debias split is data the model was not trained on, so the samples it gets wrong
  there are those its shortcut misleads, as a run's errors at e* are (a finished run has
  memorised its own training set; with its per-epoch checkpoints,
  :func:`mined_from_checkpoints` mines that set instead). The predictions are b*, and
  :func:`mine` gives the weights ``1 / rho_t`` and ``1 / (1 - rho_t)``. Debiasing: the debiased
  run's loss (reweighted cross-entropy, IRENE's head on b* at ``layer``, default the
  penultimate, and the MI term on the pseudo-misaligned samples) fine-tunes the model (Adam at
  ``learning_rate``; the head SGD at ``head_learning_rate``); then the threshold
  (``objective`` None: 0.5, which reads no group label either). The protected attribute is
  never read."""
  from debiasjax.evaluate import predicted_classes
  from debiasjax.methods import irene
  from debiasjax.methods.finetuning import adam, check_training, one_row_shape, split_arrays
  check_training(num_steps, batch_size, learning_rate)
  for name, value in (("alpha", alpha), ("gamma", gamma)):
    _checks.check_nonnegative(name, value)

  def trainer(ctx) -> Trainer:
    return irene.irene_trainer(ctx.model, ctx.layer, one_row_shape(ctx, ctx.layer),
                               num_private=one_row_shape(ctx).shape[-1], alpha=alpha,
                               gamma=gamma, tx=adam(float(learning_rate)),
                               head_tx=irene.sgd(float(head_learning_rate)),
                               train_kwargs=train_kwargs)

  def columns(ctx) -> dict:
    x, y, _ = split_arrays(ctx.data)
    return mined_columns(mine(jnp.asarray(y),
                              jnp.asarray(predicted_classes(ctx.model, ctx.variables, x)),
                              one_row_shape(ctx).shape[-1]))

  return FineTuning(trainer, num_steps, batch_size, objective=objective, layer=layer,
                    columns=columns)
