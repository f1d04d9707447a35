"""Drop this library's normalizers into other Flax code: `attention_fn` and `convert`.

    attention_fn(normalizer="softmax1")  -> a function with `flax.nnx.dot_product_attention`'s
        signature, for `nnx.MultiHeadAttention(attention_fn=...)` and
        `flax.linen.MultiHeadDotProductAttention(attention_fn=...)`.
    convert(model, normalizer="softmax1", gate=..., sinks=...)  -> switches every attention module
        of an NNX model it knows (Flax's `nnx.MultiHeadAttention`, this library's
        `nn.MultiHeadAttention`) in place, adds the gate / sink parameters, returns what changed.

Flax conventions kept: query [batch..., T, N, H], key/value [batch..., S, K, H]; `mask` broadcastable
to [batch..., N, T, S], False (or 0) = masked; `bias` added to the scaled logits; dropout on the
probabilities with Flax's rng use (`broadcast_dropout` shares one [T, S] keep mask over batch and
heads); `module=` sows the probabilities as "attention_weights". One difference: a row with no
visible key gives 0 here (Flax averages every value there).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes as nnx_dtypes

from outeffhop_jax import ops
from outeffhop_jax.nn import _init
from outeffhop_jax.nn.attention import MultiHeadAttention, parse_sinks
from outeffhop_jax.nn.gates import apply_gate, check_gate, make_gate


def _flatten_batch(x, batch, trailing: int):
  """[batch..., *trailing dims] (leading dims broadcastable to `batch`) -> [B', *trailing]."""
  if x is None:
    return None
  x = jnp.asarray(x)
  x = x.reshape((1,) * (len(batch) + trailing - x.ndim) + x.shape)
  lead = x.shape[:len(batch)]
  if all(d == 1 for d in lead):
    return x.reshape((1,) + x.shape[len(batch):])
  return jnp.broadcast_to(x, tuple(batch) + x.shape[len(batch):]).reshape(
      (-1,) + x.shape[len(batch):])


def _sow(module, weights):
  if isinstance(module, nnx.Module):
    module.sow(nnx.Intermediate, "attention_weights", weights)
  else:  # flax.linen
    module.sow("intermediates", "attention_weights", weights)


def attention_fn(normalizer="softmax1", sinks=None, *, implementation=None, scale=None,
                 block_k=None):
  """A drop-in for `flax.nnx.dot_product_attention` (and linen's) with this library's normalizer.

  Args:
    normalizer: spec or `ops.Normalizer` (default "softmax1"; "softmax" reproduces Flax).
    sinks: fixed sink logits, a scalar or [N] (softmax/sink family only); None = the normalizer's.
    implementation: `ops.dot_product_attention` implementation used when neither dropout nor
      `module=` needs the probabilities (None = the best for the platform).
    scale: logit scale (default 1 / sqrt(H), as Flax).
    block_k: key block size of the blockwise / fused paths.
  Returns `fn(query, key, value, bias=None, mask=None, broadcast_dropout=True, dropout_rng=None,
  dropout_rate=0.0, deterministic=False, dtype=None, precision=None, module=None,
  promote_dtype=..., is_causal=False, *, sinks=None)` -> [batch..., T, N, H]; a per-call `sinks`
  overrides the fixed one (what `convert` uses for learned sinks).
  """
  norm = ops.get_normalizer(normalizer)
  if implementation not in ops.attention.IMPLEMENTATIONS:
    raise ValueError(f"implementation must be one of {ops.attention.IMPLEMENTATIONS}, "
                     f"got {implementation!r}")
  ops.attention.check_implementation(norm, implementation)
  if sinks is not None and norm.kind != "sink":
    raise ValueError(f"sinks are only defined for the softmax/sink family, not normalizer "
                     f"{norm.spec!r}")
  fixed_sinks = sinks

  def dot_product_attention(query, key, value, bias=None, mask=None, broadcast_dropout=True,
                            dropout_rng=None, dropout_rate=0.0, deterministic=False, dtype=None,
                            precision=None, module=None,
                            promote_dtype=nnx_dtypes.promote_dtype, is_causal=False, *,
                            sinks=None):
    query, key, value = promote_dtype((query, key, value), dtype=dtype)
    dtype = query.dtype
    if query.ndim < 3 or key.ndim != query.ndim or value.ndim != query.ndim:
      raise ValueError(f"query, key and value must be [batch..., seq, heads, head_dim] of one rank, "
                       f"got shapes {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    batch = query.shape[:-3]
    if key.shape[:-3] != batch or value.shape[:-3] != batch:
      raise ValueError(f"query, key and value must share the batch dimensions {tuple(batch)}, got "
                       f"{tuple(key.shape)}, {tuple(value.shape)}")
    sinks = fixed_sinks if sinks is None else sinks
    q4, k4, v4 = (_flatten_batch(x, batch, 3) for x in (query, key, value))
    bias4, mask4 = _flatten_batch(bias, batch, 3), _flatten_batch(mask, batch, 3)
    use_dropout = not deterministic and dropout_rate > 0.0
    kw = dict(normalizer=norm, sinks=sinks, is_causal=is_causal, scale=scale)
    if not use_dropout and module is None:
      out = ops.dot_product_attention(q4, k4, v4, bias4, mask4, implementation=implementation,
                                      block_k=block_k, **kw)
      return out.reshape(batch + out.shape[1:])
    # The probabilities are needed (dropout or sowing): form them, as Flax does.
    p = ops.attention_weights(q4, k4, bias4, mask4, **kw).astype(dtype)
    N, T, S = p.shape[1:]
    p = p.reshape(batch + (N, T, S))
    if module is not None:
      _sow(module, p)
    if use_dropout:
      if dropout_rng is None:
        raise ValueError("dropout_rng is required when dropout_rate > 0 and deterministic=False")
      keep_prob = 1.0 - dropout_rate
      shape = (1,) * (len(batch) + 1) + (T, S) if broadcast_dropout else p.shape
      keep = jax.random.bernoulli(dropout_rng, keep_prob, shape)
      p = p * (keep.astype(dtype) / jnp.asarray(keep_prob, dtype=dtype))
    K = key.shape[-2]
    p_BKGTS = p.reshape((-1, K, N // K, T, S))
    out = jnp.einsum("bkgts,bskh->btkgh", p_BKGTS, v4, precision=precision)
    return out.reshape(batch + (T, N, value.shape[-1]))

  dot_product_attention.__doc__ = (f"`flax.nnx.dot_product_attention` with normalizer "
                                   f"{norm.spec!r} (see `outeffhop_jax.nn.attention_fn`).")
  return dot_product_attention


@dataclasses.dataclass(frozen=True)
class Change:
  """One converted module: its path in the model, its type and what changed."""
  path: str
  module: str
  changes: tuple[str, ...]
  added_params: int

  def __str__(self):
    return f"{self.path or '<root>'} ({self.module}): {'; '.join(self.changes)}"


class ConvertedMultiHeadAttention(nnx.MultiHeadAttention):
  """`nnx.MultiHeadAttention` after `convert`: the same parameters plus optional `sinks` [N]
  (learned sink logits) and `gate` (a gate of this library on the attention output per head).

  Each call runs Flax's own __call__ with `attention_fn` bound, for that call only, to the learned
  sinks and the gate of this call's query input, so caching, dropout and sowing stay Flax's."""

  def __call__(self, inputs_q, *args, **kwargs):
    base = self.attention_fn
    sinks = getattr(self, "sinks", None)
    sinks = None if sinks is None else sinks[...]
    gate = getattr(self, "gate", None)

    def bound(*a, **kw):
      ctx = base(*a, sinks=sinks, **kw)
      return ctx if gate is None else apply_gate(gate, inputs_q, ctx)

    self.attention_fn = bound
    try:
      return super().__call__(inputs_q, *args, **kwargs)
    finally:
      self.attention_fn = base


def _count(node) -> int:
  if node is None:
    return 0
  if isinstance(node, nnx.Variable):
    return int(node[...].size)
  return sum(int(x.size) for x in jax.tree.leaves(nnx.state(node, nnx.Param)))


def _convert_flax(mha: nnx.MultiHeadAttention, norm, gate, gate_init, sink_spec, rngs):
  changes = [f"attention_fn -> {norm.spec}"]
  N, H = mha.num_heads, mha.head_dim
  fixed = sink_spec if isinstance(sink_spec, float) else None
  old_class = type(mha)
  if old_class is not nnx.MultiHeadAttention and old_class is not ConvertedMultiHeadAttention:
    raise TypeError(f"cannot convert a subclass of nnx.MultiHeadAttention ({old_class.__name__}): "
                    "its __call__ may not use attention_fn")
  mha.attention_fn = attention_fn(norm, sinks=fixed)
  if fixed is not None:
    changes.append(f"fixed sink logit {fixed}")
  added = 0
  if old_class is nnx.MultiHeadAttention:
    mha.__class__ = ConvertedMultiHeadAttention
  if sink_spec == "learned" and getattr(mha, "sinks", None) is None:
    mha.sinks = nnx.data(_init.param(rngs, _init.zeros, (N,), ("heads",), jnp.float32))
    added += N
    changes.append(f"learned sinks [{N}] at 0")
  if gate != "none" and getattr(mha, "gate", None) is None:
    mha.gate = nnx.data(make_gate(gate, d_model=mha.in_features, num_heads=N, head_dim=H,
                                  pi_init=gate_init, param_dtype=mha.param_dtype, rngs=rngs))
    n = _count(mha.gate)
    added += n
    changes.append(f"gate {gate!r} (pi_init {gate_init}, {n} parameters)")
  return changes, added


def _convert_ours(mha: MultiHeadAttention, norm, gate, gate_init, sink_spec, rngs):
  ops.attention.check_implementation(norm, mha.implementation)
  changes = [f"normalizer {mha.norm.spec} -> {norm.spec}"]
  mha.norm = norm
  added = 0
  if isinstance(sink_spec, float):
    mha.fixed_sink = sink_spec
    changes.append(f"fixed sink logit {sink_spec}")
  elif sink_spec == "learned" and mha.sinks is None:
    mha.sinks = nnx.data(_init.param(rngs, _init.zeros, (mha.num_heads,), ("heads",),
                                      jnp.float32))
    mha.fixed_sink = None
    added += mha.num_heads
    changes.append(f"learned sinks [{mha.num_heads}] at 0")
  if gate != "none" and mha.gate is None:
    mha.gate = nnx.data(make_gate(gate, d_model=mha.d_model, num_heads=mha.num_heads,
                                  head_dim=mha.head_dim, pi_init=gate_init,
                                  param_dtype=mha.query.kernel.dtype, rngs=rngs))
    n = _count(mha.gate)
    added += n
    changes.append(f"gate {gate!r} (pi_init {gate_init}, {n} parameters)")
  return changes, added


def convert(model, normalizer="softmax1", *, gate: str = "none", gate_init: float = 0.25,
            sinks="none", rngs: nnx.Rngs | None = None) -> list[Change]:
  """Switches every attention module of an NNX `model` to `normalizer`, in place.

  Known modules: `flax.nnx.MultiHeadAttention` (its attention_fn becomes `attention_fn(normalizer)`
  and its class `ConvertedMultiHeadAttention`, which carries the new parameters; the existing
  parameters keep their paths) and this library's `nn.MultiHeadAttention` (its normalizer, sinks and
  gate are set). A module that already has a gate / learned sinks keeps them.
  Args:
    normalizer: spec or `ops.Normalizer`.
    gate: one of `nn.GATES` ("none", "linear", "mlp", "output_headwise", "output_elementwise"),
      added where the module has none, initialised as the library's gates (bias logit(gate_init)).
    sinks: "none", a fixed sink logit (float), or "learned" (one [N] parameter per module, at 0).
    rngs: for the new gate parameters (default nnx.Rngs(0)).
  Returns one `Change` per converted module (path, type, what changed, parameters added); the
  model's parameter count grows by exactly the sum of `added_params`. ValueError if the model holds
  no known attention module or the normalizer cannot take the sinks.
  """
  norm = ops.get_normalizer(normalizer)
  check_gate(gate)
  sink_spec = parse_sinks(sinks)
  if sink_spec is not None and norm.kind != "sink":
    raise ValueError(f"sinks={sinks!r} needs a softmax-family normalizer, got {norm.spec!r}")
  if not 0.0 < gate_init < 1.0:
    raise ValueError(f"gate_init must be in (0, 1), got {gate_init}")
  rngs = rngs if rngs is not None else nnx.Rngs(0)
  found = [(path, node) for path, node in nnx.iter_graph(model)
           if isinstance(node, (nnx.MultiHeadAttention, MultiHeadAttention))]
  if not found:
    raise ValueError("convert found no attention module (flax.nnx.MultiHeadAttention or "
                     "outeffhop_jax.nn.MultiHeadAttention) in the model")
  report = []
  for path, node in found:
    fn = _convert_flax if isinstance(node, nnx.MultiHeadAttention) else _convert_ours
    kind = type(node).__module__ + "." + type(node).__name__
    changes, added = fn(node, norm, gate, gate_init, sink_spec, rngs)
    report.append(Change("/".join(str(p) for p in path), kind, tuple(changes), added))
  return report


def param_count(model) -> int:
  """Number of parameters (entries of every nnx.Param) of an NNX model."""
  return _count(model)


__all__ = ["Change", "ConvertedMultiHeadAttention", "attention_fn", "convert", "param_count"]
