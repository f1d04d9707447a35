"""A short tour of the pure-JAX ops: Softmax_1, attention with a sink, OutEffHop retrieval.

Run: python examples/ops_tour.py  (CPU, a few seconds)
"""
import jax
import jax.numpy as jnp
import numpy as np

import outeffhop_jax as oe


def main():
  # 1. Softmax_1 lets a row put (almost) no weight anywhere: the rest goes to an implicit zero logit.
  logits = jnp.array([[4.0, 1.0, 0.0], [-8.0, -9.0, -7.5]])
  print("softmax  :", np.asarray(jax.nn.softmax(logits), np.float64).round(3).tolist())
  print("softmax1 :", np.asarray(oe.softmax1(logits), np.float64).round(3).tolist())

  # 2. Attention with the same normalizer, reference vs the memory-efficient blockwise path.
  ks = jax.random.split(jax.random.key(0), 3)
  q = jax.random.normal(ks[0], (2, 256, 8, 32))
  k = jax.random.normal(ks[1], (2, 256, 2, 32))  # grouped-query: 2 kv heads for 8 query heads
  v = jax.random.normal(ks[2], (2, 256, 2, 32))
  ref = oe.dot_product_attention(q, k, v, normalizer="softmax1", is_causal=True)
  blk = oe.dot_product_attention(q, k, v, normalizer="softmax1", is_causal=True, implementation="blockwise",
                                 block_k=64)
  print(f"attention: reference vs blockwise max |diff| = {float(jnp.abs(ref - blk).max()):.2e}")

  # 3. OutEffHop retrieval. Non-negative patterns (like images) all lie in one cone, so a query
  # pointing away from that cone matches nothing: OutEffHop retrieves the zero "no-op" memory there,
  # while dense retrieval returns some memory anyway.
  rng = np.random.default_rng(0)
  patterns = np.abs(rng.normal(size=(16, 8)))
  memories = jnp.asarray(patterns / np.linalg.norm(patterns, axis=-1, keepdims=True), jnp.float32)
  match = memories[3] + 0.1 * jnp.asarray(rng.normal(size=8), jnp.float32)
  nothing = -jnp.mean(memories, axis=0)
  for name, query in (("noisy memory 3", match), ("matches nothing", nothing)):
    for normalizer in ("softmax", "softmax1"):
      out = oe.hopfield_update(query, memories, beta=50.0, normalizer=normalizer)
      norm = float(jnp.linalg.norm(out))
      nearest = f"memory {int(jnp.argmax(memories @ out))}" if norm > 1e-3 else "the no-op memory (0)"
      print(f"  {name:16s} {normalizer:8s} |retrieved| = {norm:6.3f}  -> {nearest}")
  energy = oe.hopfield_energy(match, memories, beta=50.0, normalizer="softmax1")
  print(f"OutEffHop energy of the noisy query: {float(energy):.3f}")


if __name__ == "__main__":
  main()
