r"""Benchmark: post-processor fitting against fairlearn and AIF360 on the same scores.

  python -m experiments.bench_postprocessing          # about 2 minutes on 2 CPU cores

Scores, labels and two groups of N = 9,000 rows (the size of Adult's validation split in Savani
et al.) from a fixed seed. For each method: the peer's fit, our fit after compilation (median of
repeats) and the compile-inclusive first call, and the ratio. Then B bootstrap refits of the
equalized-odds threshold optimizer: a loop of fairlearn fits vs one vmapped call of ours.
Needs the test requirements (fairlearn, aif360). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import time
import warnings
from importlib.metadata import version

import jax
import numpy as np
from absl import app, flags

from experiments.cli import define_record_flag, save_record, show_table

define_record_flag()
flags.DEFINE_integer("n", 9000, "Rows.")
flags.DEFINE_integer("bootstraps", 32, "Bootstrap refits.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions of our warm fits.")
FLAGS = flags.FLAGS


def data(n: int):
  rng = np.random.default_rng(0)
  g = (rng.uniform(size=n) < 0.67).astype(int)
  y = (rng.uniform(size=n) < np.where(g == 1, 0.31, 0.11)).astype(int)
  s = 1 / (1 + np.exp(-(1.6 * (2 * y - 1) + 0.6 * g + rng.normal(size=n))))
  return s.astype(np.float32), y, g


def seconds(fn) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def secs(t: float) -> str:
  return f"{t:.3g} s"


def ratio(r: float) -> str:
  return f"{r:.0f}×" if r >= 100 else f"{r:.1f}×"


def ours(fn, repeats: int):
  first = seconds(fn)
  warm = float(np.median([seconds(fn) for _ in range(repeats)]))
  return first, warm


def main(argv):
  del argv
  warnings.filterwarnings("ignore")
  from aif360.algorithms import postprocessing as aif
  from debiasjax.methods import postprocessing as P
  from tests.peers import aif360_datasets, fairlearn_threshold_optimizer as fairlearn_to

  s, y, g = data(FLAGS.n)
  truth, pred, groups = aif360_datasets(s, y, g, 1)
  s64 = s.astype(np.float64)[:, None]
  rows = []

  def add(name, peer_name, peer_fn, our_fn):
    start = time.perf_counter()
    peer_fn()
    peer = time.perf_counter() - start
    first, warm = ours(our_fn, FLAGS.repeats)
    rows.append((name, peer_name, peer, first, warm))
    print(f"{name:30s} {peer_name:15s} {peer:8.4f}s   ours {warm:8.4f}s (first call {first:5.2f}s)"
          f"   {peer / warm:6.1f}x", flush=True)

  print(f"N = {FLAGS.n}, jax {jax.__version__} on {jax.devices()[0].platform}\n")
  for constraint, short in (("demographic_parity", "DP"), ("equalized_odds", "EO")):
    ours_to = P.threshold_optimizer(constraint=constraint)
    add(f"ThresholdOptimizer ({short})", f"fairlearn {version('fairlearn')}",
        lambda c=constraint: fairlearn_to(c).fit(s64, y, sensitive_features=g),
        lambda p=ours_to: p.fit(s, y, g))
  roc, eqodds = P.reject_option(privileged=1), P.equalized_odds_postprocessing(privileged=1)
  calib = P.calibrated_equalized_odds(privileged=1)
  add("Reject option, 100 × 50 grid", f"aif360 {version('aif360')}",
      lambda: aif.RejectOptionClassification(**groups).fit(truth, pred), lambda: roc.fit(s, y, g))
  add("Equalized-odds LP", f"aif360 {version('aif360')}",
      lambda: aif.EqOddsPostprocessing(**groups).fit(truth, pred), lambda: eqodds.fit(s, y, g))
  add("Calibrated equalized odds", f"aif360 {version('aif360')}",
      lambda: aif.CalibratedEqOddsPostprocessing(**groups).fit(truth, pred),
      lambda: calib.fit(s, y, g))

  b = FLAGS.bootstraps
  rng = np.random.default_rng(1)
  resamples = [rng.integers(0, len(y), len(y)) for _ in range(b)]
  weights = np.stack([np.bincount(r, minlength=len(y)) for r in resamples]).astype(np.float32)
  to = P.threshold_optimizer(constraint="equalized_odds", num_groups=2)
  batched = jax.jit(jax.vmap(lambda w: to.fit(s, y, g, sample_weight=w)))
  start = time.perf_counter()
  for r in resamples:
    fairlearn_to("equalized_odds").fit(s64[r], y[r], sensitive_features=g[r])
  peer = time.perf_counter() - start
  first, warm = ours(lambda: batched(weights), 1)
  print(f"\n{b} bootstrap refits, ThresholdOptimizer (EO): fairlearn loop {peer:.2f}s, ours one "
        f"vmapped call {warm:.2f}s (first call {first:.2f}s): {peer / warm:.0f}x")
  tables = {}
  show_table(tables, "fits", ["method", "peer", "peer fit", "ours, warm", "ours, first call",
                              "ratio warm"],
             [[name, peer_name, secs(p), secs(w), secs(f), ratio(p / w)]
              for name, peer_name, p, f, w in rows],
             f"{b} bootstrap refits of the equalized-odds threshold optimizer: fairlearn in a loop "
             f"{peer:.2f} s, ours in one vmapped call {warm:.2f} s ({ratio(peer / warm)}; "
             f"{first:.2f} s on the first call).")
  save_record(tables, n=FLAGS.n, bootstraps=b)


if __name__ == "__main__":
  app.run(main)
