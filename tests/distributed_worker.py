"""One process of a multi-process training run on localhost (run by parallel_test.py).

  python tests/distributed_worker.py PROCESS_ID NUM_PROCESSES PORT WORKDIR

With NUM_PROCESSES > 1 it joins JAX's runtime (debiasjax.parallel.initialize) with the
coordinator on localhost:PORT; with 1 it is the one-process reference. Either way it trains an
MLP for 6 steps with a checkpoint at step 3, restores that checkpoint into a fresh state,
trains on to step 6 (each process putting only its own rows of every batch on its devices),
evaluates the scores of the table, and process 0 writes the parameters and scores to
WORKDIR/result.npz.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

process_id, num_processes, port, workdir = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                            sys.argv[4])

import jax                 # noqa: E402
import jax.numpy as jnp    # noqa: E402
import numpy as np         # noqa: E402
import optax               # noqa: E402

from debiasjax import evaluate, models, parallel, train   # noqa: E402
from debiasjax.checkpoint import Checkpoints               # noqa: E402

if num_processes > 1:
  assert parallel.initialize(f"localhost:{port}", num_processes, process_id)
assert jax.process_count() == num_processes and jax.device_count() == 8, jax.devices()

rng = np.random.default_rng(0)
table = {"x": rng.normal(size=(96, 6)).astype(np.float32),
         "y": (rng.random(96) < 0.5).astype(np.int32)}
mlp = models.MLP(num_layers=2, width=16, dropout=0.0)
trainer = train.supervised(mlp, optax.adam(1e-2))
key = jax.random.key(0)
init = trainer.init(key, mlp.init(key, jnp.zeros((1, 6))))
checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"))
train.fit(trainer, init, table, key=key, num_steps=3, batch_size=32, checkpoints=checkpoints,
          steps_per_call=1)
state = train.fit(trainer, init, table, key=key, num_steps=6, batch_size=32,
                  checkpoints=checkpoints, steps_per_call=2)    # restores step 3 first
assert checkpoints.latest_step() == 6
params = parallel.to_host(state.params)
scores = evaluate.predict_scores(mlp.apply, train.variables_of(state), table["x"], batch_size=40)
if parallel.is_primary():
  flat = {"/".join(k): v for k, v in
          __import__("flax").traverse_util.flatten_dict(params).items()}
  np.savez(os.path.join(workdir, "result.npz"), scores=scores, **flat)
print(f"process {process_id}: ok", flush=True)
