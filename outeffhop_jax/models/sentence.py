"""Sentence embeddings from an encoder, as sentence-transformers' Transformer -> Pooling -> Normalize.

    e_BD = normalize( sum_t m_BT h_BTD / max(sum_t m_BT, 1e-9) )      (mean over real tokens)
"""
from __future__ import annotations

import jax.numpy as jnp


def mean_pool(h_BTD, mask_BT):
  """Mean of h over the tokens with mask 1 -> [B, D] float32 (a fully padded row gives 0)."""
  m_BT1 = jnp.asarray(mask_BT, jnp.float32)[..., None]
  if h_BTD.shape[:2] != m_BT1.shape[:2]:
    raise ValueError(f"mean_pool: mask_BT {tuple(mask_BT.shape)} must match h_BTD's [B, T] "
                     f"{tuple(h_BTD.shape[:2])}")
  total = jnp.sum(h_BTD.astype(jnp.float32) * m_BT1, axis=1)
  return total / jnp.maximum(jnp.sum(m_BT1, axis=1), 1e-9)


def l2_normalize(x_BD, eps: float = 1e-12):
  return x_BD / jnp.maximum(jnp.linalg.norm(x_BD, axis=-1, keepdims=True), eps)


def sentence_embeddings(encoder, input_ids_BT, attention_mask_BT, *, normalize: bool = True):
  """Mean-pooled (and L2-normalised) sentence embeddings [B, D] float32 of a BERT-style encoder."""
  h_BTD = encoder(input_ids_BT, attention_mask=attention_mask_BT)
  e_BD = mean_pool(h_BTD, attention_mask_BT)
  return l2_normalize(e_BD) if normalize else e_BD
