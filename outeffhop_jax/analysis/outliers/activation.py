"""Activation outliers (massive activations), pure jnp: usable under jit.

activation  x of one module output, one sequence b: entry massive iff
            |x| > max(tau_abs, k * median_b |x|)      (median over the sequence's whole output,
            T x D, as the paper's and Sun et al.'s code compute it). Defaults tau_abs = 100,
            k = 1000: the "massive activation" criterion of Sun et al. (COLM 2024, §2: "magnitude
            surpasses 100 and is at least or around 1,000 times larger than the median magnitude
            of its hidden state"), which the systematic-outliers paper builds on. On small CPU
            models (|x| of a few tens) it rarely fires; the scale-free max |x| / median |x| is
            reported beside it.

The thresholds are this project's operationalisation (docs/metrics.md), each an argument.
"""
from __future__ import annotations

import jax.numpy as jnp

from outeffhop_jax.analysis.outliers import metrics

MASSIVE_ABS = 100.0      # Sun et al. 2024, §2
MASSIVE_RATIO = 1000.0   # ... "at least or around 1,000 times larger than the median"


def massive_threshold(x, *, tau_abs: float = MASSIVE_ABS, k: float = MASSIVE_RATIO):
  """Per-sequence threshold max(tau_abs, k * median |x_b|): x [B, ...] -> [B] float32."""
  rows = jnp.abs(metrics.as_rows(x, "sequence").astype(jnp.float32))
  return jnp.maximum(tau_abs, k * jnp.median(rows, axis=-1))


def massive_mask(x, *, tau_abs: float = MASSIVE_ABS, k: float = MASSIVE_RATIO):
  """Boolean x.shape: |x| > max(tau_abs, k * median of |x| over its sequence)."""
  thr = massive_threshold(x, tau_abs=tau_abs, k=k)
  return jnp.abs(x.astype(jnp.float32)) > thr.reshape((-1,) + (1,) * (x.ndim - 1))


def massive_activations(x, *, tau_abs: float = MASSIVE_ABS, k: float = MASSIVE_RATIO,
                        row_weights=None) -> dict:
  """Sums of the massive-activation criterion over the sequences of x [B, P, D] (P positions; other
  middle axes are flattened into P), weighted by row_weights [B] (0 = padding row; default 1).

  Returns float32 arrays: count (weighted number of massive entries), entries (weighted number of
  entries), dim_counts [D], pos_counts [P], ratio_sum and ratio_max of the per-sequence
  max|x| / median|x| (sequences with median 0 left out), rows (sum of weights).
  """
  B, D = x.shape[0], x.shape[-1]
  x = x.astype(jnp.float32).reshape(B, -1, D)
  w = jnp.ones((B,), jnp.float32) if row_weights is None else jnp.asarray(row_weights, jnp.float32)
  hit = massive_mask(x, tau_abs=tau_abs, k=k).astype(jnp.float32) * w[:, None, None]
  rows = metrics.as_rows(x, "sequence")
  med = jnp.median(jnp.abs(rows), axis=-1)
  ok = (med > 0) & (w > 0)
  ratio = jnp.where(ok, metrics.inf_norm(rows) / jnp.where(ok, med, 1.0), 0.0)
  return {"count": jnp.sum(hit), "entries": jnp.sum(w) * x.shape[1] * D,
          "dim_counts": jnp.sum(hit, axis=(0, 1)), "pos_counts": jnp.sum(hit, axis=(0, 2)),
          "ratio_sum": jnp.sum(ratio * w), "ratio_max": jnp.max(ratio), "rows": jnp.sum(w)}
