"""Zeroth-order weight search (Savani et al., 2020): random perturbation, layer-wise optimisation.

Both methods score *candidate weight sets* by Savani's objective at their best threshold
(:mod:`debiasjax.methods.objective`). A candidate costs one forward pass over the debias split
and one threshold sweep; here a whole population is scored in one vmapped, jitted call (chunked
when memory requires): a [K, N] score matrix, then a [K, T] objective matrix, then an argmax.
The paper's code scores one candidate and one threshold at a time.

* :func:`random_perturbation` -- Algorithm 1: every round multiplies the weights (all, or the
  named layers') by ``1 + sigma * N(0, 1)``, always starting from the trained weights, and keeps
  the best candidate with its threshold. The best candidate is rebuilt from its key, so the
  result is a true copy (Savani v1's code kept a view that the next round overwrote).
* :func:`layerwise_optimisation` -- Algorithm 2 with a population-based optimiser: for each
  layer the user names, a cross-entropy-method search (a diagonal Gaussian over the layer's
  weights inside the box ``w +- box * std(w)`` of Savani v2's code, refitted to the best
  quarter of each generation) whose whole generation is scored in one vmapped call; the
  threshold is re-tuned for every candidate, and a layer's result is kept only if it beats the
  best model so far (Savani v2's code compared scores of opposite sign, so the last layer
  always won).

**Why not GBRT.** The paper optimises each layer with scikit-optimize's gradient-boosted-tree
Bayesian optimisation (``gbrt_minimize``, LCB acquisition): an ask/tell loop that proposes one
point at a time and refits a tree ensemble on all points so far, in as many dimensions as the
layer has weights. The surrogate dominates the cost and cannot use a vmapped objective. A
population method evaluates P proposals per step in one compiled call, needs no surrogate, and
scales to layers of thousands of weights; with the same number of evaluations it reaches
comparable objectives in our runs, in a fraction of the time.

Both are factories of a :class:`Search`: hyper-parameters (the objective among them) in the
factory, and ``search(score_fn, variables, data, key) -> WeightResult`` with ``score_fn(variables,
x) -> P(y = 1)``. The search is pure: it jits and vmaps over seeds (keys) or trained models
(stacked variables) as long as ``score_fn`` does.

Example:
  score_fn = lambda v, x: positive_probability(model.apply(v, x))
  rp = random_perturbation(objective=Objective("v1", "statistical_parity"))
  result = rp.search(score_fn, variables, bench.debias, jax.random.key(0))
  result.variables, result.threshold, result.trace["score"]        # [K] candidate scores
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from debiasjax import _checks, parallel
from debiasjax._checks import check_int
from debiasjax.progress import notify
from debiasjax.methods.finetuning import num_groups_of, split_arrays
from debiasjax.methods.objective import Objective, WeightResult, as_objective, \
    bootstrap_weights, check_objective, threshold_grid, threshold_search

ScoreFn = Callable[[Any, jax.Array], jax.Array]


class Search(NamedTuple):
  """``search(score_fn, variables, data, key, *, privileged=None, checkpoints=None) ->
  WeightResult``: a zeroth-order search for weights on ``data`` (the debias split);
  ``privileged``, when given, is the data's privileged group and replaces the objective's;
  ``checkpoints`` (a :class:`~debiasjax.checkpoint.Checkpoints`, eager runs only): the search
  saves its state there after every chunk or generation and resumes from the latest, to the
  result an uninterrupted search gives; ``progress`` (:mod:`debiasjax.progress`) is called
  after every chunk of candidates or generation."""
  search: Callable[..., WeightResult]


def _selected(params, layers: Optional[Sequence[str]]) -> dict:
  """{path tuple: bool} -- which parameter leaves the search may change."""
  flat = traverse_util.flatten_dict(params)
  if layers is None:
    return {k: True for k in flat}
  prefixes = [tuple(p for p in layer.split("/") if p) for layer in layers]
  chosen = {k: any(k[:len(p)] == p for p in prefixes) for k in flat}
  missing = [name for name, p in zip(layers, prefixes) if not any(k[:len(p)] == p for k in flat)]
  if missing:
    names = sorted({"/".join(k[:-1]) for k in flat})
    raise ValueError(f"layers: {missing} name no parameters; modules with parameters: "
                     f"{', '.join(names)}")
  return chosen


def perturb(key: jax.Array, params: Any, *, sigma: float, layers: Optional[Sequence[str]] = None,
            scale=1.0):
  """``w * (1 + scale * sigma * N(0, 1))`` elementwise for every selected parameter leaf
  (``scale=0`` gives ``params`` exactly: the unperturbed model as a candidate).

  One normal draw covers all selected entries (one RNG call compiles far faster than one per
  tensor for deep networks).
  """
  flat = traverse_util.flatten_dict(params)
  chosen = _selected(params, layers)
  keys = [k for k in flat if chosen[k]]
  sizes = [int(np.prod(flat[k].shape)) for k in keys]
  noise = jax.random.normal(key, (sum(sizes),), jnp.float32)
  out = dict(flat)
  for k, q in zip(keys, jnp.split(noise, np.cumsum(sizes)[:-1])):
    w = flat[k]
    out[k] = w * (1.0 + (scale * sigma) * q.reshape(w.shape).astype(w.dtype))
  return traverse_util.unflatten_dict(out)



def _with_params(variables, params):
  return {**variables, "params": params}


def _rebuild_layer(params, layer: str, vector: jax.Array):
  """``params`` with the leaves under ``layer`` replaced by the entries of ``vector``."""
  flat = traverse_util.flatten_dict(params)
  chosen = _selected(params, [layer])
  keys = [k for k in flat if chosen[k]]
  sizes = [int(np.prod(flat[k].shape)) for k in keys]
  new = dict(flat)
  for k, part in zip(keys, jnp.split(vector, np.cumsum(sizes)[:-1])):
    new[k] = part.reshape(flat[k].shape).astype(flat[k].dtype)
  return traverse_util.unflatten_dict(new)


@functools.lru_cache(maxsize=64)
def _population_scorer(score_fn: ScoreFn, objective: Objective, num_groups: int, kind: str,
                       option: Any, with_params: bool = False):
  """A jitted ``(variables, x, y, g, thresholds, weights, zs) -> ThresholdChoice [P]`` (and
  the candidates' parameters [P, ...] with ``with_params``).

  Candidate ``z`` is a PRNG key and a noise scale (``kind="perturb"``, ``option=(sigma,
  layers)``) or the flat weight vector of one layer (``kind="layer"``, ``option=layer``).
  Cached, so repeated searches with one ``score_fn`` compile once.
  """
  def make_params(params, z):
    if kind == "perturb":
      sigma, layers = option
      key, scale = z
      return perturb(key, params, sigma=sigma, layers=layers, scale=scale)
    return _rebuild_layer(params, option, z)

  def one(variables, x, y, g, thresholds, weights, z):
    params = make_params(variables["params"], z)
    s = score_fn(_with_params(variables, params), x)
    choice = threshold_search(objective, s, y, g, num_groups=num_groups, thresholds=thresholds,
                              weights=weights)
    return choice, params

  def placed(x, zs):
    """On several devices: the candidates split over ``"models"``, the rows over ``"data"``."""
    return parallel.constrain(x, parallel.DATA), parallel.constrain(zs, parallel.MODELS)

  @jax.jit
  def run(variables, x, y, g, thresholds, weights, zs):
    x, zs = placed(x, zs)
    return jax.vmap(lambda z: one(variables, x, y, g, thresholds, weights, z)[0])(zs)

  @jax.jit
  def run_with_best(variables, x, y, g, thresholds, weights, zs, eligible):
    """Also the parameters and score of the best eligible candidate (the first on ties)."""
    x, zs = placed(x, zs)
    choices, params = jax.vmap(lambda z: one(variables, x, y, g, thresholds, weights, z))(zs)
    score = jnp.where(eligible, choices.score, -jnp.inf)
    best = jnp.argmax(score)
    return choices, jax.tree.map(lambda v: v[best], params), score[best]

  return run_with_best if with_params else run


@functools.lru_cache(maxsize=64)
def _single_scorer(score_fn: ScoreFn, objective: Objective, num_groups: int):
  """A jitted ``(variables, x, y, g, thresholds, weights) -> ThresholdChoice``."""
  @jax.jit
  def run(variables, x, y, g, thresholds, weights):
    return threshold_search(objective, score_fn(variables, x), y, g, num_groups=num_groups,
                            thresholds=thresholds, weights=weights)
  return run


def _map_chunks(fn: Callable, xs: Any, chunk_size: Optional[int]):
  """``fn(xs)`` (vectorised over the leading axis) in chunks of ``chunk_size``, the last one
  padded to equal size so one compilation serves all."""
  k = jax.tree.leaves(xs)[0].shape[0]
  size = k if chunk_size is None else max(1, min(int(chunk_size), k))
  if size == k:
    return fn(xs)
  pad = -k % size
  padded = jax.tree.map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, 0)]), xs)
  outs = [fn(jax.tree.map(lambda a: a[i:i + size], padded)) for i in range(0, k + pad, size)]
  return jax.tree.map(lambda *o: jnp.concatenate(o)[:k], *outs)


class _Resume:
  """A search's loop state saved after every unit of work (a chunk, a generation) in
  ``checkpoints`` and restored from its latest one; ``identity`` (the search's settings, its
  key and the data's size) must match, so a folder never resumes a different search. Without
  checkpoints it does nothing."""

  def __init__(self, checkpoints, kind: str, key, inputs, progress=None, **settings):
    self.checkpoints, self.identity, self.progress = checkpoints, None, progress
    if checkpoints is None:
      return
    if not all(_checks.is_concrete(v) for v in jax.tree.leaves((key, inputs))):
      raise ValueError("checkpoints: a search can save and resume only when run eagerly; under "
                       "jit or vmap pass checkpoints=None")
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(inputs):
      digest.update(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
    self.identity = {"search": kind, "key": np.asarray(jax.random.key_data(key)).tolist(),
                     "inputs": digest.hexdigest()[:16],
                     **{k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}}

  def latest(self) -> int:
    """The number of units done in the latest checkpoint (0 without one)."""
    if self.checkpoints is None or self.checkpoints.latest_step() is None:
      return 0
    saved = self.checkpoints.metadata()
    if saved != self.identity:
      raise ValueError(f"checkpoints: {self.checkpoints.directory} holds a different search "
                       f"({saved}); expected {self.identity}. Use a fresh folder")
    return int(self.checkpoints.latest_step())

  def restore(self, template):
    return self.checkpoints.restore(template)

  def save(self, done: int, state) -> None:
    if self.checkpoints is not None:
      self.checkpoints.save(done, state, metadata=self.identity)


class _Problem(NamedTuple):
  """A validated search problem: scores populations of candidates on the debias split."""
  objective: Objective
  score_fn: ScoreFn
  variables: Any
  arrays: tuple             # x, y, g, thresholds, weights
  num_groups: int

  def population(self, kind: str, option: Any, zs, chunk_size: Optional[int] = None,
                 params: Any = None):
    """Threshold choices of candidates ``zs`` built from ``params`` (default: the model's).

    ``chunk_size=None`` scores all candidates in one call for tables, and for images one per
    device of the mesh's ``"models"`` axis (one at a time on one device): vmapping a
    convolution over candidate kernels makes XLA:CPU compile a grouped convolution that takes
    longer to build and no less time to run (measured on ResNet-18).
    """
    if chunk_size is None and jnp.ndim(self.arrays[0]) > 2:
      chunk_size = parallel.size(parallel.MODELS)
    run = _population_scorer(self.score_fn, self.objective, self.num_groups, kind, option)
    variables = self.variables if params is None else _with_params(self.variables, params)
    return _map_chunks(lambda z: run(variables, *self.arrays, z), zs, chunk_size)

  def population_and_best(self, kind: str, option: Any, zs, eligible: int,
                          chunk_size: Optional[int] = None, resume: Optional[_Resume] = None):
    """:meth:`population` and the parameters of the best of the first ``eligible``
    candidates (the first on ties), kept from the scoring program's own output rather than
    rebuilt by a second program. Traceable (vmaps over seeds); with ``resume``, saved after
    every chunk and resumed from the last one saved."""
    if chunk_size is None and jnp.ndim(self.arrays[0]) > 2:
      chunk_size = parallel.size(parallel.MODELS)
    run = _population_scorer(self.score_fn, self.objective, self.num_groups, kind, option, True)
    k = jax.tree.leaves(zs)[0].shape[0]
    size = k if chunk_size is None else max(1, min(int(chunk_size), k))
    pad = -k % size
    padded = zs if not pad else jax.tree.map(
        lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, 0)]), zs)
    chunk_at = lambda start: jax.tree.map(lambda a: a[start:start + size], padded)
    outs, best_score, best_params, first = [], None, None, 0
    if resume is not None and resume.latest():
      done = resume.latest()
      one = jax.eval_shape(run, self.variables, *self.arrays, chunk_at(0), np.ones(size, bool))
      zeros = lambda a, shape=None: jnp.zeros(a.shape if shape is None else shape, a.dtype)
      template = {"choices": {f: zeros(a, (done * size,) + a.shape[1:])
                              for f, a in one[0]._asdict().items()},
                  "params": jax.tree.map(zeros, one[1]), "score": zeros(one[2])}
      saved = resume.restore(template)
      outs = [type(one[0])(**saved["choices"])]
      best_params, best_score, first = saved["params"], saved["score"], done * size
    notify(resume.progress if resume is not None else None, "candidates", 0, k)
    for start in range(first, k + pad, size):
      mask = np.arange(start, start + size) < eligible
      choices, picked, score = run(self.variables, *self.arrays, chunk_at(start), mask)
      outs.append(choices)
      if best_params is None:
        best_params, best_score = picked, score
      else:
        better = score > best_score
        if _checks.is_concrete(better):      # eagerly: keep one set, no select per leaf
          if bool(better):
            best_params, best_score = picked, score
        else:                                # traced (e.g. vmapped over seeds)
          best_params = jax.tree.map(lambda new, old: jnp.where(better, new, old), picked,
                                     best_params)
          best_score = jnp.where(better, score, best_score)
      if resume is not None:
        if resume.checkpoints is not None:   # the candidates so far, only when they are kept
          so_far = jax.tree.map(lambda *o: jnp.concatenate(o), *outs)
          resume.save(start // size + 1, {"choices": so_far._asdict(), "params": best_params,
                                          "score": best_score})
        notify(resume.progress, "candidates", min(start + size, k), k)
    choices = outs[0] if len(outs) == 1 else jax.tree.map(lambda *o: jnp.concatenate(o), *outs)
    return jax.tree.map(lambda v: v[:k], choices), best_params

  def single(self, params):
    """The threshold choice of one parameter set (one compiled program)."""
    run = _single_scorer(self.score_fn, self.objective, self.num_groups)
    return run(_with_params(self.variables, params), *self.arrays)


def _setup(score_fn, variables, data, objective, num_groups, num_thresholds, num_bootstrap,
           key, privileged) -> tuple[_Problem, jax.Array]:
  """The checked problem of a search and the key left for the search itself (the other half of
  ``key`` draws the bootstrap weights)."""
  boot_key, search_key = jax.random.split(_checks.check_key("key", key))
  objective = check_objective(objective, privileged)
  x, y, g = split_arrays(data)
  check_int("num_thresholds", num_thresholds, 2)
  check_int("num_bootstrap", num_bootstrap, 0)
  if "params" not in variables:
    raise ValueError(f"variables: expected a dict with 'params', got keys {list(variables)}")
  n = num_groups_of(g, num_groups)
  weights = (bootstrap_weights(boot_key, jnp.shape(y)[0], num_bootstrap) if num_bootstrap
             else jnp.ones((1, jnp.shape(y)[0]), jnp.float32))
  arrays = (jnp.asarray(x), jnp.asarray(y), jnp.asarray(g), threshold_grid(num_thresholds), weights)
  return _Problem(objective, score_fn, variables, arrays, n), search_key


def random_perturbation(*, objective: Objective = Objective(), num_candidates: int = 101,
                        sigma: float = 0.1, layers: Optional[Sequence[str]] = None,
                        num_thresholds: int = 501, num_bootstrap: int = 0,
                        include_original: bool = False, chunk_size: Optional[int] = None,
                        num_groups: Optional[int] = None) -> Search:
  """Savani et al.'s random perturbation (Algorithm 1), all candidates in one vmapped call.

  Candidate k multiplies every selected weight by ``q ~ N(1, sigma)`` (``w' = w * q``; BatchNorm
  statistics are not parameters and stay), is scored at its best threshold of
  ``linspace(0, 1, num_thresholds)``, and the best candidate wins.

  ``search(score_fn, variables, data, key)``: ``score_fn(variables, x) -> P(y = 1)`` [N] (eval
  mode); ``variables`` the trained model's (``"params"`` is perturbed); ``data`` the debias
  split (``x``, ``y``, ``group``; a Split or a dict); candidate k uses ``fold_in(key, k)``.

  Args:
    objective: Savani's objective (v1: T = 201 candidates in the paper's configs; v2: 101,
      5 bootstraps, margin 0.01).
    num_candidates: K, the number of perturbed copies.
    sigma: standard deviation of the multiplicative noise (0.1).
    layers: module paths whose parameters are perturbed (default: all).
    num_thresholds: threshold grid size (501).
    num_bootstrap: resamples of the debias split averaged in phi (v2: 5; 0: the split itself).
    include_original: also consider the unperturbed model (the paper does not).
    chunk_size: candidates per vmapped call (default: all at once for tables, one at a time
      for images).
    num_groups: number of groups (default: inferred).

  Returns:
    :class:`WeightResult`; ``trace`` holds the per-candidate ``score``, ``phi``, ``threshold``,
    ``bias``, ``performance`` [K] and ``original`` (the unperturbed model's threshold choice).
  """
  check_int("num_candidates", num_candidates, 1)
  if not sigma > 0:
    raise ValueError(f"sigma: expected a positive noise scale, got {sigma}")
  objective = as_objective(objective)
  layers = None if layers is None else tuple(layers)

  def search(score_fn: ScoreFn, variables: Any, data: Any, key: jax.Array, *,
             privileged: Optional[int] = None, checkpoints=None,
             progress=None) -> WeightResult:
    problem, cand_key = _setup(score_fn, variables, data, objective, num_groups, num_thresholds,
                               num_bootstrap, key, privileged)
    params = variables["params"]
    _selected(params, layers)                                   # validates `layers`
    resume = _Resume(checkpoints, "random_perturbation", key, (variables, problem.arrays),
                     progress, num_candidates=num_candidates, sigma=float(sigma), layers=layers,
                     chunk_size=chunk_size, objective=repr(problem.objective))
    # The unperturbed model is candidate K (noise scale 0): scored by the same program.
    keys = jax.vmap(lambda i: jax.random.fold_in(cand_key, i))(jnp.arange(num_candidates + 1))
    scales = jnp.ones(num_candidates + 1).at[-1].set(0.0)
    scored, best_params = problem.population_and_best(
        "perturb", (float(sigma), layers), (keys, scales), num_candidates, chunk_size, resume)
    choices = jax.tree.map(lambda v: v[:-1], scored)
    original = jax.tree.map(lambda v: v[-1], scored)
    best = jnp.argmax(choices.score)
    pick = lambda field: getattr(choices, field)[best]
    result = WeightResult(_with_params(variables, best_params), pick("threshold"), pick("phi"),
                          pick("score"), pick("bias"), pick("performance"),
                          {**choices._asdict(), "original": original._asdict(), "best": best})
    if include_original:
      use_original = original.score > result.score
      if _checks.is_concrete(use_original):
        choose = lambda a, b: a if bool(use_original) else b
      else:
        choose = lambda a, b: jax.tree.map(lambda u, v: jnp.where(use_original, u, v), a, b)
      result = result._replace(variables=choose(variables, result.variables),
                               **{f: choose(getattr(original, f), getattr(result, f))
                                  for f in ("threshold", "phi", "score", "bias", "performance")})
    return result

  return Search(search)


def _layer_vector(params, layer: str):
  """The leaves under module ``layer`` as one vector, and each entry's tensor std."""
  flat = traverse_util.flatten_dict(params)
  chosen = _selected(params, [layer])
  leaves = [flat[k] for k in flat if chosen[k]]
  vector = jnp.concatenate([w.ravel() for w in leaves])
  spread = jnp.concatenate([jnp.full(w.size, jnp.std(w)) for w in leaves])
  return vector, spread


def last_parameterised_modules(params, count: int = 2) -> list[str]:
  """The last ``count`` top-level modules with parameters (Flax keeps their creation order):
  layer-wise optimisation's default (``["stage4", "head"]`` of our ResNets, ``["layerN",
  "head"]`` of the MLP)."""
  return list(params)[-count:]


def layerwise_optimisation(*, layers: Optional[Sequence[str]] = None,
                           objective: Objective = Objective(), population: int = 32,
                           generations: int = 10, elite: float = 0.25, box: float = 2.2,
                           init_scale: float = 0.25, num_thresholds: int = 501,
                           num_bootstrap: int = 0, chunk_size: Optional[int] = None,
                           num_groups: Optional[int] = None) -> Search:
  """Savani et al.'s layer-wise optimisation (Algorithm 2) with a vmapped population optimiser.

  For each module in ``layers``, in order, a cross-entropy-method search over all its
  parameters ``theta`` inside the box ``w +- box * std(w)`` (per parameter tensor): each of
  ``generations`` generations draws ``population`` candidates from ``N(mean, diag(s^2))``,
  clipped to the box, scores them in one vmapped call (each at its best threshold), and refits
  ``mean, s`` to the best ``elite`` fraction. The search starts at the current best weights with
  ``s = init_scale * box * std(w)``. After a layer, its best candidate is kept if its score
  beats the best model so far (the trained model with its tuned threshold, to begin with), and
  the next layer starts from the kept weights.

  Args:
    layers: module paths to optimise, in order (e.g. ``["layer10", "head"]`` for the MLP;
      default: :func:`last_parameterised_modules`).
    objective, num_thresholds, num_bootstrap, chunk_size, num_groups: as
      :func:`random_perturbation`.
    population: candidates per generation (scored in one call).
    generations: generations per layer (population * generations evaluations per layer).
    elite: fraction of a generation the distribution is refitted to.
    box: half-width of the search box in standard deviations of each tensor (2.2).
    init_scale: initial search spread as a fraction of the box.

  The search's :class:`WeightResult` ``trace`` holds per layer the best score of every
  generation (``generation_best`` [L, generations]), the layer's best score (``layer_score``
  [L]) and whether it was kept (``kept`` [L]).
  """
  if layers is not None and not layers:
    raise ValueError("layers: expected at least one module path to optimise, got none")
  check_int("population", population, 2)
  check_int("generations", generations, 1)
  if not 0 < elite <= 0.5:
    raise ValueError(f"elite: expected a fraction in (0, 0.5], got {elite}")
  if not box > 0:
    raise ValueError(f"box: expected a positive half-width, got {box}")
  objective = as_objective(objective)
  num_elite = max(1, int(round(elite * population)))

  def search(score_fn: ScoreFn, variables: Any, data: Any, key: jax.Array, *,
             privileged: Optional[int] = None, checkpoints=None,
             progress=None) -> WeightResult:
    problem, search_key = _setup(score_fn, variables, data, objective, num_groups,
                                 num_thresholds, num_bootstrap, key, privileged)
    chosen = (list(layers) if layers is not None
              else last_parameterised_modules(variables["params"]))
    for layer in chosen:
      _selected(variables["params"], [layer])
    resume = _Resume(checkpoints, "layerwise_optimisation", key, (variables, problem.arrays),
                     progress, layers=chosen, population=population, generations=generations,
                     elite=elite, box=box, init_scale=init_scale, chunk_size=chunk_size,
                     objective=repr(problem.objective))
    num_layers = len(chosen)

    def layer_start(run, i):
      """Layer ``i``'s search distribution and best so far, from the weights kept so far."""
      w0, std = _layer_vector(run["params"], chosen[i])
      return {"mean": w0, "spread": init_scale * box * std + 1e-8, "best_v": w0,
              "best": run["current"]}

    def generation(run, lay, i, gen):
      """One generation of layer ``i``: draw, score in one call, refit to the elite."""
      w0, std = _layer_vector(run["params"], chosen[i])
      k = jax.random.fold_in(jax.random.fold_in(search_key, i), gen)
      pop = jnp.clip(lay["mean"][None] + lay["spread"][None]
                     * jax.random.normal(k, (population, w0.size)),
                     (w0 - box * std)[None], (w0 + box * std)[None])
      choices = problem.population("layer", chosen[i], pop, chunk_size, run["params"])
      order = jnp.argsort(-choices.score)
      elites = pop[order[:num_elite]]
      top = order[0]
      better = choices.score[top] > lay["best"]["score"]
      lay = {"mean": elites.mean(0), "spread": elites.std(0) + 1e-3 * std + 1e-8,
             "best_v": jnp.where(better, pop[top], lay["best_v"]),
             "best": {f: jnp.where(better, getattr(choices, f)[top], old)
                      for f, old in lay["best"].items()}}
      run = {**run, "generation_best": run["generation_best"].at[i, gen].set(choices.score[top])}
      return run, lay

    def layer_end(run, lay, i):
      """Keeps layer ``i``'s best weights if they beat the best model so far."""
      improved = lay["best"]["score"] > run["current"]["score"]
      keep = lambda new, old: jax.tree.map(lambda u, v: jnp.where(improved, u, v), new, old)
      return {**run, "params": keep(_rebuild_layer(run["params"], chosen[i], lay["best_v"]),
                                    run["params"]),
              "current": keep(lay["best"], run["current"]),
              "layer_score": run["layer_score"].at[i].set(lay["best"]["score"]),
              "kept": run["kept"].at[i].set(improved)}

    current = problem.single(variables["params"])._asdict()
    run = {"params": variables["params"], "current": current,
           "generation_best": jnp.zeros((num_layers, generations), current["score"].dtype),
           "layer_score": jnp.zeros(num_layers, current["score"].dtype),
           "kept": jnp.zeros(num_layers, bool)}
    done = resume.latest()                  # generations finished, over all layers
    i, gen = divmod(max(done - 1, 0), generations)
    lay = layer_start(run, i)
    if done:
      run, lay = resume.restore((run, lay))
      gen += 1
    notify(resume.progress, "generations", 0, num_layers * generations)
    while i < num_layers:
      if gen == generations:
        run = layer_end(run, lay, i)
        i, gen = i + 1, 0
        if i < num_layers:
          lay = layer_start(run, i)
        continue
      run, lay = generation(run, lay, i, gen)
      gen += 1
      resume.save(i * generations + gen, (run, lay))
      notify(resume.progress, "generations", i * generations + gen, num_layers * generations)
    c = run["current"]
    trace = {f: run[f] for f in ("generation_best", "layer_score", "kept")}
    return WeightResult(_with_params(variables, run["params"]), c["threshold"], c["phi"],
                        c["score"], c["bias"], c["performance"], trace)

  return Search(search)
