"""SImProv comparator ("ICN"): aligns a query to its original, classifies the
pair (benign / manipulated / distinct) and maps the edits on a grid x grid
heatmap in the original's frame.

Architecture (specs/simprov.md, section 2.1-2.6 and section 3):

  Q --WarpModule(R, Q)--> Q_w                (affine STN + dense flow, layers/warp.py)
  R, Q_w --SplitStem (shared)--> f_R, f_Q    (ResNet stem + layer1[0] minus its last conv)
  concat(f_R, f_Q) -> conv3x3-BN-ReLU        (fusion, to the width layer1[1] expects)
  -> layer1[1:], layer2, layer3, layer4      (ResNet trunk)
  -> adaptive avg-pool to grid x grid -> flatten -> Dense(256) -> ReLU
  -> Dense(grid^2) heatmap (raw)  and  Dense(3) logits (0 benign, 1 manipulated, 2 distinct)
  dense_side > 0 (issue 7: a map finer than 7x7): conv3x3-ReLU-conv1x1 on the fused
  stem features (1/4 of the input side) plus the upsampled grid map, pooled
  to side x side; at inference it replaces the grid map.

The reference warps with pretrained RAFT, unavailable offline; here the warp
is the lighter estimator the spec allows, trained end to end from scratch.
Inputs are NHWC float32 images in [0, 1]; ImageNet normalisation happens
inside so preprocessing travels with the weights.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp

from provjax.models import resnet
from provjax.models.layers.conv import HEAD, batch_norm, conv, dense
from provjax.models.layers.preprocess import imagenet_normalize
from provjax.models.layers.warp import WarpModule, adaptive_avg_pool

CLASSES = ("benign", "manipulated", "distinct")
DENSE_WIDTH = 32  # channels of the dense heatmap head

VARIANTS = {
    # Private micro variant for tests and CPU checkpoints: the tiny ResNet
    # ends at 2x2 for 64 px inputs, pooled up to the 7x7 heatmap grid.
    "tiny": dict(
        backbone="tiny",
        image_size=64,
        grid=7,
        hidden=256,
        warp_widths=(8, 16, 24),
        warp_radius=3,
        stn_hidden=64,
        flow_hidden=32,
        flow_levels=2,
    ),
    # ResNet-18 at 128 px, ending at 4x4: sized to train on a CPU in hours
    # (no released weights yet).
    "small": dict(
        backbone="r18",
        image_size=128,
        grid=7,
        hidden=256,
        warp_widths=(16, 32, 48),
        warp_radius=3,
        stn_hidden=128,
        flow_hidden=48,
        flow_levels=2,
    ),
    # The spec's model: ResNet-50 split after layer1[0].conv2, 2048x7x7 at 224 px.
    "r50": dict(
        backbone="r50",
        image_size=224,
        grid=7,
        hidden=256,
        warp_widths=(32, 64, 96),
        warp_radius=4,
        stn_hidden=256,
        flow_hidden=64,
        flow_levels=2,
    ),
}


class SplitStem(nnx.Module):
  """ResNet stem, then every conv of layer1[0] except its last, each BN-ReLU.

  For ResNet-50 this is torchvision's `conv1, bn1, relu, maxpool,
  layer1[0].conv1, bn1, conv2, bn2` + ReLU: 64 channels at 1/4 resolution
  (spec 2.3). The rule "all but the last conv" (the one that would join the
  residual) gives the analogous split for basic-block ResNets: conv1-bn1-relu.
  Layout mirrors `resnet.Block` (`convs`, `bns`) so weight converters map
  `layer1.0.convN` onto `convs[N-1]`.
  """

  def __init__(self, spec: resnet.ResNetSpec, *, rngs: nnx.Rngs, dtype=jnp.float32):
    self.stem = resnet.Stem(spec.stem_width, rngs=rngs, dtype=dtype)
    width = spec.widths[0]
    chans = (
        [(spec.stem_width, width, 1), (width, width, 3)]
        if spec.bottleneck
        else [(spec.stem_width, width, 3)]
    )
    self.convs = nnx.List([conv(i, o, k, rngs=rngs, dtype=dtype) for i, o, k in chans])
    self.bns = nnx.List([batch_norm(o, rngs=rngs, dtype=dtype) for _, o, _ in chans])
    self.out_ch = width

  def __call__(self, x, *, train: bool):
    x = self.stem(x, train=train)
    for c, bn in zip(self.convs, self.bns):
      x = nnx.relu(bn(c(x), use_running_average=not train))
    return x


class Comparator(nnx.Module):
  """(R, Q) -> logits [B, 3], raw heatmap [B, grid, grid] and the alignment.

  Args:
    backbone: key of `resnet.SPECS` ("tiny", "r50", ...).
    image_size: nominal input size (metadata for pipelines and benchmarks;
      the model accepts any size divisible by 32).
    grid: heatmap side (7 in the spec).
    hidden: width of the shared Dense after the trunk (256).
    warp_widths, warp_radius, stn_hidden, flow_hidden, flow_levels: the
      `WarpModule` configuration (flow_levels=0 is the affine-only ablation).
    dense_side: side of the finer heatmap from the stem features (0: the spec's
      grid map only).
    dtype: compute dtype of the stem and trunk; the warp always runs in
      float32 because sampling coordinates need the precision.
  """

  def __init__(
      self,
      backbone: str,
      image_size: int,
      grid: int,
      hidden: int,
      *,
      warp_widths,
      warp_radius: int,
      stn_hidden: int,
      flow_hidden: int,
      flow_levels: int,
      dense_side: int = 0,
      rngs: nnx.Rngs,
      dtype=jnp.float32,
  ):
    spec = resnet.SPECS[backbone]
    self.image_size, self.grid, self.dense_side, self.dtype = image_size, grid, dense_side, dtype
    self.warp = WarpModule(
        warp_widths,
        radius=warp_radius,
        stn_hidden=stn_hidden,
        flow_hidden=flow_hidden,
        flow_levels=flow_levels,
        rngs=rngs,
    )
    self.split_stem = SplitStem(spec, rngs=rngs, dtype=dtype)
    trunk_in = spec.widths[0] * spec.expansion
    self.fusion = conv(2 * self.split_stem.out_ch, trunk_in, 3, rngs=rngs, dtype=dtype)
    self.fusion_bn = batch_norm(trunk_in, rngs=rngs, dtype=dtype)
    self.trunk = nnx.List(_trunk(spec, trunk_in, rngs=rngs, dtype=dtype))
    self.fc = dense(spec.out_dim * grid * grid, hidden, rngs=rngs)
    self.heatmap_head = dense(hidden, grid * grid, rngs=rngs, out_axis=HEAD)
    self.cls_head = dense(hidden, len(CLASSES), rngs=rngs, out_axis=HEAD)
    if dense_side:
      self.dense_conv = conv(trunk_in, DENSE_WIDTH, 3, rngs=rngs, dtype=dtype)
      self.dense_out = conv(DENSE_WIDTH, 1, 1, rngs=rngs, use_bias=True, out_axis=HEAD)

  def __call__(self, ref, query, *, train: bool = False) -> dict:
    """Forward pass.

    Args:
      ref: [B, H, W, 3] originals R in [0, 1].
      query: [B, H, W, 3] queries Q in [0, 1], or [1, H, W, 3] at inference: one
        query against B originals (its warp features are computed once).
      train: batch statistics (True) or running averages (False) in BN.

    Returns:
      dict with `logits` [B, 3], `heatmap` [B, grid, grid] (raw, no
      activation), with `dense_side` > 0 also `dense_heatmap` [B, side, side]
      (raw), `warped` [B, H, W, 3] (Q in R's frame), `coords`
      [B, H, W, 2] (where each R pixel samples Q) and `valid` bool [B, H, W].
    """
    warped, coords, valid = self.warp(ref, query, train=train)
    b = ref.shape[0]
    # One batch through the shared stem: R and Q get the same BN statistics.
    feats = self.split_stem(
        imagenet_normalize(jnp.concatenate([ref, warped]), self.dtype), train=train
    )
    x = jnp.concatenate(jnp.split(feats, 2), axis=-1)
    x = nnx.relu(self.fusion_bn(self.fusion(x), use_running_average=not train))
    fused = x
    for block in self.trunk:
      x = block(x, train=train)
    # NHWC flatten order (h, w, c); torch's is (c, h, w): converters permute fc.
    x = adaptive_avg_pool(x.astype(jnp.float32), (self.grid, self.grid)).reshape(b, -1)
    h = nnx.relu(self.fc(x))
    out = dict(
        logits=self.cls_head(h),
        heatmap=self.heatmap_head(h).reshape(b, self.grid, self.grid),
        warped=warped,
        coords=coords,
        valid=valid,
    )
    if self.dense_side:
      out["dense_heatmap"] = self._dense_map(fused, out["heatmap"])
    return out

  def _dense_map(self, fused, grid_map):
    """Local evidence from the fused stem features plus the global grid map."""
    local = self.dense_out(nnx.relu(self.dense_conv(fused))).astype(jnp.float32)
    size = (self.dense_side, self.dense_side)
    coarse = adaptive_avg_pool(jax.image.resize(grid_map[..., None], local.shape, "linear"), size)
    return (adaptive_avg_pool(local, size) + coarse)[..., 0]

  def predict(self, ref, query) -> dict:
    """Inference: class probabilities, verdict and the test-time heatmap.

    Returns:
      dict with `probs` [B, 3] (softmax), `label` [B] int32 (argmax),
      `heatmap` [B, grid, grid] in [0, 1] by `heatmap_at_test_time`, and the
      alignment `warped`, `coords`, `valid`.
    """
    out = self(ref, query, train=False)
    label = jnp.argmax(out["logits"], axis=-1).astype(jnp.int32)
    raw = out["dense_heatmap"] if self.dense_side else out["heatmap"]
    return dict(
        probs=jax.nn.softmax(out["logits"], axis=-1),
        label=label,
        heatmap=heatmap_at_test_time(raw, label),
        warped=out["warped"],
        coords=out["coords"],
        valid=out["valid"],
    )


def _trunk(spec: resnet.ResNetSpec, in_ch: int, *, rngs: nnx.Rngs, dtype) -> list:
  """layer1[1:] then layers 2..4, flattened into one list of blocks."""
  blocks, ch = resnet.make_blocks(spec, in_ch, 0, first=1, rngs=rngs, dtype=dtype)
  blocks = list(blocks)
  for stage in range(1, len(spec.stage_sizes)):
    more, ch = resnet.make_blocks(spec, ch, stage, rngs=rngs, dtype=dtype)
    blocks += list(more)
  return blocks


def heatmap_at_test_time(raw, label, eps: float = 1e-6):
  """The spec's inference rule for the heatmap (section 2.7).

  Predicted class 0 (benign) gives an all-zero map and class 2 (distinct) an
  all-one map. For class 1 (manipulated) the raw map is min-max normalised
  per sample, (x - min) / (max - min + eps), then clipped to [0, 1]; the raw
  head has no activation, so only its relative values are meaningful, and
  this is the normalisation the reference applies before its IoU.

  Args:
    raw: [B, g, g] raw heatmaps.
    label: [B] predicted classes.
  """
  lo = jnp.min(raw, axis=(1, 2), keepdims=True)
  hi = jnp.max(raw, axis=(1, 2), keepdims=True)
  norm = jnp.clip((raw - lo) / (hi - lo + eps), 0.0, 1.0)
  label = label[:, None, None]
  return jnp.where(label == 0, 0.0, jnp.where(label == 2, 1.0, norm))


def param_count(model: nnx.Module) -> int:
  """Number of trainable parameters."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def flops_per_pair(model: Comparator, image_size: int | None = None) -> float:
  """Forward FLOPs for one (R, Q) pair, from XLA's cost analysis (eval mode)."""
  size = image_size or model.image_size
  graphdef, state = nnx.split(model)

  def fwd(state, ref, query):
    return nnx.merge(graphdef, state)(ref, query)["logits"]

  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  cost = jax.jit(fwd).lower(state, x, x).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0))


def create(variant: str = "tiny", *, rngs: nnx.Rngs, **overrides) -> Comparator:
  """Build a variant from VARIANTS; keyword overrides replace table entries."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown comparator variant {variant!r}; choose from {sorted(VARIANTS)}")
  return Comparator(**{**VARIANTS[variant], **overrides}, rngs=rngs)
