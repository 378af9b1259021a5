"""Shared test set-up: silent broadcasting bugs raise, and the repository root is importable."""

import os
import sys

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
jax.config.update("jax_numpy_rank_promotion", "raise")
