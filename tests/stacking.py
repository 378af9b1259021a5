"""One check for every trainer: K seeds stacked in one program equal K separate runs."""

import jax
import numpy as np

from debiasjax import train


def assert_stacked_equals_single(trainer, model, data: dict, keys, per_model=None,
                                 **fit_kwargs) -> None:
  """States from ``keys`` [K] (``model.init`` on one row of ``data["x"]``), trained stacked with
  seeds 0..K-1 and one by one, end equal (1e-5 relative, 1e-6 absolute). ``per_model``: columns
  [K, N, ...], model k's run given its own row."""
  per_model = per_model or {}
  states = jax.vmap(lambda k: trainer.init(k, model.init(k, data["x"][:1])))(keys)
  stacked = train.fit(trainer, states, {**data, **per_model}, key=keys,
                      seed=list(range(len(keys))), stacked=True, per_model=tuple(per_model),
                      **fit_kwargs)
  for i in range(len(keys)):
    own = {k: v[i] for k, v in per_model.items()}
    single = train.fit(trainer, jax.tree.map(lambda a: a[i], states), {**data, **own},
                       key=keys[i], seed=i, **fit_kwargs)
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(stacked)):
      np.testing.assert_allclose(np.asarray(b[i]), np.asarray(a), rtol=1e-5, atol=1e-6)
