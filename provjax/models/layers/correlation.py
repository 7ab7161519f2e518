"""Local correlation (cost volume) between two feature maps.

The comparator's warping module regresses displacements from how well each
reference location matches its neighbourhood in the query (the "9x9
correlation layer, 81 channels" of the ICN Dewarper, specs/simprov.md 2.2,
and the local cost volume of flow networks such as PWC-Net/RAFT).
"""
from __future__ import annotations

import jax.numpy as jnp


def l2_normalize(features, eps: float = 1e-6):
  """Unit-normalise NHWC features along channels so correlations are cosines."""
  norm = jnp.sqrt(jnp.sum(jnp.square(features), axis=-1, keepdims=True))
  return features / jnp.maximum(norm, eps)


def local_correlation(feat_a, feat_b, radius: int):
  """Correlation of every `feat_a` location with a window of `feat_b`.

  Built from (2r+1)^2 static shifted slices of the zero-padded `feat_b`
  rather than a gather: XLA fuses the slices and products, and the cost is
  linear in the window size.

  Args:
    feat_a: [B, h, w, C] features (typically L2-normalised).
    feat_b: [B, h, w, C] features on the same grid.
    radius: window half-size r; displacements -r..r in each axis.

  Returns:
    [B, h, w, (2r+1)^2]; channel `(dy + r) * (2r + 1) + (dx + r)` holds
    sum_c feat_a[y, x, c] * feat_b[y + dy, x + dx, c] (0 outside `feat_b`),
    a cosine in [-1, 1] when both inputs are L2-normalised.
  """
  _, h, w, _ = feat_a.shape
  padded = jnp.pad(feat_b, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
  size = 2 * radius + 1
  planes = [jnp.sum(feat_a * padded[:, dy:dy + h, dx:dx + w], axis=-1)
            for dy in range(size) for dx in range(size)]
  return jnp.stack(planes, axis=-1)
