"""outeffhop_jax: outlier-efficient attention (Softmax_1, OutEffHop) and its baselines in JAX/Flax.

The pure functional ops are re-exported here; layers, models, training and analysis live in their
subpackages (`outeffhop_jax.nn`, `.models`, `.train`, `.analysis`, `.viz`).
"""
from outeffhop_jax.ops import *  # noqa: F401,F403
from outeffhop_jax.ops import __all__ as _ops_all

__version__ = "0.1.0"
__all__ = list(_ops_all)
