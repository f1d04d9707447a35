"""Modern Hopfield energies and retrieval: dense (Ramsauer et al.), OutEffHop, generalized sparse.

Memories Xi [M, d] (rows are stored patterns), query x [..., d], inverse temperature beta > 0.
    E(x) = 1/2 <x, x> - beta^-1 Psi*(beta Xi x)
with Psi* the convex conjugate of the normalizer's regulariser, so that grad Psi* = normalizer:
    "softmax"       Psi*(z) = log sum_mu exp(z_mu)                      (dense modern Hopfield)
    "softmax1"      Psi*(z) = log(1 + sum_mu exp(z_mu))                 (OutEffHop: a zero-energy
                                                                         "no-op" memory at the origin)
    "softmax_n:N"   Psi*(z) = log(N + sum_mu exp(z_mu))
    "sparsemax", "entmax:A"  Psi*(z) = <p, z> + H_A(p), p = entmax_A(z), H_A the Tsallis entropy
                    (generalized sparse Hopfield, Hu et al. 2023; A = 2 is sparsemax).
The CCCP retrieval update is x' = Xi^T normalizer(beta Xi x) = x - grad E(x), and E never increases
along it. `hopfield_update` / `hopfield_retrieve` take any registry normalizer (the same update with
clipped, sigmoid, softplus, stablemax or softpick weights), but those have no energy: for them
`hopfield_energy` raises a ValueError.

Zero memories (M = 0) are a defined case: the update is 0 for every normalizer (a weighted sum
over no memories), and the energy is 1/2 <x, x> - beta^-1 Psi*(empty): for the sink family
Psi* = log(exp(s) + 0) = s, so OutEffHop's energy is 1/2 <x, x> (only the no-op memory is left),
softmax_n's 1/2 <x, x> - log(N) / beta, and plain softmax's +inf (the log of an empty sum); the
sparse energy is +inf as well (a maximum over an empty simplex is -inf). Zero queries give empty
results. beta must be finite and > 0 (checked when its value is known, i.e. not under jit).

OutEffHop as beta -> infinity: one update retrieves the best-matching memory if its similarity is
positive and the zero vector (the no-op memory) if every similarity is negative. The zero vector is
not itself a fixed point: from x = 0 every logit is 0, so the update returns mean(Xi) * M / (M + 1).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from outeffhop_jax.ops import _checks
from outeffhop_jax.ops.normalizers import logsumexp_with_sink
from outeffhop_jax.ops.registry import get_normalizer


def _check_beta(beta):
  # Scalars and concrete arrays; a traced beta (under jit / grad) is not known until run time.
  _checks.check_param(beta, "beta", lambda v: (v > 0) & (v < jnp.inf), "finite and > 0")


def _validate(query, memories, beta):
  query, memories = jnp.asarray(query), jnp.asarray(memories)
  _checks.check_floating(query, "query")
  _checks.check_floating(memories, "memories")
  _checks.check_rank(memories, 2, "memories", "[num_memories, dim]")
  if query.ndim < 1 or query.shape[-1] != memories.shape[-1]:
    raise ValueError(f"query must have shape [..., {memories.shape[-1]}] to match memories "
                     f"{tuple(memories.shape)}, got {tuple(query.shape)}")
  _check_beta(beta)
  return query, memories


def _similarities(query, memories, beta):
  return beta * jnp.einsum("...d,md->...m", query, memories)


def _memory_mask(mask, query, memories):
  """Boolean mask broadcastable to query.shape[:-1] + (M,) (True = the memory may be retrieved)."""
  if mask is None:
    return None
  mask = _checks.as_bool_mask(mask, "mask")
  target = tuple(query.shape[:-1]) + (memories.shape[0],)
  _checks.check_broadcastable(mask.shape, target, "mask", "query.shape[:-1] + [num_memories]")
  return mask


def hopfield_energy(query, memories, *, beta, normalizer="softmax1"):
  """Energy E(query) of shape query.shape[:-1] (see module docstring for each normalizer)."""
  query, memories = _validate(query, memories, beta)
  norm = get_normalizer(normalizer)
  z = _similarities(query, memories, beta)
  if norm.kind == "sink":
    psi = logsumexp_with_sink(z, jnp.asarray(norm.sink, z.dtype), axis=-1)
  elif norm.kind == "sparse" and memories.shape[0] == 0:
    psi = jnp.full(z.shape[:-1], -jnp.inf, z.dtype)  # max over an empty simplex
  elif norm.kind == "sparse":
    p = norm(z, axis=-1)
    alpha = norm.alpha
    tsallis = jnp.sum(p - p**alpha, axis=-1) / (alpha * (alpha - 1.0))
    psi = jnp.sum(p * z, axis=-1) + tsallis
  else:
    raise ValueError(f"no Hopfield energy is defined for normalizer {norm.spec!r}; use softmax, "
                     "softmax1, softmax_n:N, sparsemax or entmax:ALPHA")
  return 0.5 * jnp.sum(query * query, axis=-1) - psi / beta


def hopfield_update(query, memories, *, beta, normalizer="softmax1", mask=None):
  """One CCCP step: Xi^T normalizer(beta Xi x, where=mask), shape of query.

  mask: optional memory mask broadcastable to query.shape[:-1] + [M] (bool, or numeric non-zero =
  valid): masked memories get weight exactly 0 (a query with no valid memory updates to 0).
  """
  query, memories = _validate(query, memories, beta)
  mask = _memory_mask(mask, query, memories)
  norm = get_normalizer(normalizer)
  p = norm(_similarities(query, memories, beta), axis=-1, where=mask)
  return jnp.einsum("...m,md->...d", p, memories).astype(query.dtype)


def hopfield_retrieve(query, memories, *, beta, normalizer="softmax1", max_steps: int = 1,
                      tol: float = 0.0, return_trajectory: bool = False, mask=None):
  """Iterates `hopfield_update` for a static `max_steps` with `lax.scan` (reverse-mode friendly).

  An entry (a query row) whose last update moved it by less than `tol` (L2) is frozen from then on.
  mask: optional memory mask as in `hopfield_update`, used at every step.
  Returns the retrieved states [..., d], or with `return_trajectory` the states
  [max_steps + 1, ..., d] including the initial query. Works inside `jax.shard_map` (the scan
  carries vary over the mesh axes of query, memories and mask).
  """
  query, memories = _validate(query, memories, beta)
  mask = _memory_mask(mask, query, memories)
  if not isinstance(max_steps, int) or max_steps < 0:
    raise ValueError(f"max_steps must be a non-negative int, got {max_steps!r}")
  if not tol >= 0:
    raise ValueError(f"tol must be >= 0, got {tol}")
  norm = get_normalizer(normalizer)

  def step(carry, _):
    x, done = carry
    x_new = hopfield_update(x, memories, beta=beta, normalizer=norm, mask=mask)
    moved = jnp.linalg.norm((x_new - x).astype(jnp.float32), axis=-1)
    x_next = jnp.where(done[..., None], x, x_new)
    return (x_next, done | (moved < tol)), x_next

  refs = (query, memories, mask, beta if isinstance(beta, jax.Array) else None)
  x0 = _checks.vary_like(query, *refs)
  done0 = _checks.vary_like(jnp.zeros(query.shape[:-1], bool), *refs)
  (x, _), traj = lax.scan(step, (x0, done0), None, length=max_steps)
  if return_trajectory:
    return jnp.concatenate([x0[None], traj], axis=0)
  return x
