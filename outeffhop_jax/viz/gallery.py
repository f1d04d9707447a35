"""Retrieval gallery: digit memories, corrupted queries, what each normalizer and beta retrieves.

Images are shown in the preprocessed space (see `digits`): centred, unit-norm patterns on a grey
scale symmetric about 0, so a retrieved ~0 (OutEffHop's no-op) reads as a flat mid-grey tile and the
mean of all memories as a faint blur. The number under each retrieved tile is ||x||.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop_jax.viz import digits
from outeffhop_jax.viz._common import (DEFAULT_NORMALIZERS, check_betas, check_normalizers,
                                       display_name, new_figure, retrieve)


def gallery_queries(memories, *, num_targets: int = 3, mask: float = 0.5, noise: float = 0.8,
                    unlike: float = -0.3, seed: int = 0):
  """Queries [n, d], targets [n, d] (zeros where nothing should match) and row labels.

  For each of the first `num_targets` memories: a masked and a noisy copy. Last: a query with
  similarity `unlike` (< 0) to every memory, scaled to unit norm (`digits.unlike_all`).
  """
  memories = np.asarray(memories, np.float32)
  if not 1 <= num_targets <= len(memories):
    raise ValueError(f"num_targets must be in [1, {len(memories)}], got {num_targets}")
  targets = memories[:num_targets]
  masked = np.asarray(digits.corrupt(targets, None, kind="mask", amount=mask))
  noisy = np.asarray(digits.corrupt(targets, jax.random.PRNGKey(seed), kind="noise", amount=noise))
  anti = digits.unlike_all(memories, unlike)
  anti = anti / np.linalg.norm(anti)
  queries = np.concatenate([masked, noisy, anti[None]])
  target_rows = np.concatenate([targets, targets, np.zeros_like(anti)[None]])
  labels = ([f"mask {mask:.0%} #{k}" for k in range(num_targets)]
            + [f"noise {noise:g} #{k}" for k in range(num_targets)] + ["unlike all"])
  return queries, target_rows, labels


def retrieve_grid(queries, memories, *, normalizers, betas, steps: int):
  """Retrieved states [len(betas), len(normalizers), n, d]; one batched retrieval per setting."""
  return np.stack([np.stack([np.asarray(retrieve(jnp.asarray(queries), jnp.asarray(memories),
                                                          beta=b, normalizer=s, max_steps=steps))
                             for s in normalizers]) for b in betas])


def gallery_figure(memories, queries, targets, labels: Sequence[str], *,
                   normalizers: Sequence[str] = DEFAULT_NORMALIZERS,
                   betas: Sequence[float] = (4.0, 64.0), steps: int = 1):
  """Rows: queries; columns: target, query, then one column per (beta, normalizer).

  `steps` = 1 is one CCCP update, the reading of an attention layer; more steps iterate the
  dynamics (from ~0 OutEffHop then drifts towards mean(Xi) * M / (M + 1), which is 0 only for an
  exactly centred memory set).
  """
  normalizers, betas = check_normalizers(normalizers), check_betas(betas)
  memories = np.asarray(memories, np.float32)
  queries = np.asarray(queries, np.float32)
  if memories.shape[1] != int(np.prod(digits.IMAGE_SHAPE)):
    raise ValueError(f"gallery memories must be 8x8 images, shape [M, 64], got {memories.shape}")
  if queries.shape[1:] != memories.shape[1:] or np.shape(targets) != queries.shape:
    raise ValueError(f"queries and targets must have shape [n, 64], got {queries.shape}, "
                     f"{np.shape(targets)}")
  if len(labels) != len(queries):
    raise ValueError(f"need one label per query: {len(labels)} labels, {len(queries)} queries")
  out = retrieve_grid(queries, memories, normalizers=normalizers, betas=betas, steps=steps)
  vmax = float(np.abs(memories).max())
  nrows, ncols = len(queries), 2 + len(betas) * len(normalizers)
  fig = new_figure(1.15 * ncols + 1.0, 1.25 * nrows + 0.8)
  axes = fig.subplots(nrows, ncols, squeeze=False)
  fig.suptitle(f"Retrieval gallery: {len(memories)} digit memories, {steps} update step(s); "
               "grey = 0, number = ||retrieved||", fontsize=10)

  def show(ax, vec, title=None, xlabel=None):
    image = ax.imshow(np.reshape(vec, digits.IMAGE_SHAPE), cmap="gray", vmin=-vmax, vmax=vmax)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
      ax.set_title(title, fontsize=7)
    if xlabel is not None:
      ax.set_xlabel(xlabel, fontsize=7)
    return image

  for i in range(nrows):
    head = i == 0
    show(axes[i, 0], targets[i], "target" if head else None)
    axes[i, 0].set_ylabel(labels[i], fontsize=7)
    show(axes[i, 1], queries[i], "query" if head else None)
    for bi, beta in enumerate(betas):
      for si, spec in enumerate(normalizers):
        x = out[bi, si, i]
        title = f"{display_name(spec)}\nbeta={beta:g}" if head else None
        image = show(axes[i, 2 + bi * len(normalizers) + si], x, title, f"{np.linalg.norm(x):.2f}")
  fig.colorbar(image, ax=axes, shrink=0.6, label="pixel (centred, unit-norm pattern)")
  return fig
