"""Shared test set-up: silent broadcasting bugs raise, the repository root is importable, XLA
compiles without its optimisation passes, and compiled programs are released after every test
module.

Every XLA:CPU executable maps its code into memory (about three mappings each); the suite
compiles thousands of programs, and past ``vm.max_map_count`` (65,530) mapping fails and the
process dies in the compiler. Clearing JAX's caches between modules keeps the count bounded.
"""

import gc
import os
import sys

import jax
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
jax.config.update("jax_numpy_rank_promotion", "raise")
# The suite is bound by compilation (tiny shapes, thousands of programs): XLA's optimisation
# passes cost more than they save here (as in Flax's own example tests).
jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  yield
  jax.clear_caches()
  gc.collect()


# Seconds each of the longest test modules took on 2 cores (2026-12-07). With two workers,
# pytest-xdist's work stealing hands each worker one half of the collected order to begin
# with; the long modules are dealt to the two halves longest first (each to the lighter half)
# and lead them, so that neither worker ends the run alone on a long test.
LONG_MODULES = {"tests/experiments/main_test.py": 200, "tests/methods/postprocessing_test.py": 150,
                "tests/parallel_test.py": 110, "tests/debias_test.py": 100,
                "tests/kill_resume_test.py": 80, "tests/experiments/sweep_test.py": 60,
                "tests/experiments/dvge_test.py": 55,
                "tests/experiments/saliency_control_test.py": 45,
                "tests/experiments/savani_test.py": 45, "tests/methods/concepts_test.py": 40,
                "tests/experiments/biased_digits_test.py": 30}


def pytest_collection_modifyitems(config, items):
  del config
  module = lambda item: item.nodeid.split("::")[0]
  halves, load = ([], []), [0, 0]
  for name in sorted(LONG_MODULES, key=LONG_MODULES.get, reverse=True):
    lighter = int(load[1] < load[0])
    halves[lighter].append(name)
    load[lighter] += LONG_MODULES[name]
  long_items = [[i for name in half for i in items if module(i) == name] for half in halves]
  rest = [i for i in items if module(i) not in LONG_MODULES]
  want = len(items) // 2 - len(long_items[0])           # the first half ends at a module's end
  bounds = [k for k in range(len(rest) + 1)
            if k in (0, len(rest)) or module(rest[k - 1]) != module(rest[k])]
  cut = min(bounds, key=lambda k: abs(k - want))
  items[:] = long_items[0] + rest[:cut] + long_items[1] + rest[cut:]
