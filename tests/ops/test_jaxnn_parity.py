"""dot_product_attention(normalizer="softmax") == jax.nn.dot_product_attention over its arguments."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import outeffhop_jax as oe

B, T, S, N, H = 2, 5, 7, 4, 8


def _inputs(K):
  ks = jax.random.split(jax.random.key(K), 5)
  q = jax.random.normal(ks[0], (B, T, N, H))
  k, v = jax.random.normal(ks[1], (B, S, K, H)), jax.random.normal(ks[2], (B, S, K, H))
  bias = jax.random.normal(ks[3], (B, 1, T, S))
  # random mask with the diagonal band kept, so no row is fully masked in any combination below
  band = np.abs(np.arange(T)[:, None] - np.arange(S)[None, :]) <= 0
  mask = jax.random.bernoulli(ks[4], 0.6, (B, N, T, S)) | band
  return q, k, v, bias, mask


OPTIONS = {
    "bias": lambda bias, mask: {"bias": bias},
    "bool_mask": lambda bias, mask: {"mask": mask},
    "causal": lambda bias, mask: {"is_causal": True},
    "seq_lengths": lambda bias, mask: {"query_seq_lengths": jnp.array([3, 5], jnp.int32),
                                       "key_value_seq_lengths": jnp.array([5, 7], jnp.int32)},
    "window": lambda bias, mask: {"local_window_size": (2, 1)},
}
# every single option, a few pairs, all but bias (the blockwise path's maximum) and all together
COMBOS = ([()] + [(o,) for o in OPTIONS]
          + [("causal", "seq_lengths"), ("bool_mask", "window"), ("bias", "bool_mask", "causal")]
          + [tuple(o for o in OPTIONS if o != "bias"), tuple(OPTIONS)])


def test_equals_jax_nn_on_every_combination():
  """Grouped-query (K = 2 kv heads for N = 4); multi-head is checked below with all options."""
  q, k, v, bias, mask = _inputs(2)
  for combo in COMBOS:
    kw = {}
    for o in combo:
      kw.update(OPTIONS[o](bias, mask))
    want = jax.nn.dot_product_attention(q, k, v, **kw)
    impls = ["reference"] + ([] if "bias" in combo else ["blockwise"])
    impls += ["xla", None] if len(combo) == len(OPTIONS) else []
    for impl in impls:
      got = oe.dot_product_attention(q, k, v, normalizer="softmax", implementation=impl, block_k=3,
                                     **kw)
      np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-6, err_msg=f"{combo} {impl}")
    # 3-D [T, N, H] inputs (no batch), as jax.nn takes them; seq lengths are per batch entry
    if combo in ((), ("bias", "bool_mask", "causal"), ("bool_mask", "window")):
      kw3 = {n: (x[0] if n in ("bias", "mask") else x) for n, x in kw.items()}
      np.testing.assert_allclose(
          oe.dot_product_attention(q[0], k[0], v[0], normalizer="softmax", **kw3),
          jax.nn.dot_product_attention(q[0], k[0], v[0], **kw3), atol=1e-6, rtol=1e-6,
          err_msg=f"3-D {combo}")


def test_multi_head_all_options():
  q, k, v, bias, mask = _inputs(N)
  kw = {}
  for option in OPTIONS.values():
    kw.update(option(bias, mask))
  np.testing.assert_allclose(oe.dot_product_attention(q, k, v, normalizer="softmax", **kw),
                             jax.nn.dot_product_attention(q, k, v, **kw), atol=1e-6, rtol=1e-6)


def test_positional_bias_mask_flax_float_mask_and_causal_alias():
  q, k, v, bias, _ = _inputs(N)
  k, v = k[:, :T], v[:, :T]
  want = jax.nn.dot_product_attention(q, k, v, bias[..., :T], None, is_causal=True)
  flax_mask = nnx.make_causal_mask(jnp.ones((B, T)))  # float32 1/0
  got = oe.dot_product_attention(q, k, v, bias[..., :T], flax_mask, normalizer="softmax")
  np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-6)
  with pytest.warns(DeprecationWarning, match="is_causal"):
    old = oe.dot_product_attention(q, k, v, bias[..., :T], causal=True, normalizer="softmax")
  np.testing.assert_allclose(old, want, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("impl,kw,match", [
    ("blockwise", {"bias": "b"}, "'blockwise' does not take bias"),
    ("pallas", {"bias": "b"}, "'pallas' does not take bias"),
    ("cudnn", {"local_window_size": 2}, "'cudnn' does not take local_window_size"),
    ("splash", {"mask": "m"}, "key-padding masks"),
    ("reference", {"query_seq_lengths": jnp.array([1.0, 2.0])}, "query_seq_lengths"),
    ("reference", {"local_window_size": -1}, "local_window_size"),
])
def test_unsupported_combination_names_the_path(impl, kw, match):
  q, k, v, bias, mask = _inputs(N)
  kw = {n: {"b": bias, "m": mask}.get(x, x) if isinstance(x, str) else x for n, x in kw.items()}
  with pytest.raises(ValueError, match=match):
    oe.dot_product_attention(q, k, v, normalizer="softmax", implementation=impl, **kw)
