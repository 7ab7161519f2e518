"""Contrastive losses shared by the retrieval tasks."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def l2_normalize(x, eps: float = 1e-8):
  return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


def multi_positive_nt_xent(z, views_per_item: int, temperature: float = 0.8):
  """Multi-positive NT-Xent of SImProv/DIC (SupCon eq. 4 style).

  `z` is [N * V, D], rows grouped by item (V consecutive views each). For an
  anchor i with positives P(i) (the other views of its item):
      L_i = -log( exp(mean_{j in P(i)} cos_ij / t) / sum_{k != i} exp(cos_ik / t) )
  i.e. the positives' logits are averaged *before* the exp (specs/simprov.md).
  """
  n = z.shape[0]
  z = l2_normalize(z.astype(jnp.float32))
  logits = (z @ z.T) / temperature
  item = jnp.arange(n) // views_per_item
  self_mask = jnp.eye(n, dtype=bool)
  pos_mask = (item[:, None] == item[None, :]) & ~self_mask
  pos_logit = jnp.sum(jnp.where(pos_mask, logits, 0.0), axis=1) / (views_per_item - 1)
  denom = jax.nn.logsumexp(jnp.where(self_mask, -jnp.inf, logits), axis=1)
  return jnp.mean(denom - pos_logit)
