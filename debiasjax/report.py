"""Result tables and run outputs: ``results.json``, ``results.csv`` and ``report.md``.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``) with
the user's normal permissions (``0o666`` less the umask), and a run directory that already holds
results is never overwritten unless asked. A job writes its files into a hidden staging folder
(:func:`run_outputs`) and moves them into the run directory when it has finished, the main
result file last: a killed job leaves no partial results.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import math
import os
import re
import shutil
import statistics
import tempfile
import time
from typing import Iterator, Optional, Sequence

OUTPUTS = ("results.json", "results.csv", "report.md", "pareto.png", "saliency.png", "heatmaps.png",
           "models")

# (key, short header) of the columns every results table shows.
COLUMNS = (("accuracy", "Acc"), ("balanced_accuracy", "Bal.acc"), ("demographic_parity", "DP"),
           ("statistical_parity_difference", "SPD"), ("equalized_odds", "EO"),
           ("equal_opportunity", "EOpp"))
CI_COLUMNS = (("balanced_accuracy", "Bal.acc"), ("demographic_parity", "DP"),
              ("statistical_parity_difference", "SPD"), ("equalized_odds", "EO"))


def atomic_write(path: str, data) -> None:
  """Writes ``data`` (str or bytes) to ``path`` so readers see the old file or the new one."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  mode = "wb" if isinstance(data, bytes) else "w"
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, mode) as f:
      f.write(data)
    os.chmod(tmp, 0o666 & ~umask())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def slug(label: str) -> str:
  """A file name for a method label: runs of other characters than letters, digits, ``_``,
  ``.`` and ``-`` become one ``_`` (``"ThrOpt (EO)"`` -> ``"ThrOpt_EO"``)."""
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")


def umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


STAGING = ".staging-"


@contextlib.contextmanager
def run_outputs(workdir: str, *, overwrite: bool = False, outputs: Sequence[str] = OUTPUTS,
                last: str = "results.json") -> Iterator[str]:
  """Prepares ``workdir`` before any work and yields the folder to write the outputs into.

  Before: refuses a ``workdir`` holding any of ``outputs`` (unless ``overwrite``), creates it and
  checks that it can be written (``ValueError`` naming it otherwise), and removes the staging
  folders of killed runs. After the body succeeds: moves every staged file into ``workdir``
  (``last`` last, so a run directory with ``last`` is complete) and, with ``overwrite``,
  removes the ``outputs`` of an earlier run that this run did not write. If the body fails or
  the process is killed, ``workdir`` keeps what it had.

  In a multi-process run only process 0 writes ``workdir``; the others write into a private
  folder removed afterwards (every process computes the same results).
  """
  from debiasjax.parallel import is_primary
  if not is_primary():
    stage = tempfile.mkdtemp(prefix=STAGING)
    try:
      yield stage
    finally:
      shutil.rmtree(stage, ignore_errors=True)
    return
  check_run_dir(workdir, overwrite=overwrite, outputs=outputs)
  try:
    os.makedirs(workdir, exist_ok=True)
    for stale in glob.glob(os.path.join(workdir, STAGING + "*")):
      shutil.rmtree(stale, ignore_errors=True)
    stage = tempfile.mkdtemp(dir=workdir, prefix=STAGING)
    probe = os.path.join(stage, "probe")
    with open(probe, "w") as f:
      f.write("ok")
    os.unlink(probe)
  except OSError as e:
    raise ValueError(f"workdir: cannot create or write the run directory {workdir!r} "
                     f"({e.strerror or e}); choose a folder you can write") from e
  try:
    yield stage
    written = sorted(os.listdir(stage), key=lambda name: name == last)
    for name in outputs:
      if name not in written and os.path.exists(os.path.join(workdir, name)):
        _remove(os.path.join(workdir, name))
    for name in written:
      target = os.path.join(workdir, name)
      if os.path.isdir(target):          # a folder output (models/) replaces the old one whole
        _remove(target)
      os.replace(os.path.join(stage, name), target)
  finally:
    shutil.rmtree(stage, ignore_errors=True)


def _remove(path: str) -> None:
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path)
  else:
    os.unlink(path)


def check_run_dir(path: str, *, overwrite: bool = False, outputs: Sequence[str] = OUTPUTS) -> str:
  """Raises FileExistsError if ``path`` already holds any of ``outputs`` (unless
  ``overwrite``); call it before the work so a run never ends unable to save. Nothing is
  created."""
  existing = [f for f in outputs if os.path.exists(os.path.join(path, f))]
  if existing and not overwrite:
    raise FileExistsError(f"{path} already holds {', '.join(existing)}; choose another run "
                          "directory or pass --overwrite")
  return path


def _fmt(value, digits: int = 3) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "-"
  return f"{value:.{digits}f}"


def _delta(value, base) -> str:
  if value is None or base is None:
    return ""
  return f" ({value - base:+.{3}f})"


def table_rows(rows: Sequence[dict], *, baseline: Optional[str] = "Vanilla") -> list[list[str]]:
  """Cells of a results table: one row per method with the COLUMNS, each with its change
  against the ``baseline`` row (when present and not the row itself)."""
  base = next((r for r in rows if r["method"] == baseline), None)
  cells = []
  for r in rows:
    line = [r["method"] + (" (constant)" if r.get("constant") else "")]
    for key, _ in COLUMNS:
      delta = _delta(r.get(key), base.get(key)) if base is not None and r is not base else ""
      line.append(_fmt(r.get(key)) + delta)
    cells.append(line)
  return cells


def format_table(rows: Sequence[dict], *, baseline: Optional[str] = "Vanilla") -> str:
  """A plain-text table for the terminal."""
  header = ["Method"] + [h for _, h in COLUMNS]
  cells = [header] + table_rows(rows, baseline=baseline)
  widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in cells]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def markdown_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
  out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  out += ["| " + " | ".join(str(c) for c in line) + " |" for line in cells]
  return "\n".join(out)


def results_csv(rows: Sequence[dict]) -> str:
  """One CSV row per method with every scalar metric."""
  flat = [{**r, **{f"ci_{k}_{end}": v for k, (lo, hi) in r.get("ci", {}).items()
                   for end, v in (("low", lo), ("high", hi))}} for r in rows]
  keys = ["method"] + sorted({k for r in flat for k, v in r.items()
                              if k != "method" and not isinstance(v, (list, dict))})
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
  writer.writeheader()
  for r in flat:
    writer.writerow({k: r.get(k) for k in keys})
  return buf.getvalue()


NO_CHANGE = 1e-6   # changes this small are float noise (e.g. a constant shift's saliency)
# The way a change is an improvement: +1 higher is better, -1 lower is better (fairness gaps, and
# relevance on the protected attribute's region); ADR is the decrease of that relevance.
BETTER = {"accuracy": 1, "balanced_accuracy": 1, "auc": 1, "demographic_parity": -1,
          "equalized_odds": -1, "equal_opportunity": -1, "average_odds": -1, "rrf": -1, "hrf": -1,
          "mrr": -1, "adr": 1}


def seed_summary(runs: Sequence[Sequence[dict]], keys: Sequence[str], *,
                 baseline: str = "Vanilla") -> list[dict]:
  """How a results table varies over seeds: per method and metric the mean and sample standard
  deviation over the seeds, the same of the change against ``baseline`` in each seed, and in how
  many seeds that change is an improvement (:data:`BETTER`, beyond :data:`NO_CHANGE`); boolean
  metrics (e.g. RDDT's verdict) count the seeds where they hold.

  Args:
    runs: the result rows of each seed, every seed with the same methods (``baseline`` among them).
    keys: metrics to summarise; a method without a value for a key (None) leaves it out.

  Returns:
    One dict per method, in the first seed's order: ``{"method", "seeds", key: {...}}`` with
    ``mean, sd, change_mean, change_sd, better`` for numbers and ``{"true": count}`` for booleans.
    A metric the baseline lacks is itself a change against it (ADR): no ``change_*``, and
    ``better`` counts the seeds where its value is an improvement.
  """
  if len(runs) < 2:
    raise ValueError(f"runs: expected the rows of at least 2 seeds, got {len(runs)}")
  methods = [r["method"] for r in runs[0]]
  if baseline not in methods:
    raise ValueError(f"baseline: {baseline!r} is not among the methods {methods}")
  for i, rows in enumerate(runs):
    if [r["method"] for r in rows] != methods:
      raise ValueError(f"runs: every seed needs the same methods in the same order; seed {i} has "
                       f"{[r['method'] for r in rows]}, seed 0 {methods}")
  by_method = [{r["method"]: r for r in rows} for rows in runs]
  mean_sd = lambda v: (statistics.mean(v), statistics.stdev(v))
  summary = []
  for method in methods:
    entry = {"method": method, "seeds": len(runs)}
    for key in keys:
      values = [seed[method].get(key) for seed in by_method]
      if any(v is None for v in values):
        continue
      if all(isinstance(v, bool) for v in values):
        entry[key] = {"true": sum(values)}
        continue
      mean, sd = mean_sd(values)
      entry[key] = {"mean": mean, "sd": sd}
      if method == baseline:
        continue
      sign = BETTER.get(key, 1)
      if all(seed[baseline].get(key) is not None for seed in by_method):
        changes = [v - seed[baseline][key] for v, seed in zip(values, by_method)]
        change_mean, change_sd = mean_sd(changes)
        entry[key].update(change_mean=change_mean, change_sd=change_sd)
      else:                       # a metric that is itself a change against the baseline (ADR)
        changes = values
      entry[key]["better"] = sum(sign * c > NO_CHANGE for c in changes)
    summary.append(entry)
  return summary


def seed_table(summary: Sequence[dict], keys: Sequence[str], headers: Sequence[str]) -> str:
  """Markdown of :func:`seed_summary`: ``mean ± sd``, then ``(change ± sd, k/n improved)``; a
  boolean metric as ``k/n`` (seeds where it holds)."""
  cells = []
  for entry in summary:
    line = [entry["method"]]
    for key in keys:
      s = entry.get(key)
      if s is None:
        line.append("-")
      elif "true" in s:
        line.append(f"{s['true']}/{entry['seeds']}")
      else:
        cell = f"{s['mean']:.3f} ± {s['sd']:.3f}"
        if "change_mean" in s:
          cell += (f" ({s['change_mean']:+.3f} ± {s['change_sd']:.3f}, "
                   f"{s['better']}/{entry['seeds']})")
        elif "better" in s:
          cell += f" ({s['better']}/{entry['seeds']})"
        line.append(cell)
    cells.append(line)
  return markdown_table(["Method", *headers], cells)


def _split_section(info: dict) -> str:
  splits = info.get("splits", {})
  cells = []
  for name in ("train", "debias", "test"):
    s = splits.get(name)
    if s:
      (n00, n01), (n10, n11) = s["counts"]
      cells.append([name, s["size"], n00, n01, n10, n11, _fmt(s["phi"])])
  groups = info.get("groups", ["group 0", "group 1"])
  header = ["split", "size", f"{groups[0]}, y=0", f"{groups[0]}, y=1", f"{groups[1]}, y=0",
            f"{groups[1]}, y=1", "Yule's phi"]
  requested = splits.get("phi_requested")
  debias = splits.get("debias_phi_requested", requested)
  at = (f"Train and debias splits at Yule's phi = {requested}" if debias == requested else
        f"Train split at Yule's phi = {requested}, debias split at {debias}")
  lead = (f"{at}; the test split is balanced over the four cells." if requested is not None else
          "Random split (no rebalancing).")
  return lead + "\n\n" + markdown_table(header, cells)


def _group_section(rows: Sequence[dict], groups: Sequence[str]) -> str:
  cells = []
  for r in rows:
    for g, rates in enumerate(r.get("groups", [])):
      name = groups[g] if g < len(groups) else f"group {g}"
      cells.append([r["method"], name, rates["count"], _fmt(rates["selection_rate"]),
                    _fmt(rates["tpr"]), _fmt(rates["fpr"]), _fmt(rates["accuracy"])])
  return markdown_table(["Method", "group", "n", "selection rate", "TPR", "FPR", "accuracy"], cells)


def _interval_section(rows: Sequence[dict]) -> str:
  cells = [[r["method"]] + [(f"[{_fmt(lo)}, {_fmt(hi)}]" if lo is not None else "-")
                            for key, _ in CI_COLUMNS
                            for lo, hi in [r.get("ci", {}).get(key, (None, None))]]
           for r in rows if r.get("ci")]
  return markdown_table(["Method"] + [h for _, h in CI_COLUMNS], cells) if cells else ""


def constant_note(row: dict) -> str:
  """A sentence flagging a (near-)constant classifier, or ''."""
  if not row.get("constant"):
    return ""
  rate = row.get("positive_rate", float("nan"))
  return (f"{row['method']} predicts the positive class for {100 * rate:.1f} % of the test rows: "
          "a (near-)constant classifier, whose gaps are ~0 by construction (balanced accuracy "
          f"{row['balanced_accuracy']:.3f}); it is kept off the Pareto front.")


def explain_gap(row: dict, groups: Sequence[str]) -> str:
  """One sentence saying where a row's equalized-odds gap comes from."""
  rates = row.get("groups", [])
  if len(rates) < 2:
    return ""
  tpr = [g["tpr"] for g in rates]
  fpr = [g["fpr"] for g in rates]
  hi = max(range(len(tpr)), key=tpr.__getitem__)
  lo = min((i for i in range(len(tpr)) if i != hi), key=tpr.__getitem__)
  name = lambda i: groups[i] if i < len(groups) else f"group {i}"
  return (f"{row['method']}: equalized-odds gap {row['equalized_odds']:.3f}; true positive rate "
          f"{tpr[hi]:.3f} for '{name(hi)}' vs {tpr[lo]:.3f} for '{name(lo)}', false positive "
          f"rates {', '.join(f'{name(i)} {f:.3f}' for i, f in enumerate(fpr))}.")


def render_report(*, rows: Sequence[dict], config: dict, info: dict, command: str,
                  notes: Sequence[str] = (), sections: Sequence[tuple] = ()) -> str:
  groups = info.get("groups", [])
  header = ["Method"] + [h for _, h in COLUMNS]
  parts = [
      "# debiasjax report", "",
      f"Command: `{command}`", "",
      "## Data", "",
      f"{info.get('name')}: target `{info.get('target')}`, protected attribute "
      f"`{info.get('protected')}` (groups: {', '.join(groups)}; privileged group for the signed "
      "AIF360 differences: "
      f"{groups[info['privileged']] if groups and 'privileged' in info else '-'}).",
      "", _split_section(info), "",
      "## Results on the test split", "",
      "Acc = accuracy, Bal.acc = balanced accuracy; DP, EO, EOpp = demographic-parity, "
      "equalized-odds and equal-opportunity gaps (max - min over groups, fairlearn's "
      "convention; lower is fairer); SPD = AIF360's signed statistical parity difference "
      "(selection rate of the unprivileged group minus the privileged one's: the sign says "
      "which group is favoured). Changes against Vanilla in brackets; (constant) marks a "
      "classifier that predicts one class for all but 1 % of the rows.", "",
      markdown_table(header, table_rows(rows)), "",
      "Per-group rates:", "", _group_section(rows, groups), "",
  ]
  intervals = _interval_section(rows)
  if intervals:
    parts += ["95 % bootstrap intervals (200 resamples of the test split, the same for every "
              "method; a model's own randomness is not resampled):", "", intervals, ""]
  for title, body in sections:
    parts += [f"## {title}", "", body, ""]
  parts += ["## Reading the numbers", ""]
  lines = [explain_gap(r, groups) for r in rows] + [constant_note(r) for r in rows] + list(notes)
  parts += [f"- {line}" for line in lines if line]
  parts += ["", "## Configuration", "", "```json", json.dumps(config, indent=2, sort_keys=True),
            "```", ""]
  return "\n".join(parts)


def provenance() -> dict:
  """What produced a result: package versions, the git commit of the source (with whether it
  had uncommitted changes), Python, the platform, CPU and load when written, JAX's devices, and
  the time."""
  import platform
  import subprocess
  from importlib import metadata
  versions = {}
  for package in ("debiasjax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
    try:
      versions[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      versions[package] = None
  if versions["debiasjax"] is None:                 # run from a checkout, not installed
    from debiasjax import __version__
    versions["debiasjax"] = __version__
  source = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  git = None
  try:
    if not os.path.exists(os.path.join(source, ".git")):
      raise OSError("not a source checkout")     # an installed package
    run = lambda *a: subprocess.run(["git", "-C", source, *a], capture_output=True, text=True,
                                    timeout=10, check=True).stdout.strip()
    git = {"commit": run("rev-parse", "HEAD"),
           "dirty": bool(run("status", "--porcelain", "--untracked-files=no"))}
  except (OSError, subprocess.SubprocessError):
    pass                                  # no checkout, or no git
  import jax
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                 cpu)
  except OSError:
    pass
  load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
  return {"versions": versions, "git": git, "python": platform.python_version(),
          "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
          "load_average_1_5_15_min": load, "devices": [str(d) for d in jax.devices()],
          "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_results(run_dir: str, *, rows: Sequence[dict], config: dict, info: dict,
                  command: str, notes: Sequence[str] = (), extra: Optional[dict] = None,
                  sections: Sequence[tuple] = ()) -> None:
  """Writes results.json, results.csv and report.md into ``run_dir`` (created if needed;
  each file atomically); ``sections`` are extra ``(title, markdown)`` parts of the report."""
  payload = {"command": command, "config": config, "data": info, "results": list(rows),
             "provenance": provenance(), **(extra or {})}
  atomic_write(os.path.join(run_dir, "results.json"), json.dumps(payload, indent=2, default=str))
  atomic_write(os.path.join(run_dir, "results.csv"), results_csv(rows))
  atomic_write(os.path.join(run_dir, "report.md"),
               render_report(rows=rows, config=config, info=info, command=command, notes=notes,
                             sections=sections))


def pyplot():
  """matplotlib.pyplot on the non-interactive Agg backend."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def save_png(fig, path: str) -> None:
  """Writes a matplotlib figure to ``path`` as PNG (atomically) and closes it."""
  buf = io.BytesIO()
  if fig.get_layout_engine() is None:        # figures built with a layout engine keep theirs
    fig.tight_layout()
  fig.savefig(buf, format="png")
  pyplot().close(fig)
  atomic_write(path, buf.getvalue())


def _coincident(rows: Sequence[dict], x_key: str, y_key: str) -> list:
  """Rows grouped by identical (rounded) coordinates, as [((x, y), [rows])] sorted by x."""
  groups = {}
  for r in rows:
    groups.setdefault((round(r[x_key], 4), round(r[y_key], 4)), []).append(r)
  return sorted(groups.items())


def _error(r: dict, key: str):
  """[[below], [above]] of a row's bootstrap interval of ``key`` (None without one)."""
  lo, hi = r.get("ci", {}).get(key, (None, None))
  if lo is None or hi is None:
    return None
  return [[max(r[key] - lo, 0.0)], [max(hi - r[key], 0.0)]]


# Label offsets tried around a point, in points: right, left, above, below, then farther out.
_OFFSETS = [(7, 3), (7, -10), (-7, 3), (-7, -10), (0, 9), (0, -15)] + \
    [(dx * k, dy * k) for k in (2, 3, 4) for dx, dy in ((8, 5), (8, -9), (-8, 5), (-8, -9),
                                                       (0, 10), (0, -14))]


def _place_labels(fig, ax, points) -> None:
  """Writes each ``(x, y, text)`` beside its point at the first offset of :data:`_OFFSETS`
  where it overlaps no label placed before, no marker and stays inside the axes (the least
  overlapping one otherwise); labels moved far from their point get a leader line."""
  renderer = fig.canvas.get_renderer()
  frame = ax.get_window_extent(renderer)
  markers = [ax.transData.transform((x, y)) for x, y, _ in points]
  placed = []
  scale = fig.dpi / 72.0

  def overlap(a, b):
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0) * max(h, 0)

  for (x, y, text), (px, py) in sorted(zip(points, markers), key=lambda t: -t[0][1]):
    best = None
    for dx, dy in _OFFSETS:
      ha = "left" if dx > 0 else "right" if dx < 0 else "center"
      label = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha,
                          fontsize=8, zorder=4)
      box = label.get_window_extent(renderer).expanded(1.04, 1.15)
      cost = sum(overlap(box, other) for other in placed)
      cost += sum(overlap(box, type(box).from_bounds(mx - 5 * scale, my - 5 * scale, 10 * scale,
                                                     10 * scale)) for mx, my in markers)
      outside = (max(frame.x0 - box.x0, 0) + max(box.x1 - frame.x1, 0)
                 + max(frame.y0 - box.y0, 0) + max(box.y1 - frame.y1, 0))
      cost += 1e4 * outside
      if best is None or cost < best[0]:
        if best is not None:
          best[1].remove()
        best = (cost, label, box, (dx, dy))
      else:
        label.remove()
      if cost == 0:
        break
    _, label, box, (dx, dy) = best
    if abs(dx) > 10 or abs(dy) > 16:
      label.remove()
      ha = "left" if dx > 0 else "right" if dx < 0 else "center"
      label = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha,
                          fontsize=8, zorder=4,
                          arrowprops=dict(arrowstyle="-", color="0.6", lw=0.6, shrinkA=0,
                                          shrinkB=4))
    placed.append(box)


def pareto_plot(rows: Sequence[dict], path: str, *, gap: str = "equalized_odds",
                performance: str = "balanced_accuracy", title: str = "") -> None:
  """Scatter of every method (gap vs performance, with 95 % bootstrap intervals when the rows
  have them) and the Pareto front, as a PNG (atomic)."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(8.8, 5.0), dpi=120)
  fig.subplots_adjust(left=0.08, right=0.72, top=0.92, bottom=0.11)
  front = sorted((r for r in rows if r.get("pareto")), key=lambda r: r[gap])
  if len(front) > 1:
    ax.step([r[gap] for r in front], [r[performance] for r in front], where="post",
            color="0.6", lw=1, zorder=1)
  styles = {"vanilla": ("*", "black", 110, "Vanilla"),
            "front": ("o", "tab:blue", 45, "on the Pareto front"),
            "off": ("x", "tab:orange", 45, "not on the front"),
            "constant": ("s", "0.6", 40, "(near-)constant classifier")}
  used, points = set(), []
  for (x, y), members in _coincident(rows, gap, performance):
    for r in members:
      kind = ("vanilla" if r["method"] == "Vanilla" else "constant" if r.get("constant")
              else "front" if r.get("pareto") else "off")
      marker, color, size, _ = styles[kind]
      used.add(kind)
      xerr, yerr = _error(r, gap), _error(r, performance)
      if xerr is not None or yerr is not None:
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="none", ecolor=color, alpha=0.35, lw=1,
                    zorder=1)
      ax.scatter(x, y, marker=marker, s=size, color=color, zorder=3)
    points.append((x, y, " = ".join(r["method"] for r in members)))
  xs = [r[gap] for r in rows] + [hi for r in rows for _, hi in [r.get("ci", {}).get(gap, (0, 0))]
                                 if hi is not None]
  ys = [r[performance] for r in rows]
  ax.set_xlim(-0.02, max(xs) * 1.1 + 0.03)
  ax.set_ylim(min(ys) - 0.05, min(1.0, max(ys) + 0.05) if max(ys) < 0.97 else 1.01)
  _place_labels(fig, ax, points)
  handles = [plt.Line2D([], [], ls="", marker=styles[k][0], color=styles[k][1],
                        markersize=8 if k == "vanilla" else 6, label=styles[k][3])
             for k in ("vanilla", "front", "off", "constant") if k in used]
  if len(front) > 1:
    handles.append(plt.Line2D([], [], color="0.6", lw=1, label="Pareto front"))
  if any(r.get("ci") for r in rows):
    handles.append(plt.Line2D([], [], color="0.5", alpha=0.5, lw=1,
                              label="95 % bootstrap interval"))
  ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
            frameon=False)
  ax.set_xlabel(f"{gap.replace('_', ' ')} gap (lower is fairer)")
  ax.set_ylabel(performance.replace("_", " "))
  ax.set_title(title or "Methods on the test split", fontsize=11)
  ax.grid(alpha=0.3)
  save_png(fig, path)
