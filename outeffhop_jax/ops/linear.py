"""`dot_general` for dense layers whose weight gradient XLA:CPU runs as a fast (YNNPACK) matmul.

    y = x . W   over x's last axis and W's first (x [..., D], W [D, F] -> [..., F])

Same value as `lax.dot_general` and the same derivatives (forward and reverse mode, any order); only
the reverse-mode program differs. The weight gradient of a plain dot_general is
dW = dot(x [M, D], dy [M, F]) contracting M, a dot whose left operand is contracted over its leading
axis, which XLA:CPU leaves to its generic dot (about half YNNPACK's speed; a quarter of the OPT
train step of benchmarks/bench_opt_vs_torch.py on one core). Here the tangent of the W term is written as (x^T)^T . dW with
x^T [D, M] materialised behind `lax.optimization_barrier` (so it is not folded back into the dot):
its transpose, the weight gradient, is then the plain matmul x^T . dy. Used when D <= F (transposing
a wide x costs more than it saves), when no interceptor (qwix) has patched lax.dot_general, and
only on XLA:CPU (the default backend at trace time): GPU and TPU matmuls take either operand layout
at full speed, and there the extra x^T would cost memory and constrain sharding for nothing.
"""
from __future__ import annotations

import jax
from jax import lax


@jax.custom_jvp
def _dense(x, kernel):
  return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


@_dense.defjvp
def _dense_jvp(primals, tangents):
  x, kernel = primals
  dx, dkernel = tangents
  y = _dense(x, kernel)
  dy = lax.dot_general(dx, kernel, (((dx.ndim - 1,), (0,)), ((), ())))
  # x^T [D, M], materialised: the transpose of dot(x^T^T, dW) in dW is dot(x^T, dy), a plain matmul.
  xt_DM = lax.optimization_barrier(x.reshape(-1, x.shape[-1]).T)
  dy_kernel = lax.dot_general(xt_DM, dkernel, (((0,), (0,)), ((), ())))
  return y, dy + dy_kernel.reshape(dy.shape)


_LAX_DOT = lax.dot_general
_LAX_DOT_CODE = getattr(lax.dot_general, "__code__", None)


def _intercepted() -> bool:
  """Whether lax.dot_general is patched right now (qwix quantization swaps its attribute or code):
  then the call must reach it as itself, at the caller's trace level, not inside a custom_jvp."""
  fn = lax.dot_general
  return fn is not _LAX_DOT or getattr(fn, "__code__", None) is not _LAX_DOT_CODE


def dense_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None,
                      out_sharding=None):
  """`lax.dot_general`'s signature (use as `nnx.Linear(..., dot_general=dense_dot_general)`).

  The dense contraction (lhs's last axis with a 2-D rhs's first, no batch axes, same dtypes, default
  precision and sharding) takes the form above; any other call is `lax.dot_general` itself.
  """
  (lc, rc), (lb, rb) = dimension_numbers
  plain = (tuple(lc) == (lhs.ndim - 1,) and tuple(rc) == (0,) and not lb and not rb and rhs.ndim == 2
           and lhs.ndim >= 1 and lhs.dtype == rhs.dtype and precision is None
           and preferred_element_type in (None, lhs.dtype) and out_sharding is None)
  # Only when D <= F: the extra pass transposes x [M, D]; for D > F (e.g. OPT's fc2, 1024 -> 256)
  # transposing the wider x costs more on XLA:CPU (a strided 4096 x 1024 copy: ~60 ms on one
  # core) than the generic dot loses.
  if (not plain or lhs.shape[-1] > rhs.shape[1] or _intercepted()
      or jax.default_backend() != "cpu"):
    kw = {} if out_sharding is None else {"out_sharding": out_sharding}
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type, **kw)
  return _dense(lhs, rhs)
