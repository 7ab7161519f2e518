"""CMX dual-branch encoder: two MiT branches joined by FRM and FFM at every stage.

specs/trufor.md, section 3. The RGB branch (`stages`) and the Noiseprint++
branch (`extra_stages`) have separate weights. After each stage the Feature
Rectification Module (FRM) exchanges channel- and spatially-weighted
information between the branches; the rectified maps feed the next stage.
The Feature Fusion Module (FFM) merges the rectified pair into the stage's
output, which only the decoders read. All maps are NHWC.

Official key -> attribute: `patch_embed{i}`, `block{i}`, `norm{i}` are
`stages[i-1].patch_embed / .blocks / .norm` (`extra_*` likewise in
`extra_stages`); `FRMs` / `FFMs` are `frms` / `ffms`.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from provjax.models import mit
from provjax.models.layers.conv import HEAD, batch_norm, conv


class ChannelWeights(nnx.Module):
  """Per-channel weights for both branches from avg- and max-pooled cat(rgb, np)."""

  def __init__(self, dim: int, reduction: int, *, rngs: nnx.Rngs):
    self.fc1 = mit.linear(4 * dim, 4 * dim // reduction, rngs=rngs)
    self.fc2 = mit.linear(4 * dim // reduction, 2 * dim, rngs=rngs)

  def __call__(self, x):
    """x = cat(rgb, np) [B, H, W, 2C] -> weights [B, 1, 1, 2C] (first C: rgb, last C: np)."""
    pooled = jnp.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=-1)
    w = nnx.sigmoid(self.fc2(nnx.relu(self.fc1(pooled))))
    return w[:, None, None, :]


class SpatialWeights(nnx.Module):
  """Per-pixel weights for both branches: 1x1 conv 2C -> C/r -> ReLU -> 1x1 conv -> 2."""

  def __init__(self, dim: int, reduction: int, *, rngs: nnx.Rngs):
    self.conv1 = conv(2 * dim, dim // reduction, 1, use_bias=True, rngs=rngs)
    self.conv2 = conv(dim // reduction, 2, 1, use_bias=True, out_axis=HEAD, rngs=rngs)

  def __call__(self, x):
    return nnx.sigmoid(self.conv2(nnx.relu(self.conv1(x))))


class FRM(nnx.Module):
  """Feature Rectification Module: each branch gets the other's weighted features added.

  rgb' = rgb + lc * cw_np * np + ls * sw_np * np and np' = np + lc * cw_rgb * rgb
  + ls * sw_rgb * rgb, where the `_rgb` weights are the first half of each
  weight tensor (as in the official split).
  """

  def __init__(
      self,
      dim: int,
      *,
      reduction: int = 1,
      lambda_c: float = 0.5,
      lambda_s: float = 0.5,
      rngs: nnx.Rngs,
  ):
    self.lambda_c, self.lambda_s = lambda_c, lambda_s
    self.channel_weights = ChannelWeights(dim, reduction, rngs=rngs)
    self.spatial_weights = SpatialWeights(dim, reduction, rngs=rngs)

  def __call__(self, rgb, np_):
    c = rgb.shape[-1]
    x = jnp.concatenate([rgb, np_], axis=-1)
    cw, sw = self.channel_weights(x), self.spatial_weights(x)
    to_rgb = self.lambda_c * cw[..., c:] + self.lambda_s * sw[..., 1:2]
    to_np = self.lambda_c * cw[..., :c] + self.lambda_s * sw[..., 0:1]
    return rgb + to_rgb * np_, np_ + to_np * rgb


class CrossAttention(nnx.Module):
  """Channel-context attention: each branch's queries read the other's d_h x d_h context."""

  def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
    self.heads = heads
    self.kv1 = mit.linear(dim, 2 * dim, use_bias=False, rngs=rngs)
    self.kv2 = mit.linear(dim, 2 * dim, use_bias=False, rngs=rngs)

  def _context(self, kv, u):
    """softmax over the key channel of (k^T v) * d_h^-0.5, per head: [B, heads, d_h, d_h]."""
    b, n, c = u.shape
    dh = c // self.heads
    kv = kv(u).reshape(b, n, 2, self.heads, dh)
    ctx = jnp.einsum("bnhd,bnhe->bhde", kv[:, :, 0], kv[:, :, 1]) * dh**-0.5
    return jax.nn.softmax(ctx, axis=-2)

  def __call__(self, u1, u2):
    b, n, c = u1.shape
    q1 = u1.reshape(b, n, self.heads, c // self.heads)
    q2 = u2.reshape(b, n, self.heads, c // self.heads)
    ctx1, ctx2 = self._context(self.kv1, u1), self._context(self.kv2, u2)
    v1 = jnp.einsum("bnhd,bhde->bnhe", q1, ctx2).reshape(b, n, c)
    v2 = jnp.einsum("bnhd,bhde->bnhe", q2, ctx1).reshape(b, n, c)
    return v1, v2


class CrossPath(nnx.Module):
  """Per branch: out = LN(x + Linear(cat(y, v))), where Linear(C, 2C/r) + ReLU splits x into
  (y, u) and v is u's cross attention with the other branch."""

  def __init__(self, dim: int, heads: int, reduction: int, *, rngs: nnx.Rngs):
    hidden = dim // reduction
    self.channel_proj1 = mit.linear(dim, 2 * hidden, rngs=rngs)
    self.channel_proj2 = mit.linear(dim, 2 * hidden, rngs=rngs)
    self.cross_attn = CrossAttention(hidden, heads, rngs=rngs)
    self.end_proj1 = mit.linear(2 * hidden, dim, rngs=rngs)
    self.end_proj2 = mit.linear(2 * hidden, dim, rngs=rngs)
    self.norm1 = mit.layer_norm(dim, eps=mit.TORCH_LN_EPS, rngs=rngs)
    self.norm2 = mit.layer_norm(dim, eps=mit.TORCH_LN_EPS, rngs=rngs)

  def __call__(self, x1, x2):
    y1, u1 = jnp.split(nnx.relu(self.channel_proj1(x1)), 2, axis=-1)
    y2, u2 = jnp.split(nnx.relu(self.channel_proj2(x2)), 2, axis=-1)
    v1, v2 = self.cross_attn(u1, u2)
    out1 = self.norm1(x1 + self.end_proj1(jnp.concatenate([y1, v1], axis=-1)))
    out2 = self.norm2(x2 + self.end_proj2(jnp.concatenate([y2, v2], axis=-1)))
    return out1, out2


class ChannelEmbed(nnx.Module):
  """z [B, H, W, 2C] -> BN(Conv1x1(z) + BN(Conv1x1(ReLU(DWConv3x3(Conv1x1(z)))))) [B, H, W, C]."""

  def __init__(self, in_ch: int, out_ch: int, reduction: int, *, rngs: nnx.Rngs):
    hidden = out_ch // reduction
    self.residual = conv(in_ch, out_ch, 1, rngs=rngs)
    self.proj_in = conv(in_ch, hidden, 1, use_bias=True, rngs=rngs)
    self.dwconv = mit.depthwise_conv(hidden, rngs=rngs)
    self.proj_out = conv(hidden, out_ch, 1, use_bias=True, rngs=rngs)
    self.bn = batch_norm(out_ch, rngs=rngs)
    self.norm = batch_norm(out_ch, rngs=rngs)

  def __call__(self, z, *, train: bool = False):
    y = self.proj_out(nnx.relu(self.dwconv(self.proj_in(z))))
    y = self.bn(y, use_running_average=not train)
    return self.norm(self.residual(z) + y, use_running_average=not train)


class FFM(nnx.Module):
  """Feature Fusion Module: CrossPath on the two token sets, then ChannelEmbed of their concat."""

  def __init__(self, dim: int, heads: int, *, reduction: int = 1, rngs: nnx.Rngs):
    self.cross = CrossPath(dim, heads, reduction, rngs=rngs)
    self.channel_emb = ChannelEmbed(2 * dim, dim, reduction, rngs=rngs)

  def __call__(self, rgb, np_, *, train: bool = False):
    b, h, w, c = rgb.shape
    x1, x2 = self.cross(rgb.reshape(b, h * w, c), np_.reshape(b, h * w, c))
    z = jnp.concatenate([x1, x2], axis=-1).reshape(b, h, w, 2 * c)
    return self.channel_emb(z, train=train)


def drop_path_rates(depths, rate: float) -> tuple[list[list[float]], list[list[float]]]:
  """Stochastic-depth rate of every block of the (RGB, Noiseprint++) branches.

  Linear from 0 to `rate` over all blocks of one branch, with the official
  stage-2 quirk: every RGB stage-2 block uses the rate of the stage's first
  block and every Noiseprint++ stage-2 block that of its second.
  """
  dpr = np.linspace(0.0, rate, sum(depths)).tolist()
  starts = np.cumsum([0, *depths[:-1]]).tolist()
  rgb = [dpr[s : s + d] for s, d in zip(starts, depths)]
  extra = [list(r) for r in rgb]
  if len(depths) > 1:
    s, d = starts[1], depths[1]
    rgb[1] = [dpr[s]] * d
    extra[1] = [dpr[min(s + 1, len(dpr) - 1)]] * d
  return rgb, extra


class DualMiT(nnx.Module):
  """(rgb [B, H, W, 3], modal [B, H, W, 3]) -> 4 fused maps at ceil-strides 4, 8, 16, 32."""

  def __init__(
      self,
      embed_dims,
      num_heads,
      depths,
      sr_ratios,
      *,
      mlp_ratio: int = 4,
      drop_path: float = 0.1,
      rngs: nnx.Rngs,
  ):
    rgb_dp, extra_dp = drop_path_rates(depths, drop_path)

    def branch(rates):
      return nnx.List(
          [
              mit.MiTStage(
                  in_ch,
                  dim,
                  heads=heads,
                  sr=sr,
                  mlp_ratio=mlp_ratio,
                  drop_paths=dp,
                  rngs=rngs,
                  **mit.stage_geometry(i),
              )
              for i, (in_ch, dim, heads, sr, dp) in enumerate(
                  zip((3, *embed_dims[:-1]), embed_dims, num_heads, sr_ratios, rates)
              )
          ]
      )

    self.stages = branch(rgb_dp)
    self.extra_stages = branch(extra_dp)
    self.frms = nnx.List([FRM(dim, rngs=rngs) for dim in embed_dims])
    self.ffms = nnx.List([FFM(dim, heads, rngs=rngs) for dim, heads in zip(embed_dims, num_heads)])

  def __call__(self, rgb, modal, *, train: bool = False, rngs: nnx.Rngs | None = None):
    outs = []
    for stage, extra, frm, ffm in zip(self.stages, self.extra_stages, self.frms, self.ffms):
      rgb = stage(rgb, train=train, rngs=rngs)
      modal = extra(modal, train=train, rngs=rngs)
      rgb, modal = frm(rgb, modal)
      outs.append(ffm(rgb, modal, train=train))
    return outs
