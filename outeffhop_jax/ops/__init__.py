"""Pure-JAX ops (no Flax): normalizers, attention, Hopfield energies and retrieval."""
from outeffhop_jax.ops.alternatives import sigmoid_attention, softpick, softplus_attention, stablemax
from outeffhop_jax.ops.attention import attention_weights, dot_product_attention, select_implementation
from outeffhop_jax.ops.blockwise import blockwise_attention
from outeffhop_jax.ops.hopfield import hopfield_energy, hopfield_retrieve, hopfield_update
from outeffhop_jax.ops.normalizers import (clipped_softmax, clipped_softmax1, logsumexp1,
                                           logsumexp_with_sink, softmax, softmax1, softmax_with_sink)
from outeffhop_jax.ops.registry import Normalizer, get_normalizer
from outeffhop_jax.ops.sparse import entmax, sparsemax

__all__ = [
    "Normalizer", "attention_weights", "blockwise_attention", "clipped_softmax", "clipped_softmax1",
    "dot_product_attention", "entmax", "get_normalizer", "hopfield_energy", "hopfield_retrieve",
    "hopfield_update", "logsumexp1", "logsumexp_with_sink", "select_implementation",
    "sigmoid_attention", "softmax", "softmax1", "softmax_with_sink", "softpick", "softplus_attention",
    "sparsemax", "stablemax",
]
