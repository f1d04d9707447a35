"""Image memories from scikit-learn's 8x8 digits (shipped with scikit-learn, no download).

Preprocessing, and why it matters for OutEffHop's no-op retrieval:
  1. Centre by the mean image of the *whole* data set (1797 digits). Raw pixels are non-negative, so
     every two raw digits have a positive inner product: no query in the image cone is "unlike" a
     memory, every similarity beta <xi, x> is positive, and softmax1 behaves like softmax. After
     centring, similarities have both signs, and a query unlike every memory (all similarities
     <= 0) exists; OutEffHop then sends most of its mass to the no-op memory and retrieves ~0.
     Centring on the data set rather than on the stored subset keeps that possible: a subset
     centred on its own mean has sum_mu <xi_mu, x> = 0 for every x, so some similarity is >= 0.
  2. Scale each pattern to unit L2 norm. Similarities are then cosines in [-1, 1], so one beta means
     the same separation for every pattern, and an exact memory sits at distance 1 from the origin.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

IMAGE_SHAPE = (8, 8)


@functools.lru_cache(maxsize=1)
def _digits():
  from sklearn.datasets import load_digits  # optional dependency: only the digit experiments need it
  data = load_digits()
  return data.data.astype(np.float32), data.target.astype(np.int32)


def digit_patterns(num: int, *, seed: int = 0, classes=None, center: bool = True,
                   normalize: bool = True):
  """`num` distinct digits as patterns.

  Returns:
    (patterns [num, 64] float32, labels [num] int32). Without `classes`, one digit per class in
    turn (0, 1, ..., 9, 0, ...), chosen at random within each class by `seed`.
  """
  images, labels = _digits()
  if not 1 <= num <= len(images):
    raise ValueError(f"num must be in [1, {len(images)}], got {num}")
  rng = np.random.default_rng(seed)
  classes = np.arange(10) if classes is None else np.asarray(classes)
  # Round-robin over classes: index k takes the (k // len(classes))-th random member of its class.
  per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
  idx = np.array([per_class[k % len(classes)][k // len(classes)] for k in range(num)])
  x = images[idx]
  if center:
    x = x - images.mean(0)
  if normalize:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
  return x.astype(np.float32), labels[idx]


def corrupt(patterns, key, *, kind: str = "mask", amount: float = 0.5):
  """Corrupted copies [n, 64] of patterns [n, 64].

  kind "mask": zero the bottom `amount` fraction of image rows (0 is the data-set mean pixel after
  centring, i.e. "unknown"). kind "noise": add Gaussian noise of norm ~`amount` times the pattern's.
  """
  patterns = jnp.asarray(patterns, jnp.float32)
  if not 0.0 <= amount <= 1.0 and kind == "mask":
    raise ValueError(f"mask amount must be in [0, 1], got {amount}")
  if kind == "mask":
    rows = IMAGE_SHAPE[0]
    keep = jnp.arange(rows) < rows - int(round(amount * rows))
    mask = jnp.repeat(keep, IMAGE_SHAPE[1])
    return patterns * mask
  if kind == "noise":
    noise = jax.random.normal(key, patterns.shape) / np.sqrt(patterns.shape[-1])
    return patterns + amount * jnp.linalg.norm(patterns, axis=-1, keepdims=True) * noise
  raise ValueError(f"unknown corruption {kind!r}; use 'mask' or 'noise'")


def unlike_all(memories, similarity: float = -0.3):
  """A query x with <xi_mu, x> = similarity for every memory: x = similarity * pinv(Xi) 1.

  The minimum-norm solution of Xi x = similarity * 1; it exists when the memories are linearly
  independent (M <= d). With similarity < 0 it is negatively correlated with every memory.
  """
  memories = np.asarray(memories, np.float64)
  x = similarity * np.linalg.pinv(memories) @ np.ones(len(memories))
  if not np.allclose(memories @ x, similarity, atol=1e-4):
    raise ValueError("no query has the same similarity to every memory: memories are dependent")
  return x.astype(np.float32)
