"""The compiled kernels on a real GPU / TPU (run with e.g. JAX_PLATFORMS=cuda or tpu).

CPU twins: test_flash_attention.py runs the same kernels interpreted, test_*_gpu_export.py and
test_*_tpu_aot.py lower / compile them for CUDA and TPU without the hardware.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop_jax.kernels import attention_reference
from outeffhop_jax.kernels import flash_attention
from outeffhop_jax.kernels import splash_attention

on_accelerator = pytest.mark.skipif(jax.default_backend() == "cpu",
                                    reason="needs a GPU or TPU (JAX_PLATFORMS=cuda / tpu)")


def inputs(dtype, B=2, T=1024, N=8, K=2, H=128):
  kq, kk, kv, ks, kg = jax.random.split(jax.random.key(0), 5)
  q = jax.random.normal(kq, (B, T, N, H), dtype)
  k = jax.random.normal(kk, (B, T, K, H), dtype)
  v = jax.random.normal(kv, (B, T, K, H), dtype)
  ids = jnp.concatenate([jnp.ones((B, T // 2), jnp.int32), 2 * jnp.ones((B, T // 2), jnp.int32)],
                        axis=1)
  return q, k, v, jax.random.normal(ks, (N,)), ids, jax.random.normal(kg, (B, T, N, H), dtype)


def check(fn, dtype, tol):
  q, k, v, sinks, ids, do = inputs(dtype)
  kw = dict(causal=True, q_segment_ids=ids, kv_segment_ids=ids)
  o, vjp = jax.vjp(jax.jit(lambda *a: fn(*a[:3], sinks=a[3], **kw)), q, k, v, sinks)
  o_ref, vjp_ref = jax.vjp(lambda *a: attention_reference(*a[:3], sinks=a[3], **kw),
                           q, k, v, sinks)
  np.testing.assert_allclose(np.float32(o), np.float32(o_ref), atol=tol, rtol=tol)
  for g, g_ref in zip(vjp(do), vjp_ref(do)):
    scale = max(1.0, float(jnp.abs(g_ref.astype(jnp.float32)).max()))
    np.testing.assert_allclose(np.float32(g), np.float32(g_ref), atol=tol * scale, rtol=tol)


@pytest.mark.requires_accelerator
@on_accelerator
@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-3), (jnp.bfloat16, 3e-2)])
def test_compiled_flash_attention(dtype, tol):
  check(lambda *a, **kw: flash_attention(*a, interpret=False, **kw), dtype, tol)


@pytest.mark.requires_accelerator
@pytest.mark.skipif(jax.default_backend() != "tpu", reason="splash is a TPU kernel")
def test_compiled_splash_attention():
  check(lambda *a, **kw: splash_attention(*a, interpret=False, **kw), jnp.bfloat16, 3e-2)
