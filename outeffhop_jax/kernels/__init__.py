"""Pallas kernels (a leaf package: imports nothing else from outeffhop_jax, and no Flax).

flash_attention: fused attention with an optional per-head sink logit (softmax_1 when the sink is
0), forward and backward, for TPU (Mosaic) and GPU (Triton), interpreted on CPU.
splash_attention: JAX's own TPU splash kernel with sinks, for the cases it fits.
"""
from outeffhop_jax.kernels.flash_attention import flash_attention
from outeffhop_jax.kernels.flash_attention import flash_attention_supported
from outeffhop_jax.kernels.reference import attention_reference
from outeffhop_jax.kernels.splash import splash_attention

__all__ = ["flash_attention", "flash_attention_supported", "attention_reference", "splash_attention"]
