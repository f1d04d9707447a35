"""Flax NNX layers: attention with a pluggable normalizer (+ gate, sinks, GQA), Hopfield layers."""
from outeffhop_jax.nn.attention import MultiHeadAttention
from outeffhop_jax.nn.capture import capture, flatten_intermediates, set_capture
from outeffhop_jax.nn.gates import GATES, AttentionGate, OutputGate
from outeffhop_jax.nn.gsh import GSH, EntmaxNormalizer, GSHLayer, GSHPooling
from outeffhop_jax.nn.hopfield import Hopfield, HopfieldLayer, HopfieldPooling
from outeffhop_jax.nn.interop import Change, ConvertedMultiHeadAttention, attention_fn, convert, param_count
from outeffhop_jax.nn.projections import HeadsIn, HeadsOut

__all__ = [
    "GSH", "EntmaxNormalizer", "GSHLayer", "GSHPooling", "Change", "ConvertedMultiHeadAttention",
    "attention_fn", "convert", "param_count",
    "GATES", "AttentionGate", "HeadsIn", "HeadsOut", "Hopfield", "HopfieldLayer",
    "HopfieldPooling", "MultiHeadAttention", "OutputGate", "capture", "flatten_intermediates", "set_capture",
]
