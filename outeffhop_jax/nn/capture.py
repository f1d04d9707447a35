"""Reading sown intermediates: switch capture on, run, collect `nnx.Intermediate` by dotted name.

Modules of `nn` and `models` sow only while their `capture_intermediates` (and, for attention maps,
`capture_attention_probs`) attribute is True, so a normal forward pass costs nothing extra.

    logits, acts = capture(model, lambda m: m(input_ids_BT))
    acts["layers.3.fc2"]            # [B, T, D] output of layer 3's second FFN linear

Under `jax.jit`, call `capture` inside the jitted function (the flags are static graph attributes).
"""
from __future__ import annotations

from typing import Any, Callable

from flax import nnx


def set_capture(model: nnx.Module, intermediates: bool = True, attention_probs: bool = False):
  """Sets the capture switches of every submodule that has them; returns the previous values."""
  previous = {}
  for path, module in nnx.iter_modules(model):
    if hasattr(module, "capture_intermediates"):
      previous[path] = (module.capture_intermediates, module.capture_attention_probs)
      module.capture_intermediates = intermediates
      module.capture_attention_probs = attention_probs
  return previous


def _restore(model, previous):
  for path, module in nnx.iter_modules(model):
    if path in previous:
      module.capture_intermediates, module.capture_attention_probs = previous[path]


def flatten_intermediates(state) -> dict[str, Any]:
  """nnx.Intermediate State -> {"layers.0.fc2": array}; of a name sown several times, the last."""
  out = {}
  for path, leaf in nnx.to_flat_state(state):
    value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
    if isinstance(value, tuple):
      value = value[-1]
    out[".".join(str(p) for p in path)] = value
  return out


def capture(model: nnx.Module, fn: Callable[[nnx.Module], Any], *, attention_probs: bool = False):
  """Runs `fn(model)` with capture switched on; returns (fn's output, {dotted name: array}).

  attention_probs: also record every attention map "...attn.attn_probs" [B, N, T, S] (float32).
  """
  previous = set_capture(model, True, attention_probs)
  try:
    out, state = nnx.capture(fn, nnx.Intermediate)(model)
  finally:
    _restore(model, previous)
  return out, flatten_intermediates(state)
