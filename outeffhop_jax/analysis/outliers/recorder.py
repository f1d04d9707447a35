"""The recording pass of `kinds.collect_kinds`: one capture of a batch, reduced to per-batch sums.

This is the part that changes the model: `with_value_recorders` returns a copy whose attention value
projections also sow their outputs (for the sink value ratio); `batch_sums` runs under nnx.jit with
capture switched on and returns only small arrays (sums over the batch), so nothing [B, N, T, S]
leaves the device.
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from outeffhop_jax.analysis.outliers import collect
from outeffhop_jax.analysis.outliers.activation import massive_activations
from outeffhop_jax.analysis.outliers.attention import attention_sums
from outeffhop_jax.nn import MultiHeadAttention, capture


class _ValueRecorder(nnx.Module):
  """Wraps an attention's value projection and sows its output v [B, S, K, H] as "vectors"."""

  def __init__(self, inner: nnx.Module):
    self.inner = inner

  def __call__(self, x):
    v = self.inner(x)
    self.sow(nnx.Intermediate, "vectors", v)
    return v


def with_value_recorders(model: nnx.Module) -> nnx.Module:
  """A copy of `model` (arrays shared) whose attention value projections sow their outputs."""
  m = nnx.clone(model)
  for _, module in list(nnx.iter_modules(m)):
    if isinstance(module, MultiHeadAttention) and not isinstance(module.value, _ValueRecorder):
      module.value = _ValueRecorder(module.value)
  return m


_PROBS, _VALUES = "attn_probs", "value.vectors"


def _fold(a, B):
  """Models that fold another axis into the batch (STanHop-Net: series) record [B * C, ...]."""
  return a if a.shape[0] == B else a.reshape((B, -1) + a.shape[1:])


def _batch_sums(model, inputs, w_B, family: str, tau_abs: float, k: float):
  """Per-batch sums; runs under nnx.jit (capture inside the traced function)."""
  _, acts = capture(model, lambda m: m(inputs), attention_probs=True)
  B = w_B.shape[0]
  out = {"act": {n: massive_activations(acts[n], tau_abs=tau_abs, k=k, row_weights=w_B)
                 for n in collect.select_modules(acts, family)}, "attn": {}}
  for name, p in acts.items():
    if not name.endswith(_PROBS):
      continue
    p = _fold(p, B)
    if p.ndim == 5:  # [B, C, N, T, S]: the folded axis' rows are extra heads of their example
      p = p.reshape((B, -1) + p.shape[3:])
    T = p.shape[2]
    recv, rows, nq = attention_sums(p, jnp.broadcast_to(w_B[:, None], (B, T)))
    stats = {"recv": recv, "rows": rows, "nq": nq}
    v = acts.get(name[:-len(_PROBS)] + _VALUES)
    if v is not None:
      v = _fold(v, B)  # [B, (C,) S, K, H]
      if v.ndim == 5:
        v = jnp.moveaxis(v, 1, 2).reshape(B, v.shape[2], -1, v.shape[-1])
      norm_BSK = jnp.linalg.norm(v.astype(jnp.float32), axis=-1)
      stats["vnorm"] = jnp.einsum("bsk,b->ks", norm_BSK, w_B)
      stats["vrows"] = jnp.sum(w_B)
    out["attn"][name] = stats
  return out


batch_sums = nnx.jit(_batch_sums, static_argnums=(3, 4, 5))
