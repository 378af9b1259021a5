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
