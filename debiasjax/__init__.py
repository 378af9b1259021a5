"""debiasjax: post-hoc debiasing of neural networks in JAX/Flax -- measure, explain, fix.

Import as ``import debiasjax as dj``: ``dj.data``, ``dj.models``, ``dj.metrics``, ``dj.explain``, ``dj.methods``,
``dj.train``, ``dj.checkpoint``, ``dj.evaluate``, ``dj.report``, and the one-call pipeline
``dj.debias(apply_fn, variables, benchmark, methods=[...])``.
"""

from debiasjax import checkpoint, data, evaluate, explain, methods, metrics, models, report, train
from debiasjax.debias import debias

__version__ = "0.2.0"
__all__ = ["checkpoint", "data", "debias", "evaluate", "explain", "methods", "metrics", "models", "report",
           "train"]
