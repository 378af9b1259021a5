"""One call that debiases a trained model with several methods and evaluates them alike.

:func:`debias` takes built methods -- any of the five families -- fits each on the benchmark's
*debias* split and evaluates the result, and the untouched model, on the *test* split with the
same metrics. Every method becomes one :class:`Debiased`: the network to score
(``apply_fn``, ``variables``) and the decision rule on its scores (``decide``):

* a :class:`~debiasjax.methods.PostProcessor` keeps the network and decides with its fitted
  rule, evaluated by its expected decisions (``probability``), so randomised rules are
  measured without sampling noise;
* an :class:`~debiasjax.methods.Eraser` (or one placed with :func:`~debiasjax.methods.at_layer`)
  is fitted on the activations of its layer (default: the penultimate layer) with the
  protected attribute as the concept, and compiled into the network; threshold 0.5;
* a :class:`~debiasjax.methods.Search` finds new weights and their threshold;
* a :class:`~debiasjax.methods.FineTuning` recipe trains new weights with
  :func:`debiasjax.train.fit` and picks their threshold;
* a :class:`~debiasjax.methods.Representation` (DVGE) learns a new network, an encoder and a
  classifier on its latents, from the debias split alone; threshold 0.5.

The result has one row per method and the Pareto front over a performance metric (higher is
better) and a fairness gap (lower is better).

Example:
  result = debias(model, variables, bench, methods={
      "ThrOpt (EO)": dj.methods.threshold_optimizer(constraint="equalized_odds"),
      "LEACE": dj.methods.leace(),
      "P-ClArC": dj.methods.at_layer("stage2", dj.methods.p_clarc(pooling="none")),
      "Random": dj.methods.random_perturbation(num_candidates=16),
      "RR-ClArC": dj.methods.rr_clarc(layer="stage3", lam=10.0)})
  result.rows        # [{"method": "Vanilla", "accuracy": ..., "equalized_odds": ...}, ...]
  result.pareto      # labels of the rows on the front
  result.debiased["LEACE"].apply_fn(result.debiased["LEACE"].variables, x)   # edited logits
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from debiasjax import _checks
from debiasjax.checkpoint import Checkpoints
from debiasjax.data.dataset import Benchmark
from debiasjax.evaluate import BATCH, bootstrap_intervals, fairness_summary, predict_scores, \
    score_function, scores_and_activations
from debiasjax.methods.clarc import ConceptEdit, edited_scores, fit_edit, layer_activations
from debiasjax.methods.concepts import Eraser
from debiasjax.methods.representation import Representation
from debiasjax.methods.finetuning import FineTuning, tune
from debiasjax.methods.postprocessing import PostProcessor
from debiasjax.methods.search import Search
from debiasjax.metrics.fairness import roc_auc
from debiasjax.report import slug
from debiasjax.models.taps import penultimate_layer

Method = Union[PostProcessor, Eraser, ConceptEdit, Search, FineTuning, Representation]
GAPS = ("demographic_parity", "equalized_odds", "equal_opportunity", "average_odds")


class Debiased(NamedTuple):
  """A debiased model: ``apply_fn(variables, x) -> logits`` (the edited network for erasers),
  ``decide(scores, groups) -> P(y_hat = 1)`` on its P(y = 1), and the fitted method's
  ``state`` (a post-processor's or eraser's state, or a
  :class:`~debiasjax.methods.WeightResult`)."""
  apply_fn: Callable[[Any, Any], Any]
  variables: Any
  decide: Callable[[Any, Any], Any]
  state: Any = None


class DebiasResult(NamedTuple):
  rows: list              # one dict per method (Vanilla first): metrics, "seconds", "pareto"
  pareto: list            # labels of the rows on the Pareto front
  debiased: dict          # label -> Debiased
  scores: dict            # "debias" / "test" -> the vanilla model's P(y = 1)


def threshold_rule(threshold) -> Callable[[Any, Any], Any]:
  """``decide`` of a plain threshold: ``scores > threshold`` for every group."""
  t = float(threshold)

  def decide(scores, groups):
    del groups
    return (jnp.asarray(scores) > t).astype(jnp.float32)

  return decide


# A classifier predicting one class for all but this fraction of the test rows is flagged as
# (near-)constant: its gaps are ~0 by construction, so it is kept off the Pareto front.
CONSTANT = 0.01


def pareto_front(rows: Sequence[dict], *, performance: str = "balanced_accuracy",
                 gap: str = "equalized_odds") -> list[str]:
  """Labels of the rows no other row dominates (>= performance and <= gap, one strictly);
  rows flagged ``constant`` neither join the front nor dominate."""
  points = [(r["method"], r[performance], r[gap]) for r in rows if not r.get("constant")]
  front = []
  for name, p, q in points:
    dominated = any(p2 >= p and q2 <= q and (p2 > p or q2 < q) for _, p2, q2 in points)
    if not dominated:
      front.append(name)
  return front


class _Setting(NamedTuple):
  """What every adapter reads; ``activations(layer)`` gives a layer's outputs on the debias and
  test splits, computed once and shared by every eraser at that layer."""
  model: Any
  apply_fn: Callable
  variables: Any
  benchmark: Benchmark
  scores: dict
  privileged: Optional[int]
  num_groups: int
  key: jax.Array
  activations: Callable[[str], dict]
  checkpoints: Optional[str] = None     # this method's folder, for the methods that resume
  progress: Optional[Callable[[str, int, int], None]] = None   # this method's, labelled


Fitted = tuple  # (Debiased, its P(y = 1) on the test split when the adapter has them, or None)


def _post_processor(method: PostProcessor, s: _Setting) -> Fitted:
  d = s.benchmark.debias
  state = method.fit(s.scores["debias"], d.y, d.group, privileged=s.privileged)
  return (Debiased(s.apply_fn, s.variables, functools.partial(method.probability, state), state),
          s.scores["test"])


def _edit(method: ConceptEdit, s: _Setting) -> Fitted:
  debias_split, test = s.benchmark.debias, s.benchmark.test
  layer = method.layer or penultimate_layer(s.model, s.variables, debias_split.x[:1])
  acts = s.activations(layer)
  edited, state = fit_edit(method._replace(layer=layer), s.model, s.variables, debias_split,
                           activations=acts["debias"])
  test_scores = edited_scores(s.model, s.variables, layer, method.eraser.apply, state, test.x,
                              acts["test"])
  return (Debiased(edited.apply, edited.with_edit(s.variables, state), threshold_rule(0.5), state),
          test_scores)


def _search(method: Search, s: _Setting) -> Fitted:
  # Only the options a search is given are passed: a user's own Search need not take them.
  options = {}
  if s.checkpoints is not None:
    options["checkpoints"] = Checkpoints(s.checkpoints)
  if s.progress is not None:
    options["progress"] = s.progress
  try:
    result = method.search(score_function(s.model), s.variables, s.benchmark.debias, s.key,
                           privileged=s.privileged, **options)
  finally:
    if "checkpoints" in options:
      options["checkpoints"].close()
  return Debiased(s.apply_fn, result.variables, threshold_rule(result.threshold), result), None


def _fine_tuning(method: FineTuning, s: _Setting) -> Fitted:
  steps = method.num_steps
  log = None
  if s.progress is not None:
    s.progress("training steps", 0, steps)
    log = lambda step, metrics: s.progress("training steps", step, steps)
  result = tune(method, s.model, s.variables, s.benchmark.debias, key=s.key,
                privileged=s.privileged, num_groups=s.num_groups, log=log,
                log_every=max(1, steps // 50))
  return Debiased(s.apply_fn, result.variables, threshold_rule(result.threshold), result), None


def _representation(method: Representation, s: _Setting) -> Fitted:
  module, variables = method.fit(s.key, s.benchmark.debias, progress=s.progress,
                                 checkpoints=s.checkpoints)
  return Debiased(module.apply, variables, threshold_rule(0.5), module), None


def fit_method(method: Method, setting: _Setting) -> Fitted:
  """Dispatches on the method's family (the NamedTuple type): the Debiased model and, when the
  adapter already has them, its P(y = 1) on the test split."""
  if isinstance(method, PostProcessor):
    return _post_processor(method, setting)
  if isinstance(method, Eraser):
    return _edit(ConceptEdit(method), setting)
  if isinstance(method, ConceptEdit):
    return _edit(method, setting)
  if isinstance(method, Search):
    return _search(method, setting)
  if isinstance(method, Representation):
    return _representation(method, setting)
  return _fine_tuning(method, setting)


def _check_methods(methods, is_module: bool) -> dict:
  if not isinstance(methods, Mapping):
    raise ValueError("methods: expected a dict {label: method} of built methods (e.g. "
                     "{'ThrOpt (EO)': dj.methods.threshold_optimizer(constraint="
                     f"'equalized_odds')}}), got {type(methods).__name__}")
  families = (PostProcessor, Eraser, ConceptEdit, Search, FineTuning, Representation)
  for label, method in methods.items():
    if not isinstance(label, str) or not label or label == "Vanilla":
      raise ValueError(f"methods: labels must be non-empty strings other than 'Vanilla', got "
                       f"{label!r}")
    if not isinstance(method, families):
      raise ValueError(f"methods: {label!r} is a {type(method).__name__}; expected a "
                       "PostProcessor, Eraser, ConceptEdit, Search, FineTuning or Representation "
                       "(built with the factories of debiasjax.methods)")
  needs_module = [label for label, m in methods.items()
                  if not isinstance(m, (PostProcessor, Representation))]
  if needs_module and not is_module:
    raise ValueError(f"model: {needs_module} change the weights and need the Flax module, got "
                     "an apply function")
  return dict(methods)


def debias(model: Union[nn.Module, Callable[[Any, Any], Any]], variables: Any,
           benchmark: Benchmark, *, methods: Mapping[str, Method],
           pareto_metric: str = "equalized_odds", threshold: float = 0.5,
           batch_size: int = BATCH, seed: int = 0,
           log: Optional[Callable[[str], None]] = None,
           checkpoint_dir: Optional[str] = None,
           progress: Optional[Callable[[str, int, int], None]] = None) -> DebiasResult:
  """Runs ``methods`` on ``benchmark.debias`` and evaluates them and Vanilla on
  ``benchmark.test``.

  Args:
    model: the trained Flax module, or just its ``apply_fn(variables, x) -> logits`` when only
      post-processors are run (the other families change the network and need the module).
    variables: its variables.
    benchmark: train / debias / test splits; ``info["privileged"]``, the data's privileged
      group, replaces the methods' own for every method that distinguishes one.
    methods: ``{label: method}``, each built by a factory of :mod:`debiasjax.methods` (see the
      module doc); rows keep this order.
    pareto_metric: the gap of the Pareto front (``demographic_parity``, ``equalized_odds``,
      ``equal_opportunity``, ``average_odds``).
    threshold: Vanilla's decision threshold on P(y = 1).
    batch_size: rows per forward pass when scoring.
    seed: every method's PRNG key is ``jax.random.key(seed)``.
    log: called with a line when a method starts and ends (e.g. ``print``); silent by default.
    checkpoint_dir: when given, each weight search saves its progress in
      ``checkpoint_dir/<label>`` after every chunk or generation and a rerun resumes it (the
      other methods rerun; a folder refuses a search with other settings or inputs).
    progress: ``progress(task, done, total)`` after every method and, inside the weight
      searches and fine-tuning, after every chunk, generation or logged training step (tasks
      named ``"<label>: generations"`` etc.); :func:`debiasjax.progress.printer` prints them
      with the time left.
  """
  is_module = isinstance(model, nn.Module)
  methods = _check_methods(methods, is_module)
  _checks.check_threshold("threshold", threshold)
  _checks.check_int("batch_size", batch_size, 1)
  _checks.check_int("seed", seed, 0)
  if pareto_metric not in GAPS:
    raise ValueError(f"pareto_metric: expected one of {list(GAPS)}, got {pareto_metric!r}")
  apply_fn = model.apply if is_module else model
  privileged = benchmark.info.get("privileged")
  num_groups = int(max(benchmark.debias.group.max(), benchmark.test.group.max())) + 1
  test = benchmark.test
  splits = (("debias", benchmark.debias), ("test", test))
  # One forward program scores every network and gives the penultimate layer's activations,
  # which the erasers at that layer (the default) reuse.
  cache, scores = {}, {}
  penultimate = penultimate_layer(model, variables, test.x[:1]) if is_module else None
  for name, split in splits:
    if is_module:
      scores[name], acts = scores_and_activations(model, variables, split.x, penultimate,
                                                  batch_size=batch_size)
      cache.setdefault(penultimate, {})[name] = acts
    else:
      scores[name] = predict_scores(apply_fn, variables, split.x, batch_size=batch_size)

  def activations(layer: str) -> dict:
    if layer not in cache:
      cache[layer] = {name: layer_activations(model, variables, split.x, layer,
                                              batch_size=batch_size) for name, split in splits}
    return cache[layer]

  def test_scores_of(d: Debiased) -> np.ndarray:
    if d.apply_fn == apply_fn and is_module:
      return scores_and_activations(model, d.variables, test.x, penultimate,
                                    batch_size=batch_size)[0]
    return predict_scores(d.apply_fn, d.variables, test.x, batch_size=batch_size)

  ci_key = jax.random.fold_in(jax.random.key(seed), 7)       # the same resamples for every row

  def summary(pred):
    """The test-split metrics of decisions ``pred`` with 95 % bootstrap intervals, and whether
    they are a (near-)constant classifier."""
    rate = float(np.mean(pred))
    return {**fairness_summary(test.y, pred, test.group, privileged=privileged),
            "ci": bootstrap_intervals(test.y, pred, test.group, key=ci_key,
                                      privileged=privileged),
            "positive_rate": rate, "constant": not CONSTANT < rate < 1 - CONSTANT}

  def ranking(test_scores) -> dict:
    """The network's own ranking of the target on the test split, whatever its decisions."""
    return {"auc": float(roc_auc(test.y, test_scores))}

  rows = [{"method": "Vanilla", "seconds": 0.0,
           **summary((scores["test"] > threshold).astype(np.float32)),
           **ranking(scores["test"])}]
  setting = _Setting(model, apply_fn, variables, benchmark, scores, privileged, num_groups,
                     jax.random.key(seed), activations)
  debiased = {}
  for i, (label, method) in enumerate(methods.items()):
    if log is not None:
      log(f"[{i + 1}/{len(methods)}] {label} ...")
    start = time.perf_counter()
    folder = None if checkpoint_dir is None else os.path.join(checkpoint_dir, slug(label))
    inner = (None if progress is None else lambda task, done, total, label=label: progress(
        f"{label}: {task}", done, total))
    d, test_scores = fit_method(method, setting._replace(checkpoints=folder, progress=inner))
    if test_scores is None:
      test_scores = test_scores_of(d)
    probability = np.asarray(d.decide(test_scores, test.group), np.float32)
    seconds = time.perf_counter() - start
    debiased[label] = d
    rows.append({"method": label, "seconds": seconds, **summary(probability),
                 **ranking(test_scores)})
    if log is not None:
      log(f"[{i + 1}/{len(methods)}] {label}: {seconds:.1f}s")
    if progress is not None:
      progress("methods", i + 1, len(methods))
  front = pareto_front(rows, gap=pareto_metric)
  for r in rows:
    r["pareto"] = r["method"] in front
  return DebiasResult(rows, front, debiased, scores)
