"""Named groups of the activation quantizers of a `w8a8.quantize_model` model, for ablations.

A quantizer's group comes from its module path (the first matching pattern wins); paths are those
of `w8a8.quantizers` ("layers.3.output.q_out", or "bert.layers.3..." in the MLM model):

    group        what it quantizes                                path (BERT names)
    embeddings   the embedding sum entering the first LayerNorm   embeddings_layer_norm.q_in
    qkv          the Q, K and V projections' outputs              attention.inner.query.q_out, ..
    scores       the attention scores (normalizer input)          attention.scores_q
    attn_probs   the attention probabilities (normalizer output)  attention.probs_q
    context      the P.V context (after any gate)                 attention.context_q
    attn_output  the attention output projection's output         attention.inner.out.q_out
    ffn_hidden   the FFN's first linear output and its GELU       intermediate.q_out, output.q_in
    ffn_output   the FFN's second linear output                   output.q_out (OPT: fc2.q_out)
    residual     the residual sums entering a layer's LayerNorms  layers.i.*layer_norm.q_in
    layernorm    every LayerNorm output                           *layer_norm.q_out
    other        anything else w8a8 quantizes (e.g. a new gate's output)

"other" as a requested group means everything not named by the others. Weights are not
activation quantizers: they stay quantized per the setting whatever the groups.

`set_groups` switches quantizers by their static mode ("quantize" / "off"), so each new choice of
groups recompiles a jitted forward; after `make_switchable` the choice is a traced flag instead,
which an ablation over many groups needs (one compilation per input shape in all).
"""
from __future__ import annotations

import re
from typing import Iterable

import jax.numpy as jnp
from flax import nnx

from outeffhop_jax.analysis.quant import w8a8

# (group, pattern searched in the dotted path); BERT, OPT and ViT module names.
PATTERNS = (
    ("embeddings", r"(^|\.)embeddings_layer_norm\.q_in$"),
    ("qkv", r"(attention|self_attn)\.inner\.(query|key|value)\.q_out$"),
    ("scores", r"\.scores_q$"),
    ("attn_probs", r"\.probs_q$"),
    ("context", r"\.context_q$"),
    ("attn_output", r"\.inner\.out\.q_out$"),
    ("ffn_hidden", r"\.(intermediate|fc1)\.q_out$|\.(output|fc2)\.q_in$"),
    ("ffn_output", r"layers\.\d+\.(output|fc2)\.q_out$"),
    ("residual", r"layers\.\d+\.\w*(layer_norm|layernorm)\w*\.q_in$"),
    ("layernorm", r"(layer_norm|layernorm)\w*\.q_out$"),
)
GROUPS = tuple(g for g, _ in PATTERNS) + ("other",)
_COMPILED = tuple((g, re.compile(p)) for g, p in PATTERNS)


def group_of(path: str) -> str:
  """The group of one quantizer path (see the module docstring); "other" if no pattern matches."""
  for group, pattern in _COMPILED:
    if pattern.search(path):
      return group
  return "other"


def check_groups(groups: Iterable[str] | None) -> tuple[str, ...] | None:
  """None (all) or a validated tuple of group names; raises ValueError naming the unknown ones."""
  if groups is None:
    return None
  groups = (groups,) if isinstance(groups, str) else tuple(groups)
  unknown = [g for g in groups if g not in GROUPS]
  if unknown:
    raise ValueError(f"unknown activation-quantizer groups {unknown}; known: {list(GROUPS)}")
  return groups


class QuantSwitch(nnx.Variable):
  """Whether a `SwitchQuantizer` quantizes (a traced bool scalar)."""


class SwitchQuantizer(w8a8.ActQuantizer):
  """An ActQuantizer that in "quantize" mode returns x_hat where its `on` flag is set, else x."""

  def __init__(self, q: w8a8.ActQuantizer):
    super().__init__(q.bits, momentum=q.momentum, percentile=q.percentile)
    self.mode = q.mode
    self.x_min[...], self.x_max[...] = q.x_min[...], q.x_max[...]
    self.calibrated[...] = q.calibrated[...]
    self.on = QuantSwitch(jnp.ones((), bool))

  def __call__(self, x, where=None):
    y = super().__call__(x, where)
    return jnp.where(self.on[...], y, x) if self.mode == "quantize" else y


def make_switchable(qmodel):
  """Replaces every ActQuantizer of `qmodel` in place by a `SwitchQuantizer` (same state)."""
  for path, q in w8a8.quantizers(qmodel):
    if isinstance(q, SwitchQuantizer):
      continue
    parent = qmodel
    for key in path[:-1]:
      parent = parent[key] if isinstance(key, int) else getattr(parent, key)
    w8a8._set_child(parent, path[-1], SwitchQuantizer(q))
  return qmodel


def set_groups(qmodel, groups: Iterable[str] | None):
  """Quantizers of `groups` (None = all) on, the others off; call after calibration.

  A `SwitchQuantizer` stays in "quantize" mode with its flag set; a plain ActQuantizer gets mode
  "quantize" or "off". Returns {group: number of quantizers now on}.
  """
  groups = check_groups(groups)
  on = {}
  for path, q in w8a8.quantizers(qmodel):
    g = group_of(".".join(map(str, path)))
    active = groups is None or g in groups
    if isinstance(q, SwitchQuantizer):
      q.mode = "quantize"
      q.on[...] = jnp.asarray(active)
    else:
      q.mode = "quantize" if active else "off"
    on[g] = on.get(g, 0) + int(active)
  return on
