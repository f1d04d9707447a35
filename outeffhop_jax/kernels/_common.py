"""What the flash attention backends share: the static config, block-range tables, the mask value."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

# Finite stand-in for -inf on masked logits: exp(MASK_VALUE - m) underflows to 0 without the NaNs
# that inf - inf would give. Masked probabilities are also zeroed explicitly (see the kernels),
# so a fully masked block cannot contribute exp(0) = 1.
MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


@dataclasses.dataclass(frozen=True)
class FlashConfig:
  """Static (hashable) kernel parameters; one config is one compiled kernel family."""
  scale: float
  causal: bool
  block_q: int
  block_k: int
  has_sinks: bool
  has_segments: bool
  backend: str  # "tpu" (Mosaic TPU) or "triton" (Pallas GPU, Triton lowering)
  interpret: bool


def segment_block_ranges(segment_ids_BT, block):
  """Per-block [min, max] of segment ids, each int32 [B, T // block].

  Two blocks can only share an id when their ranges overlap, so non-overlap proves the block pair
  fully masked and the kernels skip it. Exact for sorted (packed / padded) ids, conservative else.
  """
  B, T = segment_ids_BT.shape
  ids_BnX = segment_ids_BT.astype(jnp.int32).reshape(B, T // block, block)
  return ids_BnX.min(axis=-1), ids_BnX.max(axis=-1)


def ranges_overlap(q_lo, q_hi, k_lo, k_hi):
  return jnp.logical_and(q_hi >= k_lo, k_hi >= q_lo)


def causal_block_visible(i, j, block_q, block_k):
  """Whether q block i sees any key of kv block j under top-left causal masking (j*bk <= last q)."""
  return j * block_k <= i * block_q + (block_q - 1)


def tile_mask(row0, col0, shape, causal: bool, same_segment=None, rows_are_queries: bool = True):
  """Boolean (R, C) visibility of one tile, or None when every entry is visible.

  The tile starts at (row0, col0); rows are queries and columns keys, or the reverse when
  `rows_are_queries` is False (the dK/dV kernels tile keys as rows). Top-left causal: key <= query.
  `same_segment` is the (R, C) bool segment-id equality, None without segment ids; each backend
  builds it from its own id layout.
  """
  mask = None
  if causal:
    rows = row0 + jax.lax.broadcasted_iota(jnp.int32, shape, 0)
    cols = col0 + jax.lax.broadcasted_iota(jnp.int32, shape, 1)
    mask = (cols <= rows) if rows_are_queries else (rows <= cols)
  if same_segment is not None:
    mask = same_segment if mask is None else jnp.logical_and(mask, same_segment)
  return mask


def row_delta(o_BTNH, do_BTNH):
  """Δ_BNT = Σ_h O ⊙ dO in float32: the softmax backward's per-row correction term."""
  prod_BTN = jnp.sum(o_BTNH.astype(jnp.float32) * do_BTNH.astype(jnp.float32), axis=-1)
  return prod_BTN.transpose(0, 2, 1)


def sink_grad(sinks_N, lse_BNT, delta_BNT):
  """dsink_N = -Σ_{b,t} exp(s_n - L_bnt) Δ_bnt (the sink's probability times the row correction)."""
  p_sink_BNT = jnp.exp(sinks_N.astype(jnp.float32)[None, :, None] - lse_BNT)
  return -jnp.sum(p_sink_BNT * delta_BNT, axis=(0, 2))


def default_interpret():
  return jax.default_backend() == "cpu"
