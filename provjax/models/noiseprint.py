"""Noiseprint++: the camera/editing-history fingerprint extractor of TruFor.

A 17-layer DnCNN without the residual connection (specs/trufor.md, section 2):
conv3x3+bias -> ReLU, then 15 x (conv3x3 -> BN -> ReLU), then conv3x3+bias to
one channel. Inputs are RGB uint8 / 256 (NHWC float32, no other
normalisation), the scaling the official extractor was trained with.

Layout for weight converters: `convs[i]` is the i-th conv and `norms[j]` the
BN after conv j + 1 (layers 2 .. depth - 1).
"""

from __future__ import annotations

import math

from flax import nnx

from provjax.models.layers.conv import HEAD, conv

VARIANTS = {
    # Private micro variant for tests and CPU checkpoints.
    "tiny": dict(width=16, depth=17),
    # The spec's extractor (about 557k parameters).
    "full": dict(width=64, depth=17),
}


def _bn_scale_init(width: int):
  """DnCNN's BN init: gamma ~ N(0, sqrt(2 / (9 * C)))."""
  return nnx.initializers.normal(stddev=math.sqrt(2.0 / (9.0 * width)))


class NoiseprintPP(nnx.Module):
  """x [B, H, W, 3] (uint8 / 256) -> noiseprint [B, H, W, 1]; receptive field 2 * depth + 1."""

  def __init__(self, width: int, depth: int, *, rngs: nnx.Rngs):
    if depth < 3:
      raise ValueError(f"noiseprint depth must be >= 3, got {depth}")
    chans = [(3, width)] + [(width, width)] * (depth - 2) + [(width, 1)]
    last = depth - 1
    # Conv init N(0, sqrt(2 / (9 * C_out))) is the helper's He fan_out normal.
    self.convs = nnx.List(
        [
            conv(
                i,
                o,
                3,
                use_bias=n in (0, last),
                out_axis=HEAD if n == last else "conv_out",
                rngs=rngs,
            )
            for n, (i, o) in enumerate(chans)
        ]
    )
    self.norms = nnx.List(
        [
            nnx.BatchNorm(
                width,
                momentum=0.9,
                epsilon=1e-5,
                scale_init=nnx.with_partitioning(_bn_scale_init(width), ("conv_out",)),
                bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("conv_out",)),
                rngs=rngs,
            )
            for _ in range(depth - 2)
        ]
    )

  def __call__(self, x, *, train: bool = False):
    x = nnx.relu(self.convs[0](x))
    for c, bn in zip(self.convs[1:-1], self.norms):
      x = nnx.relu(bn(c(x), use_running_average=not train))
    return self.convs[-1](x)


def create(variant: str = "tiny", *, rngs: nnx.Rngs, **overrides) -> NoiseprintPP:
  """Build a variant from VARIANTS; keyword overrides replace table entries."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown noiseprint variant {variant!r}; choose from {sorted(VARIANTS)}")
  return NoiseprintPP(**{**VARIANTS[variant], **overrides}, rngs=rngs)
