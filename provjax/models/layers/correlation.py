"""Local correlation (cost volume) between two feature maps.

The comparator's warping module regresses displacements from how well each
reference location matches its neighbourhood in the query (the "9x9
correlation layer, 81 channels" of the ICN Dewarper, specs/simprov.md 2.2,
and the local cost volume of flow networks such as PWC-Net/RAFT).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def l2_normalize(features, eps: float = 1e-6):
  """Unit-normalise NHWC features along channels so correlations are cosines.

  The clamp sits inside the square root: post-ReLU features are often all
  zero at a location, and sqrt'(0) = inf would turn the gradient into NaN.
  """
  sq = jnp.sum(jnp.square(features), axis=-1, keepdims=True)
  return features * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def local_correlation(feat_a, feat_b, radius: int):
  """Correlation of every `feat_a` location with a window of `feat_b`.

  Rows of displacements go through `lax.map` (one compiled body) and the
  2r+1 column displacements of a row are static slices of one band of the
  zero-padded `feat_b`. Fully unrolled 81 slices compile about 2x slower and
  run slower on CPU; an im2col of the window (conv_general_dilated_patches)
  materialises C * (2r+1)^2 values per location, which does not fit in
  memory at training batch sizes.

  Args:
    feat_a: [B, h, w, C] features (typically L2-normalised).
    feat_b: [B, h, w, C] features on the same grid.
    radius: window half-size r; displacements -r..r in each axis.

  Returns:
    [B, h, w, (2r+1)^2]; channel `(dy + r) * (2r + 1) + (dx + r)` holds
    sum_c feat_a[y, x, c] * feat_b[y + dy, x + dx, c] (0 outside `feat_b`),
    a cosine in [-1, 1] when both inputs are L2-normalised.
  """
  b, h, w, _ = feat_a.shape
  size = 2 * radius + 1
  padded = jnp.pad(feat_b, ((0, 0), (radius, radius), (radius, radius), (0, 0)))

  def row(dy):
    band = jax.lax.dynamic_slice_in_dim(padded, dy, h, axis=1)
    return jnp.stack(
        [jnp.sum(feat_a * band[:, :, dx : dx + w], axis=-1) for dx in range(size)], axis=-1
    )

  rows = jax.lax.map(row, jnp.arange(size))  # [2r+1 (dy), B, h, w, 2r+1 (dx)]
  return jnp.moveaxis(rows, 0, 3).reshape(b, h, w, size * size)
