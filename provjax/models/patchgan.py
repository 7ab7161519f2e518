"""SafePaint's discriminator (specs/safepaint.md section 1): a spectrally normalised PatchGAN.

    RGB [B, H, W, 3] -> 5 x (4x4 conv, padding 1, no bias, spectral norm)
                        strides 2, 2, 2, 1, 1; channels w, 2w, 4w, 8w, 1
                        LeakyReLU 0.2 after the first four; sigmoid (nsgan)
                     -> per-patch probabilities [B, h, w, 1]

As the official `Discriminator` (EdgeConnect's): a side of n pixels gives
floor(n / 8) - 2 patches (256 -> 30), see `patch_grid`. Kernels are drawn
from N(0, 0.02) (`BaseNetwork.init_weights`). Spectral norm keeps its
power-iteration vectors as non-trainable state and advances them by one
iteration per call only with `train=True` (provjax.models.layers.spectral_norm).
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp

from provjax.models.layers.conv import HEAD
from provjax.models.layers.spectral_norm import SpectralConv

KERNEL, PADDING = 4, 1
STRIDES = (2, 2, 2, 1, 1)
WIDTHS = (1, 2, 4, 8)  # multiples of the base width; the last conv has one channel
NEGATIVE_SLOPE = 0.2
INIT_STD = 0.02

VARIANTS = {
    # The paper's discriminator.
    "full": dict(width=64),
    # A quarter of the width, for CPU training and tests.
    "tiny": dict(width=16),
}


def patch_grid(size: int) -> int:
  """Output side for an input side `size`: each conv maps n -> floor((n + 2 - 4) / s) + 1."""
  for stride in STRIDES:
    size = (size + 2 * PADDING - KERNEL) // stride + 1
  return size


class PatchGAN(nnx.Module):
  """Image [B, H, W, in_ch] in [0, 1] -> patch probabilities [B, h, w, 1]."""

  def __init__(self, width: int, in_ch: int = 3, *, rngs: nnx.Rngs):
    channels = (in_ch, *(width * m for m in WIDTHS), 1)
    init = nnx.initializers.normal(INIT_STD)
    self.convs = nnx.List(
        [
            SpectralConv(
                c_in,
                c_out,
                KERNEL,
                strides=stride,
                padding=PADDING,
                kernel_init=init,
                out_axis=HEAD if c_out == 1 else "conv_out",
                rngs=rngs,
            )
            for c_in, c_out, stride in zip(channels[:-1], channels[1:], STRIDES)
        ]
    )

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    for conv in self.convs[:-1]:
      x = jax.nn.leaky_relu(conv(x, train=train), NEGATIVE_SLOPE)
    return jax.nn.sigmoid(self.convs[-1](x, train=train).astype(jnp.float32))


def create(variant: str = "tiny", *, rngs: nnx.Rngs, **overrides) -> PatchGAN:
  """Build a variant from VARIANTS; keyword overrides (width, in_ch) replace entries."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown patchgan variant {variant!r}; choose from {sorted(VARIANTS)}")
  return PatchGAN(**{**VARIANTS[variant], **overrides}, rngs=rngs)
