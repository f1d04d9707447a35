"""Loss of the continued training in `regrowth`: symmetric in-batch InfoNCE, one jitted step.

With q [P, D] and d [P, D] the L2-normalised mean-pooled embeddings of P query / passage pairs
(`repair.loss.embeddings`: mean over real tokens) and S = q d^T / temperature [P, P]:

    L = 1/2 [ mean_i (logsumexp_j S_ij - S_ii) + mean_j (logsumexp_i S_ij - S_jj) ]

i.e. cross-entropy against the diagonal in both directions (query -> passage and passage -> query;
`symmetric=False` keeps the first term only). No outlier penalty, no distillation: the model is
trained on its own kind of objective only. Dropout is off (deterministic forward): the only
randomness of a run is its data order.

AdamW as in `repair.loss.make_optimizer` (global-norm clipping, weight decay on matrices) at a
learning rate set from Python each step (`repair.loss.learning_rate`: linear warmup, then constant
when end_lr_ratio is 1).
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from outeffhop_jax.analysis.experiments.repair.loss import TrainOptions, embeddings, make_optimizer


def info_nce(q_PD, d_PD, temperature: float, symmetric: bool = True):
  """Scalar float32 InfoNCE of paired rows (row i of q belongs to row i of d); see the docstring."""
  s_PP = jnp.asarray(q_PD, jnp.float32) @ jnp.asarray(d_PD, jnp.float32).T / temperature
  diag_P = jnp.diagonal(s_PP)
  q_to_d = jnp.mean(jax.nn.logsumexp(s_PP, axis=1) - diag_P)
  if not symmetric:
    return q_to_d
  return 0.5 * (q_to_d + jnp.mean(jax.nn.logsumexp(s_PP, axis=0) - diag_P))


def encode(model, ids_BT, mask_BT):
  """L2-normalised mean-pooled embeddings [B, D] float32 of a BERTEncoder (no capture)."""
  h = model(ids_BT, attention_mask=mask_BT)
  return embeddings(h.astype(jnp.float32), mask_BT)


@dataclasses.dataclass(frozen=True)
class ContrastiveOptions:
  """temperature of the similarities; symmetric: both directions (see the module docstring);
  train: optimizer settings (lr, warmup_frac, end_lr_ratio, weight_decay, grad_clip)."""
  temperature: float = 0.05
  symmetric: bool = True
  train: TrainOptions = TrainOptions(penalty="none", lr=5e-5, warmup_frac=0.1, end_lr_ratio=1.0)


def contrastive_terms(model, q_ids, q_mask, d_ids, d_mask, opts: ContrastiveOptions) -> dict:
  """{"loss": InfoNCE, "accuracy": fraction of queries whose own passage scores highest}."""
  q, d = encode(model, q_ids, q_mask), encode(model, d_ids, d_mask)
  s = q @ d.T
  acc = jnp.mean((jnp.argmax(s, axis=1) == jnp.arange(s.shape[0])).astype(jnp.float32))
  return {"loss": info_nce(q, d, opts.temperature, opts.symmetric), "accuracy": acc}


@functools.partial(jax.jit, static_argnames=("graphdef", "opts"))
def _train_step(params, opt_state, rest, q_ids, q_mask, d_ids, d_mask, lr, *, graphdef,
                opts: ContrastiveOptions):
  # Module level, static graph definition and options: every seed of an arm shares one compilation.
  def loss_fn(p):
    model = nnx.merge(graphdef, p, rest, copy=True)
    terms = contrastive_terms(model, q_ids, q_mask, d_ids, d_mask, opts)
    return terms["loss"], terms

  (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = make_optimizer(opts.train).update(grads, opt_state, params)
  updates = jax.tree.map(lambda u: lr * u, updates)
  terms["grad_norm"] = optax.tree.norm(grads)
  return optax.apply_updates(params, updates), opt_state, terms


def make_train_step(model, opts: ContrastiveOptions):
  """(params, opt_state, step): step(params, opt_state, q_ids, q_mask, d_ids, d_mask, lr) ->
  (params, opt_state, {loss, accuracy, grad_norm}); `nnx.update(model, params)` writes back."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  opt_state = make_optimizer(opts.train).init(params)

  def step(params, opt_state, q_ids, q_mask, d_ids, d_mask, lr):
    a = jnp.asarray
    return _train_step(params, opt_state, rest, a(q_ids), a(q_mask), a(d_ids), a(d_mask),
                       jnp.float32(lr), graphdef=graphdef, opts=opts)

  return params, opt_state, step
