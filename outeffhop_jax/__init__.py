"""outeffhop_jax: outlier-efficient attention (Softmax_1, OutEffHop) and its baselines in JAX/Flax.

The ops a user calls are here: the normalizers and their registry, attention, and the Hopfield
energy / update / retrieval (all pure JAX). Building blocks and dispatch details stay in
`outeffhop_jax.ops` (e.g. `ops.blockwise_attention`, `ops.select_implementation`); layers, models,
training and analysis live in their subpackages (`outeffhop_jax.nn`, `.models`, `.train`,
`.analysis`, `.viz`).
"""
from outeffhop_jax.ops import (Normalizer, attention_weights, clipped_softmax, clipped_softmax1,
                               dot_product_attention, entmax, get_normalizer, hopfield_energy,
                               hopfield_retrieve, hopfield_update, logsumexp1, logsumexp_with_sink,
                               sigmoid_attention, softmax, softmax1, softmax_with_sink, softpick,
                               softplus_attention, sparsemax, stablemax)

__version__ = "0.1.0"
__all__ = [
    "Normalizer", "attention_weights", "clipped_softmax", "clipped_softmax1",
    "dot_product_attention", "entmax", "get_normalizer", "hopfield_energy", "hopfield_retrieve",
    "hopfield_update", "logsumexp1", "logsumexp_with_sink", "sigmoid_attention", "softmax",
    "softmax1", "softmax_with_sink", "softpick", "softplus_attention", "sparsemax", "stablemax",
]
