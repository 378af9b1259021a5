"""Kill-and-resume: a run killed with SIGKILL at a random point and run again gives what an
uninterrupted run gives, and no partial result is ever visible. The killed runs are real
processes (a SIGKILL cannot be simulated in-process)."""

import json
import os
import signal
import subprocess
import sys

import chex
import numpy as np

from debiasjax import pipeline, report
from debiasjax.checkpoint import Checkpoints
from tests import kill_worker
from tests.experiments.main_test import config_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_until(cmd, marker: str, timeout: float = 300) -> str:
  """Starts ``cmd`` and SIGKILLs it as soon as a line of its output contains ``marker``."""
  proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  seen = []
  try:
    for line in proc.stdout:
      seen.append(line)
      if marker in line:
        proc.send_signal(signal.SIGKILL)
        break
  finally:
    proc.wait(timeout=timeout)
  assert proc.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
  return "".join(seen)


def test_training_killed_at_a_random_step_resumes_to_the_uninterrupted_result(tmp_path):
  kill_at = int(np.random.default_rng().integers(7, kill_worker.STEPS - 5))
  run_until([sys.executable, "-m", "tests.kill_worker", "train", str(tmp_path / "ckpt")],
            f"step {kill_at}\n")
  # The last complete checkpoint (every 5 steps; the one of the step being logged may or may
  # not have landed before the kill): the rerun continues from it.
  saved = Checkpoints(str(tmp_path / "ckpt")).latest_step()
  assert saved is not None and kill_at - 5 <= saved <= kill_at + 1, (saved, kill_at)
  resumed = kill_worker.fit(Checkpoints(str(tmp_path / "ckpt")))
  uninterrupted = kill_worker.fit()
  assert int(resumed.step) == kill_worker.STEPS
  chex.assert_trees_all_equal(resumed, uninterrupted)


def test_main_job_killed_while_explaining_leaves_no_results_and_reruns_from_the_cache(tmp_path):
  cache, run = tmp_path / "cache", tmp_path / "run"
  cmd = [sys.executable, "-m", "experiments.main", "--config=experiments/configs/main.py:tiny",
         "--config.methods=thropt_eo,leace", "--config.save_models=false",
         f"--config.cache_dir={cache}", f"--workdir={run}"]
  run_until(cmd, "Test split")                       # killed in the explanation phase
  assert not [f for f in report.OUTPUTS if (run / f).exists()]
  lines = []
  outcome = pipeline.train_and_evaluate(config_of(cache=cache, methods="thropt_eo,leace"),
                                        str(run), log=lines.append)
  assert any("reusing the trained model" in line for line in lines)
  assert sorted(f for f in os.listdir(run)) == sorted(outcome.written)
  saved = json.loads((run / "results.json").read_text())["results"]
  assert [r["method"] for r in saved] == ["Vanilla", "ThrOpt (EO)", "LEACE"]
  assert [r["balanced_accuracy"] for r in saved] == [
      r["balanced_accuracy"] for r in outcome.trained.result.rows]


def test_weight_search_killed_at_a_random_generation_resumes_to_the_uninterrupted_result(
    tmp_path):
  total = 2 * kill_worker.GENERATIONS
  kill_at = int(np.random.default_rng().integers(1, total - 1))
  run_until([sys.executable, "-m", "tests.kill_worker", "search", str(tmp_path / "search")],
            f"saved {kill_at}\n")
  saved = Checkpoints(str(tmp_path / "search")).latest_step()
  assert kill_at <= saved < total, (saved, kill_at)
  steps = []

  class Counted(Checkpoints):
    def save(self, step, tree, **kwargs):
      steps.append(step)
      super().save(step, tree, **kwargs)

  resumed = kill_worker.weight_search(Counted(str(tmp_path / "search")))
  assert steps == list(range(saved + 1, total + 1))        # only the generations left
  chex.assert_trees_all_equal(resumed, kill_worker.weight_search())
