"""Differentiable warping: bilinear sampling, affine grids, STN and flow refiner.

The SImProv comparator aligns the query Q onto the original R before
comparing them (specs/simprov.md, section 2.1-2.2). The reference uses RAFT
(pretrained, not available offline) or an affine STN "Dewarper". This module
is the lighter estimator the spec allows (section 3): an affine STN that
starts at identity, followed by a coarse-to-fine dense flow refiner over local
correlation volumes; everything is trained end to end from the comparator
loss plus a photometric term, with no pretraining.

Coordinate convention used throughout: sampling coordinates are (y, x) pixel
coordinates in the *source* image with pixel centres at integers, so pixel
(i, j) of an image is sampled exactly at (i, j). A coordinate map `coords`
[B, H, W, 2] says, for every output (R-frame) pixel, where to read Q.
On a feature map of stride s, feature cell f covers pixel centre
s * f + (s - 1) / 2 (jax.image.resize's half-pixel convention), so a
displacement of d feature cells is s * d pixels.
"""

from __future__ import annotations

from typing import Sequence

from flax import nnx
import jax
import jax.numpy as jnp

from provjax.models.layers.conv import HEAD, batch_norm, conv, dense
from provjax.models.layers.correlation import l2_normalize, local_correlation
from provjax.models.layers.preprocess import imagenet_normalize

IDENTITY_AFFINE = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


# ----------------------------------------------------------------------------
# Sampling primitives (pure functions)
# ----------------------------------------------------------------------------


def pixel_grid(height: int, width: int, dtype=jnp.float32):
  """[H, W, 2] grid of (y, x) pixel-centre coordinates (the identity warp)."""
  ys, xs = jnp.meshgrid(
      jnp.arange(height, dtype=dtype), jnp.arange(width, dtype=dtype), indexing="ij"
  )
  return jnp.stack([ys, xs], axis=-1)


def grid_sample(images, coords, *, return_valid: bool = False):
  """Bilinear sampling of `images` at pixel `coords`, zero outside the image.

  Equivalent to torch `grid_sample(mode='bilinear', padding_mode='zeros')`
  expressed in pixel coordinates. Implemented as four batched gathers of the
  corner pixels: on CPU this is faster than vmapping
  `jax.scipy.ndimage.map_coordinates` per channel, and it is differentiable
  w.r.t. both `images` (scatter-add transpose) and `coords` (through the
  bilinear weights; the floor itself has zero gradient as usual).

  Args:
    images: [B, H, W, C] source images.
    coords: [B, H', W', 2] (y, x) pixel coordinates into `images`.
    return_valid: also return the validity mask.

  Returns:
    [B, H', W', C] samples; with `return_valid`, also a bool [B, H', W'] mask
    that is True where the coordinate lies inside [0, H-1] x [0, W-1], i.e.
    where all interpolation weight falls on real pixels (zero padding never
    leaks into the value).
  """
  b, h, w, c = images.shape
  out_hw = coords.shape[1:3]
  coords = coords.astype(jnp.float32)
  y, x = coords[..., 0], coords[..., 1]
  y0, x0 = jnp.floor(y), jnp.floor(x)
  fy, fx = y - y0, x - x0
  flat = images.reshape(b, h * w, c)
  gather = jax.vmap(lambda img, idx: img[idx])
  out = jnp.zeros((b, *out_hw, c), images.dtype)
  for dy, wy in ((0, 1.0 - fy), (1, fy)):
    for dx, wx in ((0, 1.0 - fx), (1, fx)):
      yi, xi = y0 + dy, x0 + dx
      inside = (yi >= 0) & (yi <= h - 1) & (xi >= 0) & (xi <= w - 1)
      idx = (jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)).astype(jnp.int32)
      corner = gather(flat, idx.reshape(b, -1)).reshape(b, *out_hw, c)
      out = out + corner * jnp.where(inside, wy * wx, 0.0)[..., None].astype(images.dtype)
  if not return_valid:
    return out
  valid = (y >= 0) & (y <= h - 1) & (x >= 0) & (x <= w - 1)
  return out, valid


def affine_grid(theta, height: int, width: int, *, src_hw: tuple[int, int] | None = None):
  """Pixel sampling coordinates of a normalised affine, like torch `affine_grid`.

  `theta` follows torch `affine_grid(align_corners=False)`: it maps the
  output's normalised (x, y) in [-1, 1] (pixel-centre extremes at
  +-(1 - 1/size)) to the source's normalised (x, y). The result is converted
  to source pixel coordinates. Because the normalised frame is resolution
  free, the same theta gives consistent grids at every feature resolution.
  The algebra is arranged around the image centres so that the identity
  theta reproduces `pixel_grid` exactly (no divide-then-multiply rounding).

  Args:
    theta: [B, 2, 3] affine matrices; row 0 gives x, row 1 gives y (torch).
    height, width: output grid size.
    src_hw: source image size; defaults to the output size.

  Returns:
    [B, height, width, 2] (y, x) pixel coordinates in the source.
  """
  src_h, src_w = src_hw or (height, width)
  theta = theta.astype(jnp.float32)
  grid = pixel_grid(height, width)
  v = grid[..., 0] - (height - 1) / 2  # centred output rows
  u = grid[..., 1] - (width - 1) / 2  # centred output columns

  def row(r, size):
    t = theta[:, r, :, None, None]
    return (
        (size - 1) / 2
        + t[:, 0] * (size / width) * u
        + t[:, 1] * (size / height) * v
        + t[:, 2] * (size / 2)
    )

  return jnp.stack([row(1, src_h), row(0, src_w)], axis=-1)


def warp_query_to_reference(query, coords):
  """Resample any per-pixel Q array (image, mask, map) into R's frame.

  Args:
    query: [B, Hq, Wq, C] array in Q's frame.
    coords: [B, H, W, 2] where each R pixel samples Q (from `WarpModule`).

  Returns:
    (warped [B, H, W, C], valid bool [B, H, W]).
  """
  return grid_sample(query, coords, return_valid=True)


def resize_flow(flow, height: int, width: int):
  """Bilinearly resize a [B, h, w, 2] displacement field, rescaling its values.

  Displacements are measured in pixels of their own grid, so going from
  h to `height` rows multiplies the y component by height / h (and likewise
  for x).
  """
  b, h, w, _ = flow.shape
  if (h, w) == (height, width):
    return flow
  resized = jax.image.resize(flow, (b, height, width, 2), method="linear")
  return resized * jnp.asarray([height / h, width / w], flow.dtype)


def adaptive_avg_pool(x, out_hw: tuple[int, int]):
  """torch `adaptive_avg_pool2d` for NHWC maps, as two small matmuls.

  Output cell i averages input rows floor(i*H/out) .. ceil((i+1)*H/out) - 1;
  this is exact for any size ratio (down- or up-sampling) and is the identity
  when the sizes already match.
  """
  h, w = x.shape[1:3]
  if (h, w) == tuple(out_hw):
    return x
  rows, cols = _pool_matrix(h, out_hw[0], x.dtype), _pool_matrix(w, out_hw[1], x.dtype)
  return jnp.einsum("oh,bhwc,pw->bopc", rows, x, cols)


def _pool_matrix(size: int, out: int, dtype):
  """[out, size] averaging weights of adaptive pooling along one axis."""
  starts = [(i * size) // out for i in range(out)]
  ends = [-((-(i + 1) * size) // out) for i in range(out)]
  idx = jnp.arange(size)
  m = jnp.stack([((idx >= s) & (idx < e)) / (e - s) for s, e in zip(starts, ends)])
  return m.astype(dtype)


# ----------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------


class WarpFeatures(nnx.Module):
  """Shared conv pyramid for R and Q: three conv3x3/2-BN-ReLU stages.

  Returns the 1/4 and 1/8 maps (fine, coarse). R and Q go through as one
  concatenated batch so BatchNorm sees a single statistic for both: the two
  images must be embedded identically for their correlation to mean anything.
  """

  def __init__(self, widths: Sequence[int], *, rngs: nnx.Rngs):
    chans = [3, *widths]
    self.convs = nnx.List([conv(i, o, 3, strides=2, rngs=rngs) for i, o in zip(chans, chans[1:])])
    self.bns = nnx.List([batch_norm(o, rngs=rngs) for o in widths])

  def __call__(self, images, *, train: bool) -> list:
    x = imagenet_normalize(images)
    outs = []
    for c, bn in zip(self.convs, self.bns):
      x = nnx.relu(bn(c(x), use_running_average=not train))
      outs.append(x)
    return outs[-2:]


class AffineSTN(nnx.Module):
  """Regresses a 2x3 affine (torch convention) from R and Q features.

  Input: concat(f_R, f_Q, local correlation(f_R, f_Q)); the correlation
  volume (the ICN Dewarper's later variant, specs/simprov.md 2.2) exposes
  displacement directly, which plain concatenation would have to discover.
  Then conv3x3/2-BN-ReLU -> adaptive pool to `pool` x `pool` (keeps the
  spatial layout a rotation needs; any input size) -> Dense -> ReLU ->
  Dense(6). The last Dense has a zero kernel and the identity as bias, so
  the module starts as the identity warp (spec 2.2).
  """

  def __init__(self, feat_ch: int, *, radius: int, hidden: int, rngs: nnx.Rngs, pool: int = 4):
    self.radius, self.pool = radius, pool
    in_ch = 2 * feat_ch + (2 * radius + 1) ** 2
    self.conv = conv(in_ch, feat_ch, 3, strides=2, rngs=rngs)
    self.bn = batch_norm(feat_ch, rngs=rngs)
    self.fc = dense(feat_ch * pool * pool, hidden, rngs=rngs)
    self.out = dense(hidden, 6, rngs=rngs, kernel_init=nnx.initializers.zeros, out_axis=HEAD)
    self.out.bias[...] = self.out.bias[...] + jnp.asarray(IDENTITY_AFFINE, jnp.float32)

  def __call__(self, feat_r, feat_q, *, train: bool):
    """Returns theta [B, 2, 3] mapping R's normalised frame to Q's."""
    corr = local_correlation(l2_normalize(feat_r), l2_normalize(feat_q), self.radius)
    x = jnp.concatenate([feat_r, feat_q, corr], axis=-1)
    x = nnx.relu(self.bn(self.conv(x), use_running_average=not train))
    x = adaptive_avg_pool(x, (self.pool, self.pool)).reshape(x.shape[0], -1)
    return self.out(nnx.relu(self.fc(x))).reshape(-1, 2, 3)


class FlowHead(nnx.Module):
  """One refinement level: correlation + context + current flow -> flow update.

  conv3x3-ReLU x2 -> conv3x3 to 2 channels; the last conv is zero
  initialised so the update (and hence the flow) starts at exactly 0.
  """

  def __init__(self, feat_ch: int, *, radius: int, hidden: int, rngs: nnx.Rngs):
    self.radius = radius
    in_ch = (2 * radius + 1) ** 2 + feat_ch + 2
    self.convs = nnx.List(
        [
            conv(in_ch, hidden, 3, rngs=rngs, use_bias=True),
            conv(hidden, hidden, 3, rngs=rngs, use_bias=True),
        ]
    )
    self.out = conv(hidden, 2, 3, rngs=rngs, use_bias=True, out_axis=HEAD)
    self.out.kernel[...] = jnp.zeros_like(self.out.kernel[...])

  def __call__(self, feat_r, feat_q, base, flow):
    """Refines `flow` [B,h,w,2] (feature cells) on top of the `base` coordinates."""
    warped_q = grid_sample(feat_q, base + flow)
    corr = local_correlation(l2_normalize(feat_r), l2_normalize(warped_q), self.radius)
    x = jnp.concatenate([corr, feat_r, flow], axis=-1)
    for c in self.convs:
      x = nnx.relu(c(x))
    return flow + self.out(x)


class FlowRefiner(nnx.Module):
  """Dense residual flow on top of the affine warp, coarse to fine.

  Level k works on the pyramid map of stride `strides[k]` (coarsest first):
  it samples Q's features at the affine grid plus the current flow, builds a
  (2r+1)^2 local cost volume against R's features and predicts a flow update.
  The flow is carried to the next (finer) level by `resize_flow` and finally
  upsampled to the image resolution, in pixels.
  """

  def __init__(self, feat_chs: Sequence[int], *, radius: int, hidden: int, rngs: nnx.Rngs):
    self.heads = nnx.List(
        [FlowHead(ch, radius=radius, hidden=hidden, rngs=rngs) for ch in feat_chs]
    )

  def __call__(self, feats_r: Sequence, feats_q: Sequence, theta, height: int, width: int):
    """Returns the full-resolution flow [B, height, width, 2] in pixels.

    Args:
      feats_r, feats_q: per-level feature maps, coarsest first, one per head.
      theta: [B, 2, 3] affine from the STN.
      height, width: image size the flow is returned at.
    """
    flow = None
    for head, fr, fq in zip(self.heads, feats_r, feats_q):
      h, w = fr.shape[1:3]
      base = affine_grid(theta, h, w, src_hw=fq.shape[1:3])
      flow = (
          jnp.zeros((fr.shape[0], h, w, 2), jnp.float32)
          if flow is None
          else resize_flow(flow, h, w)
      )
      flow = head(fr, fq, base, flow)
    return resize_flow(flow, height, width)


class WarpModule(nnx.Module):
  """Aligns Q onto R: shared features -> AffineSTN -> FlowRefiner -> resample.

  At initialisation the STN is the identity and the flow is zero, so
  `coords` is exactly the pixel grid and the warped query equals the query.

  Args:
    widths: channel widths of the three stride-2 feature stages.
    radius: correlation window half-size (r=4 gives the 81-channel volume).
    stn_hidden: width of the STN's hidden Dense layer.
    flow_hidden: width of the flow heads' convolutions.
    flow_levels: 0 = affine only (the Dewarper ablation), 1 = flow at 1/8,
      2 = coarse-to-fine flow at 1/8 then 1/4.
  """

  def __init__(
      self,
      widths: Sequence[int] = (16, 32, 48),
      *,
      rngs: nnx.Rngs,
      radius: int = 4,
      stn_hidden: int = 128,
      flow_hidden: int = 32,
      flow_levels: int = 2,
  ):
    if not 0 <= flow_levels <= 2:
      raise ValueError(f"flow_levels must be 0, 1 or 2, got {flow_levels}")
    self.flow_levels = flow_levels
    self.features = WarpFeatures(widths, rngs=rngs)
    self.stn = AffineSTN(widths[-1], radius=radius, hidden=stn_hidden, rngs=rngs)
    chans = [widths[-1], widths[-2]][:flow_levels]
    self.flow = (
        FlowRefiner(chans, radius=radius, hidden=flow_hidden, rngs=rngs) if flow_levels else None
    )

  def sampling_coords(self, ref, query, *, train: bool = False):
    """Where each R pixel samples Q: (coords [B, H, W, 2], theta [B, 2, 3]).

    `query` is [B, ...] (pairs) or [1, ...]: one query against B references,
    whose features are then computed once, not B times. That is only for
    inference: in training one batch carries R and Q through the BN layers.
    """
    b, h, w, _ = ref.shape
    if query.shape[0] == b:
      fine, coarse = self.features(jnp.concatenate([ref, query], axis=0), train=train)
      fine_r, fine_q = jnp.split(fine, 2)
      coarse_r, coarse_q = jnp.split(coarse, 2)
    elif query.shape[0] == 1 and not train:
      fine_r, coarse_r = self.features(ref, train=False)
      fine_q, coarse_q = (
          jnp.broadcast_to(a, (b,) + a.shape[1:]) for a in self.features(query, train=False)
      )
    else:
      raise ValueError(f"{b} references need {b} queries, or 1 at inference; got {query.shape[0]}")
    theta = self.stn(coarse_r, coarse_q, train=train)
    coords = affine_grid(theta, h, w, src_hw=query.shape[1:3])
    if self.flow is not None:
      levels_r, levels_q = [coarse_r, fine_r], [coarse_q, fine_q]
      n = self.flow_levels
      coords = coords + self.flow(levels_r[:n], levels_q[:n], theta, h, w)
    return coords, theta

  def __call__(self, ref, query, *, train: bool = False):
    """Returns (q_warped [B,H,W,C], coords [B,H,W,2], valid bool [B,H,W]); see `sampling_coords`."""
    coords, _ = self.sampling_coords(ref, query, train=train)
    query = jnp.broadcast_to(query, (ref.shape[0],) + query.shape[1:])
    warped, valid = warp_query_to_reference(query, coords)
    return warped, coords, valid
