"""Every sharded path against its one-device result, on 8 fake CPU devices (run by
parallel_test.py in a subprocess: the device count is fixed before JAX starts).

Each path runs twice in this process: under a one-device mesh (the unsharded program) and on
the 8 devices (every device on "data", or data 4 x models 2 for the stacks), and must agree to
1e-6 (1e-5 for LRP and IG, whose sums run in another order) with outputs laid out as
debiasjax.parallel says. Prints "ok" at the end.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax                           # noqa: E402
import jax.numpy as jnp              # noqa: E402
import numpy as np                   # noqa: E402
import optax                         # noqa: E402
from jax.sharding import PartitionSpec as P   # noqa: E402

from debiasjax import evaluate, models, parallel, train   # noqa: E402
from debiasjax.explain.maps import saliency_maps          # noqa: E402
from debiasjax.methods import clarc, postprocessing, search   # noqa: E402
from debiasjax.methods.objective import Objective         # noqa: E402
from debiasjax.metrics.confusion import bootstrap_weights  # noqa: E402

assert jax.device_count() == 8, jax.devices()
ONE = parallel.mesh(devices=jax.devices()[:1])
EIGHT = parallel.mesh()                   # data 8
STACKS = parallel.mesh(models=2)          # data 4 x models 2


def close(a, b, tol=1e-6, what=""):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol, err_msg=what)


def both(fn, mesh=EIGHT):
  """fn() under one device and under ``mesh``."""
  with jax.set_mesh(ONE):
    single = fn()
  with jax.set_mesh(mesh):
    sharded = fn()
  return single, sharded


rng = np.random.default_rng(0)
table = {"x": rng.normal(size=(200, 6)).astype(np.float32),
         "y": (rng.random(200) < 0.5).astype(np.int32),
         "group": (rng.random(200) < 0.4).astype(np.int32)}
mlp = models.MLP(num_layers=2, width=16, dropout=0.0)
trainer = train.supervised(mlp, optax.adam(1e-2))
key = jax.random.key(0)
init = trainer.init(key, mlp.init(key, jnp.zeros((1, 6))))

# Training: batch over "data", parameters replicated.
single, sharded = both(lambda: train.fit(trainer, init, table, key=key, num_steps=12,
                                         batch_size=32))
close(single, sharded, what="fit")
assert sharded.params["head"]["kernel"].sharding.spec == P(), sharded.params["head"]["kernel"]
assert len(sharded.params["head"]["kernel"].sharding.device_set) == 8
with jax.set_mesh(EIGHT):       # the default (no mesh set) is every device on "data" too
  pass
default = train.fit(trainer, init, table, key=key, num_steps=12, batch_size=32)
close(single, default, what="fit, default mesh")

# K seeds stacked: the models over "models", each model's batch over "data".
keys = jax.random.split(jax.random.key(1), 4)
inits = jax.vmap(lambda k: trainer.init(k, mlp.init(k, jnp.zeros((1, 6)))))(keys)
single, sharded = both(lambda: train.fit(trainer, inits, table, key=keys, num_steps=6,
                                         batch_size=32, seed=[0, 1, 2, 3], stacked=True),
                       STACKS)
close(single, sharded, what="fit stacked")
assert sharded.params["head"]["kernel"].sharding.spec == P("models"), \
    sharded.params["head"]["kernel"].sharding
train.DEVICE_DATA_BYTES = 0      # fed from the host, as large data is: the same result
with jax.set_mesh(STACKS):
  fed = train.fit(trainer, inits, table, key=keys, num_steps=6, batch_size=32,
                  seed=[0, 1, 2, 3], stacked=True)
close(single, fed, what="fit stacked, fed from the host")
train.DEVICE_DATA_BYTES = 2**30
variables = train.variables_of(jax.tree.map(lambda a: np.asarray(a[0]), single))

# Scores and activations: rows over "data", the outputs' rows too.
single, sharded = both(lambda: evaluate.predict_scores(mlp.apply, variables, table["x"],
                                                       batch_size=64))
close(single, sharded, what="predict_scores")
with jax.set_mesh(EIGHT):
  out = jax.jit(evaluate.score_function(mlp))(parallel.put(variables),
                                              parallel.put(table["x"][:64], parallel.DATA))
  assert out.sharding.spec == P("data"), out.sharding

# Random perturbation and layer-wise populations: candidates over "models", rows over "data".
objective = Objective("v2", "statistical_parity", margin=0.01)
score_fn = evaluate.score_function(mlp)
from debiasjax.data.dataset import Split   # noqa: E402
split = Split(x=table["x"], y=table["y"], group=table["group"])
rp = search.random_perturbation(objective=objective, num_candidates=7, num_thresholds=51)
single, sharded = both(lambda: rp.search(score_fn, variables, split, jax.random.key(3)), STACKS)
close(single.trace["score"], sharded.trace["score"], what="random perturbation")
close(single.variables, sharded.variables, what="random perturbation best")
lw = search.layerwise_optimisation(objective=objective, population=4, generations=1,
                                   num_thresholds=51)
single, sharded = both(lambda: lw.search(score_fn, variables, split, jax.random.key(4)), STACKS)
close(single.variables, sharded.variables, what="layer-wise")

# Threshold-optimizer bootstraps: 16 resamples over every device; bootstrap intervals.
s = np.asarray(evaluate.predict_scores(mlp.apply, variables, table["x"]))
weights = bootstrap_weights(jax.random.key(5), 200, 16)
thropt = postprocessing.threshold_optimizer(constraint="demographic_parity", num_groups=2)
fit_one = lambda w: thropt.fit(s, table["y"], table["group"], sample_weight=w)
single, sharded = both(lambda: parallel.stacked(fit_one, parallel.EVERY)(weights), STACKS)
close(single, sharded, what="threshold optimizer bootstraps")
leaf = jax.tree.leaves(sharded)[0]
assert leaf.sharding.spec == P(("data", "models")), leaf.sharding
single, sharded = both(lambda: evaluate.bootstrap_intervals(
    table["y"], (s > 0.5).astype(int), table["group"], key=jax.random.key(6)))
close(single, sharded, what="bootstrap intervals")

# Images: LRP, IG and concept-activation collection on a small ResNet, images over "data".
resnet = models.ResNet(stage_sizes=(1, 1), block_cls=models.BasicBlock, width=4,
                       small_images=True)
images = rng.random((20, 8, 8, 3)).astype(np.float32)
targets = rng.integers(0, 2, 20)
rv = resnet.init(jax.random.key(7), images[:1])
for method in ("lrp", "ig"):
  single, sharded = both(lambda: saliency_maps(resnet, rv, images, targets, method=method,
                                               steps=4, batch_size=8))
  close(single, sharded, 1e-5, what=method)
# ... and their compiled programs keep the images split: outputs on "data", nothing gathered.
from debiasjax.explain.gradients import _compiled_group   # noqa: E402
from debiasjax.explain.lrp import _lrp                    # noqa: E402
with jax.set_mesh(EIGHT):
  xs = jax.ShapeDtypeStruct((16, 8, 8, 3), jnp.float32, sharding=parallel.sharding(parallel.DATA))
  ts = jax.ShapeDtypeStruct((16,), jnp.int32, sharding=parallel.sharding(parallel.DATA))
  nodes = jnp.ones(4, jnp.float32)
  for program in (jax.jit(lambda v, x, t: _lrp(resnet, v, x, t)).lower(rv, xs, ts),
                  _compiled_group(resnet.apply).lower(rv, xs, ts, xs, nodes, nodes)):
    compiled = program.compile()
    assert compiled.output_shardings.spec == P("data"), compiled.output_shardings
    assert "all-gather" not in compiled.as_text()
single, sharded = both(lambda: clarc.layer_activations(resnet, rv, images, "stage1",
                                                       batch_size=8))
close(single, sharded, what="activations")
# The seed sweep, the main job per seed (tiny configuration): one device trains and caches the
# vanilla models, 8 devices (data 4 x models 2) reuse them; the tables agree.
import json, tempfile                                # noqa: E401, E402
from debiasjax import pipeline                       # noqa: E402
from experiments.configs.main import get_config      # noqa: E402

work = tempfile.mkdtemp()
config = get_config("census,tiny")
with config.unlocked():
  config.cache_dir, config.save_models = os.path.join(work, "cache"), False
  config.methods = "thropt_eo,leace"
runs = {}
for label, mesh in (("one", ONE), ("eight", STACKS)):
  with jax.set_mesh(mesh):
    pipeline.run_seeds(config, ["0", "1"], os.path.join(work, f"seeds-{label}"))
  with open(os.path.join(work, f"seeds-{label}", "seeds.json")) as f:
    runs[label] = json.load(f)["runs"]       # each seed's main-job rows
def numbers(tree):
  """Every float of a results tree but the timings."""
  if isinstance(tree, dict):
    return [v for k, sub in sorted(tree.items()) if "second" not in k for v in numbers(sub)]
  if isinstance(tree, (list, tuple)):
    return [v for sub in tree for v in numbers(sub)]
  return [tree] if isinstance(tree, float) else []


close(numbers(runs["one"]), numbers(runs["eight"]), 1e-5, what="main job and seeds")
assert len(numbers(runs["one"])) > 50
print("ok")
