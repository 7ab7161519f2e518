"""Partial convolution (Liu et al., ECCV 2018) with a single-channel mask and mask update.

    y, new_mask = PartialConv(3, 64, 3, strides=2, rngs=rngs)(x, mask)   # mask [B, H, W, 1]

As the `PartialConv2d` of BargainNet and SafePaint (specs/safepaint.md,
section 6): the conv sees only x * mask; each output is rescaled by
k * k / (valid inputs under its window + 1e-8), the bias is re-added after that
scaling, and an output whose window holds no valid input is zero. The new mask
is the window count clamped to [0, 1]. Without a bias the rescaled output is
returned as it is (the official skips the final multiply by the new mask there;
the ratio is already zero where the window is empty).
"""

from __future__ import annotations

import math

from flax import nnx
import jax
from jax import lax
import jax.numpy as jnp

RATIO_EPS = 1e-8


def window_count(mask, kernel_size, strides, padding) -> jax.Array:
  """How many valid pixels of the single-channel `mask` [B, H, W, 1] fall under every window
  (the official conv with `weight_maskUpdater`, all ones)."""
  ones = jnp.ones((*kernel_size, 1, 1), mask.dtype)
  return lax.conv_general_dilated(
      mask, ones, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


class PartialConv(nnx.Conv):
  """A square conv with zero padding `padding` whose inputs are masked: (x, mask) -> (y, mask')."""

  def __init__(
      self,
      in_ch: int,
      out_ch: int,
      kernel: int,
      *,
      rngs: nnx.Rngs,
      strides: int = 1,
      padding: int = 0,
      use_bias: bool = True,
      kernel_init=nnx.initializers.normal(0.02),
      out_axis: str = "conv_out",
      dtype=jnp.float32,
  ):
    super().__init__(
        in_ch,
        out_ch,
        (kernel, kernel),
        strides=(strides, strides),
        padding=((padding, padding), (padding, padding)),
        use_bias=use_bias,
        dtype=dtype,
        kernel_init=nnx.with_partitioning(kernel_init, (None, None, "conv_in", out_axis)),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros, (out_axis,)),
        rngs=rngs,
    )

  def __call__(self, x, mask):
    mask = mask.astype(x.dtype)
    count = window_count(mask, self.kernel_size, self.strides, self.padding)
    new_mask = jnp.clip(count, 0.0, 1.0)
    # slide_winsize of a single-channel mask: the window's k * k pixels.
    ratio = math.prod(self.kernel_size) / (count + RATIO_EPS) * new_mask
    raw = super().__call__(x * mask)
    if self.bias is None:
      return raw * ratio, new_mask
    bias = self.bias[...]
    return ((raw - bias) * ratio + bias) * new_mask, new_mask
