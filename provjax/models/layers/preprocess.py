"""Input normalisation shared by the ImageNet-style backbones."""

from __future__ import annotations

import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(images, dtype=jnp.float32):
  """Map images in [0, 1] (NHWC) to ImageNet-standardised values."""
  mean = jnp.asarray(IMAGENET_MEAN, dtype)
  std = jnp.asarray(IMAGENET_STD, dtype)
  return (images.astype(dtype) - mean) / std
