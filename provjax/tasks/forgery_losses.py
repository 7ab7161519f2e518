"""TruFor's training losses as pure functions (specs/trufor.md sections 2 and 6).

Pixel labels everywhere are int [B, H, W]: 1 forged, 0 authentic, -1 ignored
(padding added to reach the crop size).

- phase 1, Noiseprint++: `multi_positive_infonce` over `neg_sq_distance_logits`;
- phase 2, localization: 0.3 `weighted_cross_entropy` + 0.7 `dice_loss`;
- phase 3, confidence and detection: 1.0 `confidence_loss` (MSE to the
  true-class probability, `tcp_target`) + 0.5 `weighted_bce` on
  `detection_labels`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

IGNORE = -1


# ---------------------------------------------------------------- phase 1 ---


def neg_sq_distance_logits(z, temperature: float):
  """[N, N] logits -mean_d (z_i - z_j)^2 / temperature of embeddings z [N, D].

  The mean over dimensions (not the sum) keeps the temperature meaningful
  whatever the patch size.
  """
  z = z.astype(jnp.float32)
  sq = jnp.sum(z * z, axis=-1)
  dist = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
  return -jnp.maximum(dist, 0.0) / (z.shape[-1] * temperature)


def multi_positive_infonce(logits, classes):
  """Noiseprint-style InfoNCE with several positives per anchor.

  For anchor i with positives P(i) (same class, j != i):
      L_i = -log( sum_{j in P(i)} exp(s_ij) / sum_{k != i} exp(s_ik) ),
  the probability mass the softmax over all other samples puts on the
  anchor's positives. Anchors without a positive are left out of the mean.

  Args:
    logits: [N, N] similarities s_ij.
    classes: [N] int, samples with equal values are positives.
  """
  n = logits.shape[0]
  self_mask = jnp.eye(n, dtype=bool)
  pos = (classes[:, None] == classes[None, :]) & ~self_mask
  # A finite "minus infinity": a row with no positive then has a finite
  # logsumexp, so its (discarded) gradient is not NaN.
  off = jnp.float32(-1e30)
  denom = jax.nn.logsumexp(jnp.where(self_mask, off, logits), axis=1)
  num = jax.nn.logsumexp(jnp.where(pos, logits, off), axis=1)
  has_pos = jnp.any(pos, axis=1)
  per_anchor = jnp.where(has_pos, denom - num, 0.0)
  return jnp.sum(per_anchor) / jnp.maximum(jnp.sum(has_pos), 1)


# ---------------------------------------------------------------- phase 2 ---


def weighted_cross_entropy(logits, labels, class_weights=(0.5, 2.5)):
  """PyTorch `CrossEntropyLoss(weight, ignore_index=-1)` with mean reduction.

  sum_i w[y_i] * nll_i / sum_i w[y_i] over pixels whose label is not -1.

  Args:
    logits: [B, H, W, 2] localization logits.
    labels: [B, H, W] int, -1 ignored.
    class_weights: (authentic, forged) weights; the spec's [0.5, 2.5].
  """
  valid = labels != IGNORE
  safe = jnp.where(valid, labels, 0).astype(jnp.int32)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
  w = jnp.asarray(class_weights, jnp.float32)[safe] * valid
  return jnp.sum(w * nll) / jnp.maximum(jnp.sum(w), 1e-12)


def dice_loss(logits, labels, eps: float = 1e-5):
  """1 - mean_b [2 sum p t / (sum p^2 + sum t^2 + eps)] over valid pixels (smooth 0).

  p is softmax(logits)[..., 1] and t the forged indicator. An authentic
  crop (t = 0) scores 0 whatever p, as in the reference DiceEntropyLoss.
  """
  valid = (labels != IGNORE).astype(jnp.float32)
  p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)[..., 1] * valid
  t = (labels == 1).astype(jnp.float32)
  axes = tuple(range(1, p.ndim))
  dice = 2.0 * jnp.sum(p * t, axes) / (jnp.sum(p * p, axes) + jnp.sum(t * t, axes) + eps)
  return 1.0 - jnp.mean(dice)


def localization_loss(
    logits, labels, *, ce_weight=0.3, dice_weight=0.7, class_weights=(0.5, 2.5)
) -> tuple[jax.Array, dict]:
  """Phase-2 loss: ce_weight * weighted CE + dice_weight * Dice; (loss, {ce, dice})."""
  ce = weighted_cross_entropy(logits, labels, class_weights)
  dice = dice_loss(logits, labels)
  return ce_weight * ce + dice_weight * dice, {"ce": ce, "dice": dice}


# ---------------------------------------------------------------- phase 3 ---


def max_pool(x, window: int):
  """Stride-1 max filter of [B, H, W] with an odd `window`; outside the image counts as -inf.

  As PyTorch's max_pool2d(k, stride 1, padding k // 2): the image border
  neither erodes nor dilates a mask.
  """
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window), (1, 1, 1), "SAME")


def tcp_target(loc_logits, labels, *, erode: int = 15, dilate: int = 11):
  """The confidence target (true-class probability) and where it is defined.

  Pixels inside the eroded forged mask (1 - maxpool(1 - gt, erode)) take p1,
  pixels outside the dilated one (maxpool(gt, dilate)) take p0; the band
  between them and ignored pixels are excluded. p = softmax(loc_logits),
  held constant (the target is not trained through).

  Returns:
    (target [B, H, W] float32, valid [B, H, W] bool).
  """
  p = jax.lax.stop_gradient(jax.nn.softmax(loc_logits.astype(jnp.float32), axis=-1))
  gt = (labels == 1).astype(jnp.float32)
  inside = (1.0 - max_pool(1.0 - gt, erode)) > 0.5
  outside = max_pool(gt, dilate) < 0.5
  target = jnp.where(inside, p[..., 1], p[..., 0])
  valid = (labels != IGNORE) & (inside | outside)
  return target, valid


def confidence_loss(conf_logits, loc_logits, labels, *, erode: int = 15, dilate: int = 11):
  """MSE(sigmoid(conf), TCP) averaged over the pixels where the target is defined.

  Args:
    conf_logits: [B, H, W, 1] or [B, H, W].
    loc_logits: [B, H, W, 2], from the frozen localization head.
    labels: [B, H, W] int, -1 ignored.
  """
  conf = conf_logits.reshape(labels.shape).astype(jnp.float32)
  target, valid = tcp_target(loc_logits, labels, erode=erode, dilate=dilate)
  err = jnp.square(jax.nn.sigmoid(conf) - target) * valid
  return jnp.sum(err) / jnp.maximum(jnp.sum(valid), 1)


def detection_labels(labels, min_pixels: int = 3):
  """[B] float32: 1 when the pixel labels hold more than `min_pixels` forged pixels."""
  count = jnp.sum(labels == 1, axis=tuple(range(1, labels.ndim)))
  return (count > min_pixels).astype(jnp.float32)


def detection_class_weights(fake_fraction: float) -> tuple[float, float]:
  """(fake weight, real weight) = (0.5 / fake_fraction, 0.5 / real_fraction).

  The spec's "fakes 0.5/0.7, reals 0.5/0.3" are these weights for a
  training stream of 70 % fakes (TruFor samples its lists evenly and 7 of
  its 10 lists are fake): weighting each image by 0.5 over its class's
  share makes fakes and reals weigh half each in expectation.
  """
  if not 0.0 < fake_fraction < 1.0:
    raise ValueError(f"fake_fraction must be in (0, 1), got {fake_fraction}")
  return 0.5 / fake_fraction, 0.5 / (1.0 - fake_fraction)


def weighted_bce(det_logits, targets, *, fake_weight: float, real_weight: float):
  """mean_i w_i * BCEWithLogits(x_i, y_i), w_i = fake_weight if y_i = 1 else real_weight.

  Mean over images (not divided by the weight sum), as PyTorch's
  `BCEWithLogitsLoss(weight=w)` with mean reduction.
  """
  x = det_logits.astype(jnp.float32)
  per = jnp.maximum(x, 0.0) - x * targets + jnp.log1p(jnp.exp(-jnp.abs(x)))
  w = jnp.where(targets > 0.5, fake_weight, real_weight)
  return jnp.mean(w * per)
