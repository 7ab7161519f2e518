"""SSCD (Pizzi et al., CVPR 2022; specs/copy_detection.md, section 4): a copy-detection descriptor.

    ResNet trunk -> GeM pooling (p = 3) -> Dense(-> D, with bias) -> L2 normalise

As in facebookresearch/sscd-copy-detection `Model` (Classy Vision trunk): the
GeM power is fixed, and activations are clamped at 1e-6 before the power. The
trunk is `provjax.models.resnet`, whose zero-initialised last BN of every
block matches the spec's note on the Classy Vision ResNet-50. Inputs are NHWC float32
ImageNet-normalised (`provjax.models.copynce.preprocess` does the same
/ 255 and mean / std).
"""

from __future__ import annotations

from flax import nnx
import jax.numpy as jnp

from provjax.models import resnet
from provjax.models.copynce import l2_normalize
from provjax.models.layers.conv import dense

GEM_P = 3.0
GEM_EPS = 1e-6

VARIANTS = {
    # ResNet-18 at a quarter width (as repmix's tiny), 256-d for the descriptor track.
    "tiny": dict(trunk="r18q", out_dim=256),
    # The paper's ResNet-50, 512-d.
    "r50": dict(trunk="r50", out_dim=512),
}
TRUNKS = {
    **resnet.SPECS,
    "r18q": resnet.ResNetSpec((2, 2, 2, 2), (16, 32, 64, 128), bottleneck=False, stem_width=16),
}


def gem(x, p: float = GEM_P, eps: float = GEM_EPS):
  """Generalised mean over H, W of [B, H, W, C]: mean(max(x, eps)^p)^(1/p)."""
  x = jnp.maximum(x.astype(jnp.float32), eps)
  return jnp.mean(x**p, axis=(1, 2)) ** (1.0 / p)


class SSCD(nnx.Module):
  """Image [B, H, W, 3] -> {feat [B, D] unit vectors}."""

  def __init__(self, trunk: str, out_dim: int, *, rngs: nnx.Rngs):
    spec = TRUNKS[trunk]
    self.trunk = resnet.ResNet(spec, rngs=rngs)
    self.embed = dense(spec.out_dim, out_dim, rngs=rngs)

  def __call__(self, x, *, train: bool = False):
    return {"feat": l2_normalize(self.embed(gem(self.trunk(x, train=train))))}


def create(variant: str = "tiny", *, rngs: nnx.Rngs, **overrides) -> SSCD:
  """Build a variant from VARIANTS; keyword overrides (out_dim) replace entries."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown sscd variant {variant!r}; choose from {sorted(VARIANTS)}")
  return SSCD(**{**VARIANTS[variant], **overrides}, rngs=rngs)
