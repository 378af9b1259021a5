"""debiasjax: post-hoc debiasing of neural networks in JAX/Flax -- measure, explain, fix.

Import as ``import debiasjax as dj``: ``dj.data``, ``dj.models``, ``dj.metrics``,
``dj.explain``, ``dj.methods``, ``dj.train``, ``dj.checkpoint``, ``dj.evaluate``, ``dj.report``,
``dj.pipeline`` (the main job), ``dj.parallel`` (the device layout: meshes, several hosts),
the one-call ``dj.debias(model, variables, benchmark, methods={label: method})``,
``dj.checked(fn)`` (the value checks inside ``jit``) and ``dj.progress`` (progress callbacks
with the time left), and ``dj.save_debiased`` / ``dj.load_debiased`` (a debiased model as
portable JAX programs).
"""

__version__ = "0.3.0"

from debiasjax import checkpoint, data, evaluate, explain, methods, metrics, models, report, train
from debiasjax import parallel, pipeline, progress, reproductions
from debiasjax._checks import checked
from debiasjax.debias import debias
from debiasjax.saved import load_debiased, save_debiased
__all__ = ["checked", "checkpoint", "data", "debias", "evaluate", "explain", "methods", "metrics",
           "load_debiased", "models", "parallel", "pipeline", "progress", "report", "reproductions",
           "save_debiased", "train"]
