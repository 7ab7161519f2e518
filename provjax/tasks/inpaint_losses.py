"""SafePaint's losses (specs/safepaint.md section 2) as pure functions on NHWC arrays.

Each mirrors the PyTorch criterion the official code uses (src/loss.py,
models.py): `torch.nn.L1Loss` means, `BCELoss` with its log clamp,
`TripletMarginLoss(p=2)` with `pairwise_distance`'s eps added to the
difference, and EdgeConnect's Gram matrix normalised by C * H * W. The
weights (0.1, 250, 0.01, ...) are applied by the task, except the domain
loss's, which is part of its definition.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

PERCEPTUAL_TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_TAPS = ("relu2_2", "relu3_4", "relu4_4", "relu5_2")
LOG_FLOOR = -100.0  # torch's BCELoss clamps each log at -100
PAIRWISE_EPS = 1e-6  # torch.nn.functional.pairwise_distance's eps
TRIPLET_MARGIN = 0.1
DOMAIN_WEIGHT = 0.01  # lambda_tri; lambda_ff2 = lambda_f2b = 1


def l1(a: jax.Array, b: jax.Array) -> jax.Array:
  """mean |a - b| (torch.nn.L1Loss)."""
  return jnp.mean(jnp.abs(a - b))


def hole_l1(output: jax.Array, target: jax.Array, masks: jax.Array) -> jax.Array:
  """L1 over the whole image divided by the hole fraction mean(m): the official L1 term."""
  return l1(output, target) / jnp.mean(masks)


def perceptual(feats_o: Mapping[str, jax.Array], feats_t: Mapping[str, jax.Array]) -> jax.Array:
  """Sum over relu1_1 ... relu5_1 of mean |phi(o) - phi(t)| (unit weights, as the official)."""
  return sum(l1(feats_o[k], feats_t[k]) for k in PERCEPTUAL_TAPS)


def gram(f: jax.Array) -> jax.Array:
  """[B, H, W, C] features -> [B, C, C] Gram matrices F^T F / (C * H * W)."""
  b, h, w, c = f.shape
  flat = f.reshape(b, h * w, c)
  return jnp.einsum("bnc,bnd->bcd", flat, flat, precision=jax.lax.Precision.HIGHEST) / (c * h * w)


def style(feats_o: Mapping[str, jax.Array], feats_t: Mapping[str, jax.Array]) -> jax.Array:
  """Sum over relu2_2, relu3_4, relu4_4, relu5_2 of mean |G(phi(o)) - G(phi(t))|."""
  return sum(l1(gram(feats_o[k]), gram(feats_t[k])) for k in STYLE_TAPS)


def clamped_log(x: jax.Array) -> jax.Array:
  """max(log x, -100), with a finite gradient at x = 0 (where a plain max would give NaN)."""
  positive = x > 0
  log = jnp.log(jnp.where(positive, x, 1.0))
  return jnp.where(positive, jnp.maximum(log, LOG_FLOOR), LOG_FLOOR)


def bce(p: jax.Array, target: float | jax.Array) -> jax.Array:
  """torch.nn.BCELoss (mean) on probabilities p: -mean(t log p + (1 - t) log(1 - p)), logs >= -100."""
  return -jnp.mean(target * clamped_log(p) + (1.0 - target) * clamped_log(1.0 - p))


def pairwise_distance(x: jax.Array, y: jax.Array, eps: float = PAIRWISE_EPS) -> jax.Array:
  """||x - y + eps||_2 over the last axis (torch.nn.functional.pairwise_distance, p = 2)."""
  return jnp.linalg.norm(x - y + eps, axis=-1)


def triplet(
    anchor: jax.Array, positive: jax.Array, negative: jax.Array, margin: float = TRIPLET_MARGIN
) -> jax.Array:
  """torch.nn.TripletMarginLoss(p=2): mean(max(d(a, p) - d(a, n) + margin, 0))."""
  gap = pairwise_distance(anchor, positive) - pairwise_distance(anchor, negative)
  return jnp.mean(jnp.maximum(gap + margin, 0.0))


def domain_loss(codes: Mapping[str, jax.Array], *, per_element: bool = True) -> jax.Array:
  """0.01 * [Trip(z_gt, z_r, z_gt) + Trip(z_r, z_b, z_r)] on the [B, D] codes `z_b`, `z_gt`, `z_r`.

  The negative is the anchor, so each term is d(a, p) - ||eps|| + margin: a
  pull of z_r towards z_gt and of z_b towards z_r. The official codes are
  [B, 16, 1, 1] and pairwise_distance takes the norm over the last axis,
  which there has size 1: the distance is per element, |a - p + eps|, and the
  triplet mean runs over all B * 16 of them. `per_element=True` (the
  default) reproduces that; False takes the L2 norm over the 16-d code that
  the loss's name suggests (the spec's reading).
  """
  z_b, z_gt, z_r = (codes[k] for k in ("z_b", "z_gt", "z_r"))
  if per_element:
    z_b, z_gt, z_r = (z[..., None] for z in (z_b, z_gt, z_r))
  return DOMAIN_WEIGHT * (triplet(z_gt, z_r, z_gt) + triplet(z_r, z_b, z_r))
