"""debiasjax: post-hoc debiasing of neural networks in JAX/Flax -- measure, explain, fix.

Import as ``import debiasjax as dj``; the subpackages are ``dj.data``, ``dj.models``,
``dj.metrics``, ``dj.train``, ``dj.checkpoint``, ``dj.evaluate`` and ``dj.report``.
"""

from debiasjax import checkpoint, data, evaluate, metrics, models, report, train

__version__ = "0.1.0"
__all__ = ["checkpoint", "data", "evaluate", "metrics", "models", "report", "train"]
