"""An exact rational reference of the threshold optimizer's rule for the simple constraints
(fairlearn's algorithm with Fractions: no rounding decides a collinear point or a tie)."""

from fractions import Fraction

import numpy as np

RATES = {"selection_rate": lambda tp, fp, tn, fn: Fraction(tp + fp, tp + fp + tn + fn),
         "true_positive_rate": lambda tp, fp, tn, fn: Fraction(tp, tp + fn),
         "false_positive_rate": lambda tp, fp, tn, fn: Fraction(fp, fp + tn),
         "accuracy": lambda tp, fp, tn, fn: Fraction(tp + tn, tp + fp + tn + fn),
         "balanced_accuracy": lambda tp, fp, tn, fn: (Fraction(tp, tp + fn)
                                                      + Fraction(tn, tn + fp)) / 2}
X_METRIC = {"demographic_parity": "selection_rate",
            "true_positive_rate_parity": "true_positive_rate",
            "false_positive_rate_parity": "false_positive_rate"}


def _group_points(s, y, flip):
  """(x-counts, threshold, greater) of every cut of one group's scores."""
  order = np.argsort(-s, kind="stable")
  s, y = s[order], y[order]
  pos, neg = int(y.sum()), int(len(y) - y.sum())
  cuts = [0] + [k for k in range(1, len(s)) if s[k - 1] != s[k]] + [len(s)]
  out = []
  for k in cuts:
    tp, fp = int(y[:k].sum()), int(k - y[:k].sum())
    t = np.inf if k == 0 else (-np.inf if k == len(s) else (float(s[k - 1]) + float(s[k])) / 2)
    out.append(((tp, fp, neg - fp, pos - tp), t, True))
    if flip:
      out.append(((pos - tp, neg - fp, fp, tp), t, False))
  return out


def _hull(points):
  """fairlearn's upper hull of (x, y, op) points sorted by (x, y), collinear points dropped."""
  selected = []
  for r2 in sorted(points, key=lambda p: (p[0], p[1])):
    while len(selected) >= 2:
      r0, r1 = selected[-2], selected[-1]
      if (r1[1] - r0[1]) * (r2[0] - r0[0]) <= (r2[1] - r0[1]) * (r1[0] - r0[0]):
        selected.pop()
      else:
        break
    selected.append(r2)
  return selected


def _interpolate(hull, grid):
  """fairlearn's interpolation: per grid x, (y, p0, op0, op1)."""
  i, out = 0, []
  while hull[i + 1][0] == hull[0][0]:
    i += 1
  for x in grid:
    while x > hull[i + 1][0]:
      i += 1
    x0, x1 = hull[i][0], hull[i + 1][0]
    p0 = (x1 - x) / (x1 - x0)
    out.append((p0 * hull[i][1] + (1 - p0) * hull[i + 1][1], p0, hull[i][2], hull[i + 1][2]))
  return out


def exact_threshold_probability(s, y, g, *, constraint, objective, flip=False, grid_size=1000,
                                at=None):
  """P(y_hat = 1) of every sample under the exact rule fitted on (s, y, g) (at grid point
  ``at`` instead of the first maximum when given), the maximum and the objective per grid
  point."""
  s, y, g = np.asarray(s, np.float64), np.asarray(y), np.asarray(g)
  grid = [Fraction(k, grid_size) for k in range(grid_size + 1)]
  curves, sizes = {}, {}
  for k in np.unique(g):
    m = g == k
    pts = [(RATES[X_METRIC[constraint]](*c), RATES[objective](*c), (t, gr))
           for c, t, gr in _group_points(s[m], y[m], flip)]
    curves[k], sizes[k] = _interpolate(_hull(pts), grid), int(m.sum())
  total = sum(sizes.values())
  overall = [sum(Fraction(sizes[k], total) * curves[k][j][0] for k in curves)
             for j in range(len(grid))]
  best = overall.index(max(overall)) if at is None else at
  p = np.zeros(len(s))
  for i, (score, k) in enumerate(zip(s, g)):
    _, p0, (t0, g0), (t1, g1) = curves[k][best]
    fires = lambda t, greater: float(score > t) if greater else float(score < t)
    p[i] = float(p0) * fires(t0, g0) + float(1 - p0) * fires(t1, g1)
  return p, float(max(overall)), [float(v) for v in overall]
