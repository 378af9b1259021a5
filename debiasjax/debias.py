"""One call that debiases a trained model with several methods and evaluates them alike.

:func:`debias` fits every requested method on the benchmark's *debias* split and evaluates the
result, and the untouched model, on the *test* split with the same metrics. Post-processors are
evaluated by their expected decisions (``probability``), so randomised rules are measured
without sampling noise; weight-changing methods (random perturbation, layer-wise optimisation,
adversarial fine-tuning, Zhang et al., plain fine-tuning) by their new weights' scores at the
threshold they chose. The result has one row per method and the Pareto front over a
performance metric (higher is better) and a fairness gap (lower is better).

Example:
  result = debias(model, variables, bench, methods=[
      ("threshold_optimizer", {"constraint": "demographic_parity"}),
      {"method": "threshold_optimizer", "label": "ThrOpt (EO)", "constraint": "equalized_odds"},
      ("random_perturbation", {"bias": "statistical_parity", "num_candidates": 64}),
      "reject_option"])
  result.rows        # [{"method": "Vanilla", "accuracy": ..., "equalized_odds": ...}, ...]
  result.pareto      # labels of the rows on the front
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import flax.linen as nn
import jax
import numpy as np

from debiasjax.data.dataset import Benchmark
from debiasjax.evaluate import fairness_summary, predict_scores
from debiasjax.methods import clarc
from debiasjax.methods.finetuning import METHODS as WEIGHT_METHODS, TARGETS
from debiasjax.methods.objective import SHORT as BIAS_SHORT, Objective
from debiasjax.methods.postprocessing import METHODS as POSTPROCESSORS

SHORT_NAMES = {"threshold_optimizer": "ThrOpt", "reject_option": "ROC", "equalized_odds": "EqOdds",
               "calibrated_equalized_odds": "CalibEqOdds", "naive_threshold": "NaiveThr",
               "random_perturbation": "Random", "layerwise_optimisation": "LayerwiseOpt",
               "savani_adversarial": "Adversarial", "zhang_adversarial": "Zhang",
               "fine_tune": "FineTune", "p_clarc": "P-ClArC", "mass_mean": "Mass-mean",
               "leace": "LEACE", "a_clarc": "A-ClArC", "rr_clarc": "RR-ClArC"}
# Keyword arguments of a weight method that build its Objective (the rest go to the method).
OBJECTIVE_FIELDS = ("version", "bias", "lam", "epsilon", "margin")
# Arguments debias() supplies itself.
_SUPPLIED = ("score_fn", "model", "variables", "data", "key", "objective", "num_groups")
_ABBREVIATIONS = {"demographic_parity": "DP", "equalized_odds": "EO",
                  "true_positive_rate_parity": "TPR", "false_positive_rate_parity": "FPR",
                  "true_negative_rate_parity": "TNR", "false_negative_rate_parity": "FNR",
                  "statistical_parity": "SPD", "average_odds": "AOD", "equal_opportunity": "EOpp"}
MethodSpec = Union[str, tuple, dict]


class Method(NamedTuple):
  """A resolved method: registry name, row label and keyword arguments of its factory."""
  name: str
  label: str
  kwargs: dict


class DebiasResult(NamedTuple):
  rows: list              # one dict per method (Vanilla first): metrics, "seconds", "pareto"
  pareto: list            # labels of the rows on the Pareto front
  states: dict            # label -> fitted state
  scores: dict            # "debias" / "test" -> the model's P(y = 1)


def default_label(name: str, kwargs: dict) -> str:
  """E.g. ``ThrOpt (EO, flip)`` for threshold_optimizer(constraint="equalized_odds", flip=True)."""
  parts = [_ABBREVIATIONS.get(str(v), str(v)) for k, v in kwargs.items()
           if k in ("constraint", "metric", "cost_constraint")]
  parts += [BIAS_SHORT.get(str(v), str(v)) for k, v in kwargs.items() if k == "bias"]
  parts += [str(v) for k, v in kwargs.items() if k == "version"]
  parts += [k for k, v in kwargs.items() if v is True]
  return SHORT_NAMES.get(name, name) + (f" ({', '.join(parts)})" if parts else "")


def resolve_methods(methods: Sequence[MethodSpec]) -> list[Method]:
  """Validates method specs: ``"name"``, ``("name", kwargs)`` or ``{"method": name,
  "label": ..., **kwargs}``. Unknown names or arguments raise ``ValueError`` listing what exists."""
  resolved = []
  for spec in methods:
    if isinstance(spec, str):
      name, kwargs, label = spec, {}, None
    elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict):
      name, kwargs, label = spec[0], dict(spec[1]), None
    elif isinstance(spec, dict) and "method" in spec:
      kwargs = {k: v for k, v in spec.items() if k not in ("method", "label")}
      name, label = spec["method"], spec.get("label")
    else:
      raise ValueError(f"methods: expected 'name', ('name', kwargs) or {{'method': name, ...}}, "
                       f"got {spec!r}")
    if name not in POSTPROCESSORS and name not in WEIGHT_METHODS and name not in clarc.METHODS:
      available = sorted(POSTPROCESSORS) + sorted(WEIGHT_METHODS) + sorted(clarc.METHODS)
      raise ValueError(f"methods: unknown method {name!r}; available: {', '.join(available)}")
    accepted = _accepted_arguments(name)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
      raise ValueError(f"methods: {name} has no argument(s) {unknown}; it accepts "
                       f"{', '.join(sorted(accepted))}")
    resolved.append(Method(name, label or default_label(name, kwargs), kwargs))
  labels = [m.label for m in resolved]
  if len(set(labels)) != len(labels) or "Vanilla" in labels:
    raise ValueError(f"methods: labels must be unique and not 'Vanilla', got {labels}")
  return resolved


def _accepted_arguments(name: str) -> set:
  if name in POSTPROCESSORS:
    return set(inspect.signature(POSTPROCESSORS[name]).parameters)
  if name in clarc.METHODS:
    return set(inspect.signature(clarc.TARGETS[name]).parameters) - set(_SUPPLIED) - {"split"} | {"seed"}
  params = set(inspect.signature(TARGETS[name]).parameters) - set(_SUPPLIED)
  return params | set(OBJECTIVE_FIELDS) | {"seed"}


def pareto_front(rows: Sequence[dict], *, performance: str = "balanced_accuracy",
                 gap: str = "equalized_odds") -> list[str]:
  """Labels of the rows no other row dominates (>= performance and <= gap, one strictly)."""
  points = [(r["method"], r[performance], r[gap]) for r in rows]
  front = []
  for name, p, q in points:
    dominated = any(p2 >= p and q2 <= q and (p2 > p or q2 < q) for _, p2, q2 in points)
    if not dominated:
      front.append(name)
  return front


def _fit_weight_method(m: Method, model: nn.Module, variables, benchmark: Benchmark,
                       privileged: Optional[int], num_groups: int, seed: int):
  """Runs a weight-changing method; returns its SearchResult."""
  kwargs = dict(m.kwargs)
  fields = {k: kwargs.pop(k) for k in OBJECTIVE_FIELDS if k in kwargs}
  objective = Objective(**fields, privileged=1 if privileged is None else privileged)
  key = jax.random.key(kwargs.pop("seed", seed))
  return WEIGHT_METHODS[m.name](model, variables, benchmark.debias, key=key,
                                objective=objective, num_groups=num_groups, **kwargs)


def debias(model: Union[nn.Module, Callable[[Any, Any], Any]], variables: Any,
           benchmark: Benchmark, *, methods: Sequence[MethodSpec],
           pareto_metric: str = "equalized_odds", threshold: float = 0.5,
           batch_size: int = 512, seed: int = 0) -> DebiasResult:
  """Runs ``methods`` on ``benchmark.debias`` and evaluates them and Vanilla on
  ``benchmark.test``.

  Args:
    model: the trained Flax module, or just its ``apply_fn(variables, x) -> logits`` when only
      post-processors are run (weight-changing methods need the module).
    variables: its variables.
    benchmark: train / debias / test splits; ``info["privileged"]`` is passed to methods that
      take a privileged group unless given.
    methods: method specs (see :func:`resolve_methods`): post-processors
      (:data:`debiasjax.methods.POSTPROCESSORS`) and weight-changing methods
      (:data:`debiasjax.methods.WEIGHT_METHODS`; their Savani objective from the keyword
      arguments ``version``, ``bias``, ``lam``, ``epsilon``, ``margin``; ``seed`` for their key)
      and concept methods (:data:`debiasjax.methods.CONCEPT_METHODS`: ``p_clarc``,
      ``mass_mean``, ``leace``, ``a_clarc``, ``rr_clarc``; the concept is the protected attribute).
    pareto_metric: the gap of the Pareto front (``demographic_parity``, ``equalized_odds``,
      ``equal_opportunity``, ``average_odds``).
    threshold: Vanilla's decision threshold on P(y = 1).
    batch_size: rows per forward pass when scoring.
    seed: default seed of the weight-changing methods.

  ``states`` maps each method's label to its fitted state: a post-processor's state, a
  :class:`~debiasjax.methods.search.SearchResult` with the new ``variables`` and ``threshold``,
  or a :class:`~debiasjax.methods.clarc.ConceptResult` whose ``model`` (edited for P-ClArC,
  mass-mean and LEACE) is what was scored.
  """
  resolved = resolve_methods(methods)
  if pareto_metric not in ("demographic_parity", "equalized_odds", "equal_opportunity",
                           "average_odds"):
    raise ValueError(f"pareto_metric: expected a fairness gap name, got {pareto_metric!r}")
  is_module = isinstance(model, nn.Module)
  needs_module = [m.label for m in resolved if m.name in WEIGHT_METHODS or m.name in clarc.METHODS]
  if needs_module and not is_module:
    raise ValueError(f"model: {needs_module} change the weights and need the Flax module, got "
                     f"{type(model).__name__}")
  apply_fn = model.apply if is_module else model
  privileged = benchmark.info.get("privileged")
  num_groups = int(max(benchmark.debias.group.max(), benchmark.test.group.max())) + 1
  scores = {name: predict_scores(apply_fn, variables, split.x, batch_size=batch_size)
            for name, split in (("debias", benchmark.debias), ("test", benchmark.test))}
  test = benchmark.test
  summary = lambda pred: fairness_summary(test.y, pred, test.group, privileged=privileged)
  rows = [{"method": "Vanilla", "seconds": 0.0,
           **summary((scores["test"] > threshold).astype(np.float32))}]
  states = {}
  for m in resolved:
    start = time.perf_counter()
    if m.name in WEIGHT_METHODS or m.name in clarc.METHODS:
      if m.name in WEIGHT_METHODS:
        state = _fit_weight_method(m, model, variables, benchmark, privileged, num_groups, seed)
      else:
        kwargs = dict(m.kwargs)
        key = jax.random.key(kwargs.pop("seed", seed))
        state = clarc.METHODS[m.name](model, variables, benchmark.debias, key=key, **kwargs)
      scorer = state.model.apply if hasattr(state, "model") else apply_fn
      test_scores = predict_scores(scorer, state.variables, test.x, batch_size=batch_size)
      probability = (test_scores > float(state.threshold)).astype(np.float32)
    else:
      factory = POSTPROCESSORS[m.name]
      kwargs = dict(m.kwargs)
      accepted = inspect.signature(factory).parameters
      if "privileged" in accepted and "privileged" not in kwargs and privileged is not None:
        kwargs["privileged"] = privileged
      if "num_groups" in accepted:
        kwargs.setdefault("num_groups", num_groups)
      processor = factory(**kwargs)
      state = processor.fit(scores["debias"], benchmark.debias.y, benchmark.debias.group)
      probability = np.asarray(processor.probability(state, scores["test"], test.group))
    seconds = time.perf_counter() - start
    states[m.label] = state
    rows.append({"method": m.label, "seconds": seconds, **summary(probability)})
  front = pareto_front(rows, gap=pareto_metric)
  for r in rows:
    r["pareto"] = r["method"] in front
  return DebiasResult(rows, front, states, scores)
