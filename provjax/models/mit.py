"""SegFormer's Mix Transformer (MiT) encoder blocks, NHWC throughout.

specs/trufor.md, section 3: an overlapping patch embedding (strided conv +
LayerNorm) starts each stage; each block is pre-norm efficient self-attention
(keys and values spatially reduced by a strided conv when sr > 1) followed by
a Mix-FFN (Linear -> 3x3 depthwise conv -> exact GELU -> Linear); a LayerNorm
ends the stage. Feature maps stay [B, H, W, C]; attention flattens them to
tokens internally.

LayerNorm eps: 1e-6 in the blocks and at the end of a stage (the MiT
norm_layer), PyTorch's default 1e-5 in the patch embedding and after the
spatial reduction.

Initialisation follows SegFormer: Linear trunc_normal(0.02) with zero bias,
convs N(0, sqrt(2 / fan_out)) with fan_out counted per group, LayerNorm 1/0.
"""

from __future__ import annotations

import math

from flax import nnx
import jax

from provjax.models.layers.conv import conv

MIT_LN_EPS = 1e-6
TORCH_LN_EPS = 1e-5


def linear(in_dim: int, out_dim: int, *, rngs: nnx.Rngs, use_bias: bool = True, kernel_init=None):
  """Linear layer, trunc_normal(0.02) by default, with logical sharding annotations."""
  kernel_init = kernel_init or nnx.initializers.truncated_normal(stddev=0.02)
  return nnx.Linear(
      in_dim,
      out_dim,
      use_bias=use_bias,
      kernel_init=nnx.with_partitioning(kernel_init, ("embed_in", "embed_out")),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("embed_out",)),
      rngs=rngs,
  )


def layer_norm(dim: int, *, eps: float, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(
      dim,
      epsilon=eps,
      scale_init=nnx.with_partitioning(nnx.initializers.ones, ("embed_out",)),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("embed_out",)),
      rngs=rngs,
  )


def depthwise_conv(ch: int, kernel: int = 3, *, rngs: nnx.Rngs) -> nnx.Conv:
  """`kernel x kernel` depthwise conv with bias; PyTorch's per-group fan_out = kernel^2."""
  pad = (kernel - 1) // 2
  return nnx.Conv(
      ch,
      ch,
      (kernel, kernel),
      padding=((pad, pad), (pad, pad)),
      feature_group_count=ch,
      kernel_init=nnx.with_partitioning(
          nnx.initializers.normal(stddev=math.sqrt(2.0 / kernel**2)), (None, None, None, "conv_out")
      ),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("conv_out",)),
      rngs=rngs,
  )


class OverlapPatchEmbed(nnx.Module):
  """Strided conv (k7 s4 p3 at stage 1, k3 s2 p1 later) + LayerNorm: size ceil(H / stride)."""

  def __init__(self, in_ch: int, dim: int, patch: int, stride: int, *, rngs: nnx.Rngs):
    self.proj = conv(in_ch, dim, patch, strides=stride, use_bias=True, rngs=rngs)
    self.norm = layer_norm(dim, eps=TORCH_LN_EPS, rngs=rngs)

  def __call__(self, x):
    return self.norm(self.proj(x))


class EfficientSelfAttention(nnx.Module):
  """Multi-head attention whose keys/values come from an sr x sr strided reduction."""

  def __init__(self, dim: int, heads: int, sr: int, *, rngs: nnx.Rngs):
    if dim % heads:
      raise ValueError(f"dim {dim} is not divisible by {heads} heads")
    self.heads = heads
    self.q = linear(dim, dim, rngs=rngs)
    self.kv = linear(dim, 2 * dim, rngs=rngs)
    self.proj = linear(dim, dim, rngs=rngs)
    self.sr_ratio = sr
    if sr > 1:
      self.sr = nnx.Conv(
          dim,
          dim,
          (sr, sr),
          strides=(sr, sr),
          padding="VALID",
          kernel_init=nnx.with_partitioning(
              nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
              (None, None, "conv_in", "conv_out"),
          ),
          bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("conv_out",)),
          rngs=rngs,
      )
      self.norm = layer_norm(dim, eps=TORCH_LN_EPS, rngs=rngs)

  def __call__(self, x):
    b, h, w, c = x.shape
    dh = c // self.heads
    q = self.q(x).reshape(b, h * w, self.heads, dh)
    kv_in = self.norm(self.sr(x)) if self.sr_ratio > 1 else x
    kv = self.kv(kv_in).reshape(b, -1, 2, self.heads, dh)
    out = jax.nn.dot_product_attention(q, kv[:, :, 0], kv[:, :, 1], scale=dh**-0.5)
    return self.proj(out.reshape(b, h, w, c))


class MixFFN(nnx.Module):
  """Linear(C, rC) -> 3x3 depthwise conv -> GELU (exact) -> Linear(rC, C)."""

  def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
    self.fc1 = linear(dim, hidden, rngs=rngs)
    self.dwconv = depthwise_conv(hidden, rngs=rngs)
    self.fc2 = linear(hidden, dim, rngs=rngs)

  def __call__(self, x):
    return self.fc2(nnx.gelu(self.dwconv(self.fc1(x)), approximate=False))


class MiTBlock(nnx.Module):
  """x += DropPath(Attn(LN x)); x += DropPath(MixFFN(LN x))."""

  def __init__(
      self, dim: int, heads: int, sr: int, mlp_ratio: int, drop_path: float, *, rngs: nnx.Rngs
  ):
    self.norm1 = layer_norm(dim, eps=MIT_LN_EPS, rngs=rngs)
    self.attn = EfficientSelfAttention(dim, heads, sr, rngs=rngs)
    self.norm2 = layer_norm(dim, eps=MIT_LN_EPS, rngs=rngs)
    self.mlp = MixFFN(dim, dim * mlp_ratio, rngs=rngs)
    # Stochastic depth: one keep/drop decision per sample, survivors scaled by 1 / keep.
    self.drop_path = nnx.Dropout(drop_path, broadcast_dims=(1, 2, 3))

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    drop = lambda y: self.drop_path(y, deterministic=not train, rngs=rngs)
    x = x + drop(self.attn(self.norm1(x)))
    return x + drop(self.mlp(self.norm2(x)))


class MiTStage(nnx.Module):
  """OverlapPatchEmbed -> blocks -> LayerNorm: [B, H, W, C_in] -> [B, ceil(H/s), ceil(W/s), C]."""

  def __init__(
      self,
      in_ch: int,
      dim: int,
      *,
      patch: int,
      stride: int,
      heads: int,
      sr: int,
      mlp_ratio: int,
      drop_paths,
      rngs: nnx.Rngs,
  ):
    self.patch_embed = OverlapPatchEmbed(in_ch, dim, patch, stride, rngs=rngs)
    self.blocks = nnx.List(
        [MiTBlock(dim, heads, sr, mlp_ratio, dp, rngs=rngs) for dp in drop_paths]
    )
    self.norm = layer_norm(dim, eps=MIT_LN_EPS, rngs=rngs)

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    x = self.patch_embed(x)
    for block in self.blocks:
      x = block(x, train=train, rngs=rngs)
    return self.norm(x)


def stage_geometry(index: int) -> dict:
  """Patch-embedding kernel and stride of stage `index` (0-based)."""
  return dict(patch=7, stride=4) if index == 0 else dict(patch=3, stride=2)
