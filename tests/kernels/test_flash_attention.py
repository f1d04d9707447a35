"""Pallas flash attention with a sink, in interpret mode on CPU, against the naive reference.

Each case runs both the forward and the gradients wrt q, k, v and the sinks. Shapes are small
because the Pallas interpreter executes the grid step by step.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop_jax.kernels import attention_reference
from outeffhop_jax.kernels import flash_attention
from outeffhop_jax.kernels import flash_attention_supported

TOL = {jnp.float32: 1e-4, jnp.bfloat16: 2e-2}


def make_inputs(seed, B, T, S, N, K, H, dtype, logit_scale=1.0):
  kq, kk, kv, ks, kg = jax.random.split(jax.random.key(seed), 5)
  q = (jax.random.normal(kq, (B, T, N, H)) * logit_scale).astype(dtype)
  k = jax.random.normal(kk, (B, S, K, H)).astype(dtype)
  v = jax.random.normal(kv, (B, S, K, H)).astype(dtype)
  sinks = jax.random.normal(ks, (N,))
  do = jax.random.normal(kg, (B, T, N, H)).astype(dtype)
  return q, k, v, sinks, do


def padded_segments(B, T, S):
  """Batch 0: two packed documents and kv padding (id 0); batch 1: queries with no visible key."""
  q_ids = np.ones((B, T), np.int32)
  kv_ids = np.ones((B, S), np.int32)
  q_ids[0, T // 2:] = 2
  kv_ids[0, S // 3:] = 2
  kv_ids[0, S - S // 4:] = 0  # padding: no query has id 0
  if B > 1:
    q_ids[1, T // 4:T // 2] = 3  # a document with no keys: fully masked rows
  return jnp.asarray(q_ids), jnp.asarray(kv_ids)


def assert_matches_reference(q, k, v, sinks, do, tol, **kw):
  """Forward and VJP (q, k, v, sinks) of the kernel vs the reference, both in float32 terms."""
  ref_kw = {key: val for key, val in kw.items() if key in (
      "causal", "q_segment_ids", "kv_segment_ids", "scale")}
  o, vjp = jax.vjp(lambda q, k, v, s: flash_attention(q, k, v, sinks=s, **kw), q, k, v, sinks)
  o_ref, vjp_ref = jax.vjp(lambda q, k, v, s: attention_reference(q, k, v, sinks=s, **ref_kw),
                           q, k, v, sinks)
  assert o.dtype == q.dtype and o.shape == q.shape
  np.testing.assert_allclose(np.asarray(o, np.float32), np.asarray(o_ref, np.float32),
                             atol=tol, rtol=tol)
  grads, grads_ref = vjp(do), vjp_ref(do)
  for name, g, g_ref in zip(("dq", "dk", "dv", "dsinks"), grads, grads_ref):
    if g_ref is None:
      assert g is None
      continue
    g, g_ref = np.asarray(g, np.float32), np.asarray(g_ref, np.float32)
    assert np.all(np.isfinite(g)), name
    # dsinks sums B*T terms: scale its tolerance with its magnitude.
    atol = tol * max(1.0, float(np.abs(g_ref).max())) if name == "dsinks" else tol
    np.testing.assert_allclose(g, g_ref, atol=atol, rtol=tol, err_msg=name)
  return o


# (backend, dtype, B, T, S, N, K, H, block_q, block_k, causal, sinks, segments)
CASES = [
    ("tpu", jnp.float32, 1, 64, 64, 2, 2, 64, 16, 32, False, None, False),
    ("tpu", jnp.float32, 2, 64, 64, 4, 2, 64, 32, 16, True, "learned", False),
    ("tpu", jnp.float32, 2, 32, 64, 2, 1, 128, 16, 16, False, "zero", True),
    ("tpu", jnp.float32, 2, 64, 64, 4, 2, 64, 16, 16, True, "learned", True),
    ("tpu", jnp.bfloat16, 1, 64, 64, 4, 2, 64, 32, 32, True, "learned", False),
    ("triton", jnp.float32, 2, 64, 64, 4, 2, 64, 16, 32, True, "learned", True),
    ("triton", jnp.float32, 1, 64, 32, 2, 2, 128, 32, 16, False, None, False),
    ("triton", jnp.bfloat16, 2, 32, 32, 2, 1, 64, 16, 16, False, "zero", True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(
    str(x) if not hasattr(x, "dtype") else jnp.dtype(x).name for x in c))
def test_matches_reference(case):
  backend, dtype, B, T, S, N, K, H, bq, bk, causal, sinks_kind, segments = case
  q, k, v, sinks, do = make_inputs(0, B, T, S, N, K, H, dtype)
  sinks = {None: None, "zero": jnp.zeros((N,)), "learned": sinks}[sinks_kind]
  kw = dict(causal=causal, block_q=bq, block_k=bk, backend=backend)
  if segments:
    kw["q_segment_ids"], kw["kv_segment_ids"] = padded_segments(B, T, S)
  assert_matches_reference(q, k, v, sinks, do, TOL[dtype], **kw)


@pytest.mark.parametrize("backend", ["tpu", "triton"])
@pytest.mark.parametrize("with_sinks", [True, False])
def test_fully_masked_rows_are_zero_with_finite_grads(backend, with_sinks):
  B, T, S, N, K, H = 2, 32, 48, 2, 2, 64
  q, k, v, sinks, do = make_inputs(1, B, T, S, N, K, H, jnp.float32)
  q_ids, kv_ids = padded_segments(B, T, S)
  o = assert_matches_reference(q, k, v, sinks if with_sinks else None, do, 1e-4, block_q=16,
                               block_k=16, backend=backend, q_segment_ids=q_ids,
                               kv_segment_ids=kv_ids)
  masked = np.asarray(q_ids[1]) == 3
  assert masked.any()
  assert np.all(np.asarray(o)[1, masked] == 0.0)  # exactly zero, not merely small


def test_sink_zero_is_softmax1_and_none_is_softmax():
  """sinks=0 is softmax_1 = softmax over [logits, 0]; sinks=None is jax's plain softmax."""
  B, T, N, H = 1, 32, 2, 64
  q, k, v, _, _ = make_inputs(2, B, T, T, N, N, H, jnp.float32, logit_scale=4.0)
  o = flash_attention(q, k, v, causal=True, block_q=16, block_k=16)
  o_jax = jax.nn.dot_product_attention(q, k, v, is_causal=True)
  np.testing.assert_allclose(o, o_jax, atol=1e-4, rtol=1e-4)
  o1 = flash_attention(q, k, v, sinks=0.0, causal=True, block_q=16, block_k=16)
  logits = jnp.einsum("btnh,bsnh->bnts", q, k, precision="highest") / np.sqrt(H)
  logits = jnp.where(jnp.tril(jnp.ones((T, T), bool)), logits, -jnp.inf)
  probs = jnp.exp(logits) / (1.0 + jnp.sum(jnp.exp(logits), axis=-1, keepdims=True))
  o1_formula = jnp.einsum("bnts,bsnh->btnh", probs, v, precision="highest")
  np.testing.assert_allclose(o1, o1_formula, atol=1e-4, rtol=1e-4)
  assert not np.allclose(o1, o, atol=1e-3)  # the sink does change the result


@pytest.mark.parametrize("backend", ["tpu", "triton"])
def test_very_negative_logits_keep_sink_at_zero(backend):
  """All logits ≈ -1000: softmax_1 sends the mass to the sink (o ≈ 0), gradients stay finite.

  Rules out the wrong forms that put the sink at the row max or shift without clamping at 0.
  """
  B, T, N, H = 1, 16, 2, 64
  k = jnp.ones((B, T, N, H)) / 8.0
  q = -jnp.ones((B, T, N, H)) * 1000.0
  v = jax.random.normal(jax.random.key(3), (B, T, N, H))
  f = lambda q, k, v: flash_attention(q, k, v, sinks=jnp.zeros((N,)), block_q=16, block_k=16,
                                      backend=backend)
  o, vjp = jax.vjp(f, q, k, v)
  assert float(jnp.abs(o).max()) < 1e-30
  grads = vjp(jnp.ones_like(o))
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_jit_and_default_backend_on_cpu():
  q, k, v, sinks, _ = make_inputs(4, 1, 32, 32, 2, 2, 64, jnp.float32)
  f = jax.jit(lambda q, k, v, s: flash_attention(q, k, v, sinks=s, block_q=16, block_k=16))
  np.testing.assert_allclose(f(q, k, v, sinks), attention_reference(q, k, v, sinks=sinks),
                             atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------- unsupported arguments

def sds(shape, dtype=jnp.bfloat16):
  return jax.ShapeDtypeStruct(shape, dtype)


q4, k2, ids = sds((1, 256, 4, 64)), sds((1, 256, 2, 64)), sds((1, 256), jnp.int32)
k3, h48 = sds((1, 256, 3, 64)), sds((1, 256, 2, 48))
f16q, f16k = sds((1, 256, 4, 64), jnp.float16), sds((1, 256, 2, 64), jnp.float16)


@pytest.mark.parametrize("args,kwargs,match", [
    ((q4, k2, k2), dict(block_q=96), "block_q=96"),
    ((q4, k2, k2), dict(block_k=100), "block_k=100"),
    ((q4, k3, k3), {}, "multiple of k/v heads"),
    ((q4, h48, h48), {}, "share batch and head_dim"),
    ((f16q, f16k, f16k), {}, "q.dtype=float16"),
    ((q4, sds((1, 256, 2, 64), jnp.float32), k2), {}, "dtypes differ"),
    ((q4, k2, k2), dict(q_segment_ids=ids), "given together"),
    ((q4, k2, k2), dict(q_segment_ids=ids, kv_segment_ids=sds((1, 128), jnp.int32)),
     "segment ids must be"),
    ((q4, k2, k2), dict(q_segment_ids=sds((1, 256), jnp.float32), kv_segment_ids=ids),
     "q_segment_ids.dtype"),
    ((q4, k2, k2), dict(sinks=jnp.zeros((3,))), "sinks must be"),
    ((q4, k2, k2), dict(backend="cuda"), "backend='cuda'"),
    ((q4, k2, k2), dict(backend="tpu", interpret=False, block_q=64), "block_q=64"),
    ((h48, h48, h48), dict(backend="tpu", interpret=False), "head_dim=48"),
    ((h48, h48, h48), dict(backend="triton", interpret=False), "head_dim=48"),
    ((q4, k2, k2), dict(backend="triton", block_q=8), "block_q=8"),
])
def test_unsupported_arguments_raise(args, kwargs, match):
  ok, reason = flash_attention_supported(*args, **kwargs)
  assert not ok and match in reason
  with pytest.raises(ValueError) as err:
    jax.eval_shape(lambda *a: flash_attention(*a, **kwargs), *args)
  assert match in str(err.value)


def test_supported_accepts_a_good_call():
  assert flash_attention_supported(q4, k2, k2, causal=True, q_segment_ids=ids,
                                   kv_segment_ids=ids, sinks=jnp.zeros((4,))) == (True, "")
  # On CPU the default is the TPU kernel in interpret mode; the Triton one interprets too.
  assert flash_attention_supported(q4, k2, k2, backend="triton") == (True, "")
