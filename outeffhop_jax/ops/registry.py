"""One registry of attention normalizers, addressed by a spec string, for every layer and model.

Specs: "softmax", "softmax1", "softmax_n:N", "clipped:GAMMA:ZETA", "clipped1:GAMMA:ZETA",
"sparsemax", "entmax:ALPHA", "sigmoid", "sigmoid:B", "softplus", "stablemax", "softpick",
"softpick:EPS". `get_normalizer(spec)` returns a callable `Normalizer`.

Kinds (`Normalizer.kind`), which decide what the attention paths and Hopfield ops can do with one:
  "sink"         softmax family, exp(x) / (exp(sink) + sum exp(x)): every attention path, sinks,
                 a Hopfield energy.
  "clipped"      clipped softmax / softmax1: "reference" attention only, no Hopfield energy.
  "sparse"       sparsemax / entmax: "reference" attention only, a Tsallis Hopfield energy.
  "elementwise"  sigmoid: p_i depends on x_i alone (and the row's valid count n), no row sum;
                 "reference" and "blockwise" attention, no Hopfield energy.
  "l1"           softplus (LSSA), stablemax, softpick: a non-negative score divided by a row sum
                 (`score` names which); "reference" and "blockwise" attention, no Hopfield energy.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax.numpy as jnp

from outeffhop_jax.ops import _checks
from outeffhop_jax.ops import alternatives as A
from outeffhop_jax.ops import normalizers
from outeffhop_jax.ops import sparse

VALID_SPECS = ('"softmax", "softmax1", "softmax_n:N" (finite N > 0) [kind sink], '
               '"clipped:GAMMA:ZETA", "clipped1:GAMMA:ZETA" (finite GAMMA <= 0, ZETA >= 1) '
               '[kind clipped], "sparsemax", '
               '"entmax:ALPHA" (1 < ALPHA <= 2) [kind sparse], "sigmoid", "sigmoid:B" (fixed bias B) '
               '[kind elementwise], "softplus", "stablemax", "softpick", "softpick:EPS" (EPS >= 0) '
               '[kind l1]')


@dataclasses.dataclass(frozen=True)
class Normalizer:
  """A normalizer over one axis: `norm(x, axis=-1, where=None) -> probabilities` (x's shape, dtype).

  Attributes:
    spec: the canonical spec string.
    kind: "sink" (softmax family: exp(x) / (exp(sink) + sum exp(x))), "clipped", "sparse",
      "elementwise" (sigmoid) or "l1" (softplus, stablemax, softpick); see the module docstring.
    sink: sink logit for kind "sink" (-inf = softmax, 0 = softmax1, log N = softmax_n); None otherwise.
    gamma, zeta: clipping parameters of kind "clipped"; `base_sink` is the sink of the clipped base.
    alpha: entmax alpha of kind "sparse" (2 = sparsemax).
    score: the map of kinds "elementwise" / "l1": "sigmoid", "softplus", "stablemax" or "softpick".
    bias: fixed sigmoid bias ("sigmoid:B"); None = -log n, n the row's number of valid keys.
    eps: softpick's denominator epsilon.
  """
  spec: str
  kind: str
  sink: float | None = None
  gamma: float | None = None
  zeta: float | None = None
  base_sink: float | None = None
  alpha: float | None = None
  score: str | None = None
  bias: float | None = None
  eps: float | None = None

  def __call__(self, x, axis: int = -1, where=None):
    return _apply(self, x, axis, where)

  def with_sinks(self, sinks) -> Callable:
    """This normalizer with explicit sink logits (broadcastable to the reduced shape); sink family only."""
    if self.kind != "sink":
      raise ValueError(f"sinks are only defined for the softmax/sink family, not normalizer {self.spec!r}")
    return lambda x, axis=-1, where=None: normalizers.softmax_with_sink(x, sinks, axis=axis,
                                                                        where=where)


def _masked_for_sparse(x, axis, where, alpha):
  """Replaces masked logits by a finite value certain to fall outside the support.

  The support threshold satisfies tau >= (alpha - 1) max(x) - 1, so a logit below
  max(x) - 1 / (alpha - 1) - 1 gets probability 0; -inf would break the sorted cumulative sums.
  """
  x = jnp.asarray(x)
  where = _checks.as_bool_mask(where, "where")
  _checks.check_broadcastable(where.shape, x.shape, "where", "x")
  where = jnp.broadcast_to(where, x.shape)
  ct = jnp.promote_types(x.dtype, jnp.float32)
  xc = x.astype(ct)
  x_max = jnp.max(jnp.where(where, xc, -jnp.inf), axis=axis, keepdims=True, initial=-jnp.inf)
  x_max = jnp.where(jnp.isfinite(x_max), x_max, 0.0)
  low = x_max - 1.0 / (alpha - 1.0) - 2.0
  return jnp.where(where, xc, low), where


def _apply(norm: Normalizer, x, axis, where):
  if norm.kind == "sink":
    if norm.sink == 0.0:
      return normalizers.softmax1(x, axis=axis, where=where)
    if norm.sink == -math.inf:
      return normalizers.softmax(x, axis=axis, where=where)
    return normalizers.softmax_with_sink(x, norm.sink, axis=axis, where=where)
  if norm.kind == "clipped":
    fn = normalizers.clipped_softmax1 if norm.base_sink == 0.0 else normalizers.clipped_softmax
    return fn(x, norm.gamma, norm.zeta, axis=axis, where=where)
  if norm.kind == "sparse":
    dtype = jnp.asarray(x).dtype
    if where is not None:
      x, where = _masked_for_sparse(x, axis, where, norm.alpha)
    if norm.alpha == 2.0:
      p = sparse.sparsemax(x, axis=axis)
    else:
      p = sparse.entmax(x, norm.alpha, axis=axis)
    if where is not None:
      p = jnp.where(where, p, 0.0)
    return p.astype(dtype)
  if norm.kind == "elementwise" and norm.score == "sigmoid":
    return A.sigmoid_attention(x, norm.bias, axis=axis, where=where)
  if norm.kind == "l1" and norm.score == "softplus":
    return A.softplus_attention(x, axis=axis, where=where)
  if norm.kind == "l1" and norm.score == "stablemax":
    return A.stablemax(x, axis=axis, where=where)
  if norm.kind == "l1" and norm.score == "softpick":
    return A.softpick(x, norm.eps, axis=axis, where=where)
  raise ValueError(f"unknown normalizer kind {norm.kind!r} (score {norm.score!r}) of {norm.spec!r}")


def _floats(spec: str, parts: list[str], n: int) -> list[float]:
  if len(parts) != n:
    raise ValueError(f"normalizer spec {spec!r} needs {n} numeric field(s); valid forms: {VALID_SPECS}")
  try:
    return [float(p) for p in parts]
  except ValueError:
    raise ValueError(f"normalizer spec {spec!r} has a non-numeric field; valid forms: {VALID_SPECS}") from None


def get_normalizer(spec) -> Normalizer:
  """Parses a normalizer spec (see module docstring); a `Normalizer` passes through unchanged."""
  if isinstance(spec, Normalizer):
    return spec
  if not isinstance(spec, str):
    raise TypeError(f"normalizer must be a spec string or Normalizer, got {type(spec).__name__}; "
                    f"valid forms: {VALID_SPECS}")
  name, *parts = spec.strip().split(":")
  if name == "softmax" and not parts:
    return Normalizer("softmax", "sink", sink=-math.inf)
  if name == "softmax1" and not parts:
    return Normalizer("softmax1", "sink", sink=0.0)
  if name == "softmax_n":
    (n,) = _floats(spec, parts, 1)
    if not 0 < n < math.inf:
      raise ValueError(f"softmax_n needs a finite N > 0, got N={n} in {spec!r}")
    return Normalizer(f"softmax_n:{parts[0]}", "sink", sink=math.log(n))
  if name in ("clipped", "clipped1"):
    gamma, zeta = _floats(spec, parts, 2)
    # Finite too: NaN passes neither test below silently, and -inf / inf make inf - inf = NaN.
    if not -math.inf < gamma <= 0:
      raise ValueError(f"{name} needs a finite GAMMA <= 0, got GAMMA={gamma} in {spec!r}")
    if not 1 <= zeta < math.inf:
      raise ValueError(f"{name} needs a finite ZETA >= 1, got ZETA={zeta} in {spec!r}")
    return Normalizer(spec, "clipped", gamma=gamma, zeta=zeta,
                      base_sink=0.0 if name == "clipped1" else -math.inf)
  if name == "sparsemax" and not parts:
    return Normalizer("sparsemax", "sparse", alpha=2.0)
  if name == "entmax":
    (alpha,) = _floats(spec, parts, 1)
    if not 1.0 < alpha <= 2.0:
      raise ValueError(f"entmax needs 1 < ALPHA <= 2, got ALPHA={alpha} in {spec!r}")
    return Normalizer(spec, "sparse", alpha=alpha)
  if name == "sigmoid":
    if not parts:
      return Normalizer("sigmoid", "elementwise", score="sigmoid")
    (bias,) = _floats(spec, parts, 1)
    if not math.isfinite(bias):
      raise ValueError(f"sigmoid:B needs a finite bias B, got B={bias} in {spec!r}")
    return Normalizer(f"sigmoid:{parts[0]}", "elementwise", score="sigmoid", bias=bias)
  if name in ("softplus", "stablemax") and not parts:
    return Normalizer(name, "l1", score=name)
  if name == "softpick":
    if not parts:
      return Normalizer("softpick", "l1", score="softpick", eps=A.SOFTPICK_EPS)
    (eps,) = _floats(spec, parts, 1)
    if not 0.0 <= eps < math.inf:
      raise ValueError(f"softpick:EPS needs a finite EPS >= 0, got EPS={eps} in {spec!r}")
    return Normalizer(f"softpick:{parts[0]}", "l1", score="softpick", eps=eps)
  raise ValueError(f"unknown normalizer spec {spec!r}; valid forms: {VALID_SPECS}")
