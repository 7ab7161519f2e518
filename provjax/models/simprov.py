"""SImProv search encoder: ResNet -> global average pool -> Dense(256).

specs/simprov.md section 1: torchvision ResNet-50 whose `fc` is replaced by
Linear(2048 -> 256), bias zero, weights U(-0.1, 0.1); no L2 norm inside the
model (the loss uses cosine similarity; the index normalises).
Inputs are NHWC images in [0, 1]; the model applies ImageNet normalisation so
that preprocessing travels with the weights.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp

from provjax.models import resnet
from provjax.models.layers.conv import dense
from provjax.models.layers.preprocess import imagenet_normalize

VARIANTS = {
    "tiny": dict(backbone="tiny", dim=256, image_size=64),
    # ResNet-18 at 128 px: sized to train on a CPU in hours (no released weights yet).
    "small": dict(backbone="r18", dim=256, image_size=128),
    "r50": dict(backbone="r50", dim=256, image_size=224),
}


class SearchEncoder(nnx.Module):
  """Image -> 256-d descriptor (not normalised)."""

  def __init__(
      self, backbone: str, dim: int, image_size: int, *, rngs: nnx.Rngs, dtype=jnp.float32
  ):
    spec = resnet.SPECS[backbone]
    self.image_size = image_size
    self.dtype = dtype
    self.backbone = resnet.ResNet(spec, rngs=rngs, dtype=dtype)
    self.head = dense(spec.out_dim, dim, rngs=rngs, dtype=jnp.float32, kernel_init=_uniform(0.1))

  def __call__(self, images, *, train: bool = False):
    x = self.backbone(imagenet_normalize(images, self.dtype), train=train)
    return self.head(jnp.mean(x.astype(jnp.float32), axis=(1, 2)))


def _uniform(limit: float):
  """U(-limit, limit) initialiser (torch's `uniform_(-0.1, 0.1)`)."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -limit, limit)

  return init


def create(variant: str = "tiny", *, rngs: nnx.Rngs, **overrides) -> SearchEncoder:
  """Build a variant from VARIANTS; keyword overrides replace table entries."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown simprov variant {variant!r}; choose from {sorted(VARIANTS)}")
  return SearchEncoder(**{**VARIANTS[variant], **overrides}, rngs=rngs)
