"""A plain Vision Transformer (Dosovitskiy et al. 2021) in the DINO / timm layout.

Patch-embedding conv (kernel = stride = patch) -> [CLS; patch tokens] + learned
position embedding -> pre-norm blocks (x += Attn(LN x); x += MLP(LN x), exact
GELU, qkv with bias) -> optional final LayerNorm. Images are NHWC float32,
already normalised by the caller; tokens are [B, 1 + h * w, C] with the patch
grid flattened row-major, as PyTorch's `flatten(2)` does.

The pieces are public because the CopyNCE matcher (`copynce_matcher.py`)
runs the blocks in two groups, shared per image and then over a joint
sequence. Another input size reuses the position embedding through DINO's
bicubic interpolation (`interpolate_pos_embed`).

Initialisation follows DINO: Linear trunc_normal(0.02) with zero bias,
LayerNorm 1 / 0, CLS token and position embedding trunc_normal(0.02).
Parameters carry the zoo's logical axis names (`embed_in`, `embed_out`).
"""

from __future__ import annotations

import math

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

DINO_LN_EPS = 1e-6

VARIANTS = {
    # CPU variant: 8 x 8 grid of 8-px patches on 64-px images. Its size is set by a CPU
    # training budget: at dim 192 x 6 blocks a 64-pair CopyNCE step took 3.7 s on 2 cores.
    "tiny": dict(patch_size=8, image_size=64, dim=128, depth=4, heads=4, mlp_dim=512),
    # ViT-S/16 at 224 (DINO's deit_small).
    "s16": dict(patch_size=16, image_size=224, dim=384, depth=12, heads=6, mlp_dim=1536),
}

_TRUNC_02 = nnx.initializers.truncated_normal(stddev=0.02)


def linear(
    in_dim: int, out_dim: int, *, rngs: nnx.Rngs, use_bias: bool = True, out_axis: str = "embed_out"
) -> nnx.Linear:
  """Linear layer with trunc_normal(0.02) kernel, zero bias and logical sharding annotations."""
  return nnx.Linear(
      in_dim,
      out_dim,
      use_bias=use_bias,
      kernel_init=nnx.with_partitioning(_TRUNC_02, ("embed_in", out_axis)),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros, (out_axis,)),
      rngs=rngs,
  )


def layer_norm(dim: int, *, eps: float, rngs: nnx.Rngs) -> nnx.LayerNorm:
  """LayerNorm whose variance is E[(x - mean)^2] as PyTorch computes it, not E[x^2] - mean^2."""
  return nnx.LayerNorm(
      dim,
      epsilon=eps,
      use_fast_variance=False,
      scale_init=nnx.with_partitioning(nnx.initializers.ones, ("embed_out",)),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("embed_out",)),
      rngs=rngs,
  )


def token_param(shape: tuple[int, ...], *, rngs: nnx.Rngs) -> nnx.Param:
  """A learned token table ([1, n, C]: CLS token, position embedding), trunc_normal(0.02)."""
  init = nnx.with_partitioning(_TRUNC_02, (None, None, "embed_out"))
  return nnx.Param(init(rngs.params(), shape))


class Attention(nnx.Module):
  """Multi-head self-attention with one fused qkv projection ([q | k | v], heads inside each)."""

  def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
    if dim % heads:
      raise ValueError(f"dim {dim} is not divisible by {heads} heads")
    self.heads = heads
    self.qkv = linear(dim, 3 * dim, rngs=rngs)
    self.proj = linear(dim, dim, rngs=rngs)

  def __call__(self, x):
    b, n, c = x.shape
    dh = c // self.heads
    qkv = self.qkv(x).reshape(b, n, 3, self.heads, dh)
    out = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], scale=dh**-0.5)
    return self.proj(out.reshape(b, n, c))


class Mlp(nnx.Module):
  """Linear -> GELU (exact, erf) -> Linear."""

  def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
    self.fc1 = linear(dim, hidden, rngs=rngs)
    self.fc2 = linear(hidden, dim, rngs=rngs)

  def __call__(self, x):
    return self.fc2(nnx.gelu(self.fc1(x), approximate=False))


class Block(nnx.Module):
  """Pre-norm transformer block: x += Attn(LN x); x += MLP(LN x)."""

  def __init__(self, dim: int, heads: int, mlp_dim: int, *, ln_eps: float, rngs: nnx.Rngs):
    self.norm1 = layer_norm(dim, eps=ln_eps, rngs=rngs)
    self.attn = Attention(dim, heads, rngs=rngs)
    self.norm2 = layer_norm(dim, eps=ln_eps, rngs=rngs)
    self.mlp = Mlp(dim, mlp_dim, rngs=rngs)

  def __call__(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


def make_blocks(
    depth: int, dim: int, heads: int, mlp_dim: int, *, ln_eps: float, rngs: nnx.Rngs
) -> nnx.List:
  return nnx.List([Block(dim, heads, mlp_dim, ln_eps=ln_eps, rngs=rngs) for _ in range(depth)])


def bicubic_matrix(n_in: int, n_out: int, scale: float) -> np.ndarray:
  """[n_out, n_in] weights of PyTorch's 1-D bicubic resampling (align_corners=False).

  PyTorch maps output i to source (i + 0.5) / scale - 0.5 with the scale it
  was given, uses the cubic convolution kernel with A = -0.75 and clamps the
  four taps to the border.
  """
  a = -0.75
  src = (np.arange(n_out) + 0.5) / scale - 0.5
  left = np.floor(src)
  t = src - left
  # Kernel weights of the taps at offsets -1, 0, 1, 2 from `left`.
  d = np.stack([1 + t, t, 1 - t, 2 - t], axis=1)
  near = ((a + 2) * d - (a + 3)) * d * d + 1
  far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
  w = np.where(d <= 1, near, far)
  taps = np.clip(left[:, None] + np.arange(-1, 3)[None, :], 0, n_in - 1).astype(int)
  out = np.zeros((n_out, n_in))
  np.add.at(out, (np.repeat(np.arange(n_out), 4), taps.ravel()), w.ravel())
  return out


def interpolate_pos_embed(pos_embed, grid: tuple[int, int]):
  """[1, 1 + N, C] (a square sqrt(N) grid) -> [1, 1 + h * w, C] for a patch grid (h, w).

  DINO's rule: bicubic with scale factors (h + 0.1) / sqrt(N), (w + 0.1) / sqrt(N)
  (the 0.1 keeps the floored output size at h, w); the CLS entry is kept.
  """
  n = pos_embed.shape[1] - 1
  side = math.isqrt(n)
  if side * side != n:
    raise ValueError(f"position embedding of {n} patches is not a square grid")
  h, w = grid
  rows = jnp.asarray(bicubic_matrix(side, h, (h + 0.1) / side), pos_embed.dtype)
  cols = jnp.asarray(bicubic_matrix(side, w, (w + 0.1) / side), pos_embed.dtype)
  table = pos_embed[0, 1:].reshape(side, side, -1)
  table = jnp.einsum("hi,ijc,wj->hwc", rows, table, cols, precision=jax.lax.Precision.HIGHEST)
  return jnp.concatenate([pos_embed[:, :1], table.reshape(1, h * w, -1)], axis=1)


class ViT(nnx.Module):
  """Image [B, H, W, 3] -> {tokens [B, 1 + L, C], cls [B, C], patches [B, L, C]}."""

  def __init__(
      self,
      patch_size: int,
      image_size: int,
      dim: int,
      depth: int,
      heads: int,
      mlp_dim: int,
      *,
      rngs: nnx.Rngs,
      final_norm: bool = True,
      ln_eps: float = DINO_LN_EPS,
  ):
    if image_size % patch_size:
      raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
    self.patch_size, self.image_size, self.dim = patch_size, image_size, dim
    self.patch_embed = nnx.Conv(
        3,
        dim,
        (patch_size, patch_size),
        strides=(patch_size, patch_size),
        padding="VALID",
        kernel_init=nnx.with_partitioning(
            nnx.initializers.lecun_normal(), (None, None, None, "embed_out")
        ),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("embed_out",)),
        rngs=rngs,
    )
    grid = image_size // patch_size
    self.cls_token = token_param((1, 1, dim), rngs=rngs)
    self.pos_embed = token_param((1, 1 + grid * grid, dim), rngs=rngs)
    self.blocks = make_blocks(depth, dim, heads, mlp_dim, ln_eps=ln_eps, rngs=rngs)
    self.norm = layer_norm(dim, eps=ln_eps, rngs=rngs) if final_norm else None

  def grid(self, image_shape) -> tuple[int, int]:
    """The patch grid (h, w) of an image of shape [..., H, W, 3] (partial patches dropped)."""
    return image_shape[-3] // self.patch_size, image_shape[-2] // self.patch_size

  def position_embedding(self, image_shape):
    """The table for an image of shape [..., H, W, 3].

    DINO's rule: the learned table as it is when the image is square and its
    grid has as many patches as the table; otherwise interpolated.
    """
    pos = self.pos_embed[...]
    (h, w), (height, width) = self.grid(image_shape), image_shape[-3:-1]
    if h * w == pos.shape[1] - 1 and height == width:
      return pos
    return interpolate_pos_embed(pos, (h, w))

  def embed(self, x):
    """[B, H, W, 3] -> [B, 1 + h * w, C]: CLS and patch tokens with positions added."""
    patches = self.patch_embed(x)
    b, h, w, c = patches.shape
    cls = jnp.broadcast_to(self.cls_token[...].astype(patches.dtype), (b, 1, c))
    tokens = jnp.concatenate([cls, patches.reshape(b, h * w, c)], axis=1)
    return tokens + self.position_embedding(x.shape)

  def __call__(self, x):
    x = self.embed(x)
    for block in self.blocks:
      x = block(x)
    if self.norm is not None:
      x = self.norm(x)
    return {"tokens": x, "cls": x[:, 0], "patches": x[:, 1:]}


def create(variant: str = "tiny", *, rngs: nnx.Rngs, **overrides) -> ViT:
  """Build a variant from VARIANTS; keyword overrides (final_norm, ln_eps, depth, ...) replace entries."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown vit variant {variant!r}; choose from {sorted(VARIANTS)}")
  return ViT(**{**VARIANTS[variant], **overrides}, rngs=rngs)
