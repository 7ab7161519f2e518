"""ResNet backbones (He et al. 2016) in Flax NNX, torchvision layout.

The stem, blocks and stages are separate modules because the SImProv
comparator splits a ResNet-50 in the middle of `layer1` (see
specs/simprov.md, section 2): it needs the pieces, not only the whole.
Images are NHWC float32 (ImageNet-normalised by the caller).

`fold_batch_norm` turns a trained model into its inference form: each
BatchNorm merged into the conv before it, so a forward pass runs one conv
(with bias) where it ran a conv and a normalisation.
"""

from __future__ import annotations

import dataclasses

from flax import nnx
import jax
import jax.numpy as jnp

from provjax.models.layers.conv import batch_norm, conv


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
  """Depth and width of a ResNet: blocks per stage, stage widths, block type."""

  stage_sizes: tuple[int, ...]
  widths: tuple[int, ...]
  bottleneck: bool
  stem_width: int = 64

  @property
  def expansion(self) -> int:
    return 4 if self.bottleneck else 1

  @property
  def out_dim(self) -> int:
    return self.widths[-1] * self.expansion


SPECS = {
    # Private micro variant for tests and CPU checkpoints: one block a stage.
    "tiny": ResNetSpec((1, 1, 1, 1), (16, 32, 64, 128), bottleneck=False, stem_width=16),
    "r18": ResNetSpec((2, 2, 2, 2), (64, 128, 256, 512), bottleneck=False),
    "r50": ResNetSpec((3, 4, 6, 3), (64, 128, 256, 512), bottleneck=True),
}


class Stem(nnx.Module):
  """conv7x7/2 -> BN -> ReLU -> maxpool3x3/2 (resolution / 4)."""

  def __init__(self, out_ch: int, *, rngs: nnx.Rngs, in_ch: int = 3, dtype=jnp.float32):
    self.conv = conv(in_ch, out_ch, 7, strides=2, rngs=rngs, dtype=dtype)
    self.bn = batch_norm(out_ch, rngs=rngs, dtype=dtype)

  def __call__(self, x, *, train: bool):
    x = nnx.relu(_norm(self.bn, self.conv(x), train))
    return nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class Block(nnx.Module):
  """Basic (2 x 3x3) or bottleneck (1x1-3x3-1x1) residual block, stride on the 3x3."""

  def __init__(
      self,
      in_ch: int,
      width: int,
      *,
      strides: int,
      bottleneck: bool,
      rngs: nnx.Rngs,
      dtype=jnp.float32,
  ):
    out_ch = width * (4 if bottleneck else 1)
    if bottleneck:
      chans = [(in_ch, width, 1, 1), (width, width, 3, strides), (width, out_ch, 1, 1)]
    else:
      chans = [(in_ch, width, 3, strides), (width, out_ch, 3, 1)]
    self.convs = nnx.List(
        [conv(i, o, k, strides=s, rngs=rngs, dtype=dtype) for i, o, k, s in chans]
    )
    # Zero-init the last BN scale so every block starts as identity (Goyal et al.).
    self.bns = nnx.List(
        [
            batch_norm(o, rngs=rngs, dtype=dtype, zero_init=(n == len(chans) - 1))
            for n, (_, o, _, _) in enumerate(chans)
        ]
    )
    self.has_proj = strides != 1 or in_ch != out_ch
    if self.has_proj:
      self.proj = conv(in_ch, out_ch, 1, strides=strides, rngs=rngs, dtype=dtype)
      self.proj_bn = batch_norm(out_ch, rngs=rngs, dtype=dtype)

  def __call__(self, x, *, train: bool):
    residual = x if not self.has_proj else _norm(self.proj_bn, self.proj(x), train)
    for n, (c, bn) in enumerate(zip(self.convs, self.bns)):
      x = _norm(bn, c(x), train)
      if n < len(self.convs) - 1:
        x = nnx.relu(x)
    return nnx.relu(x + residual)


def _norm(bn: nnx.BatchNorm | None, x, train: bool):
  """`bn(x)`, or `x` where `fold_batch_norm` has moved the BatchNorm into the conv."""
  if bn is not None:
    return bn(x, use_running_average=not train)
  if train:
    # The folded conv holds the running statistics: there are no batch statistics to use.
    raise ValueError("a model from fold_batch_norm is for inference (train=False) only")
  return x


def make_blocks(
    spec: ResNetSpec, in_ch: int, stage: int, *, rngs: nnx.Rngs, first: int = 0, dtype=jnp.float32
) -> tuple[nnx.List, int]:
  """Blocks `first..` of `stage`; returns them and their output width."""
  blocks = []
  for b in range(first, spec.stage_sizes[stage]):
    strides = 2 if (stage > 0 and b == 0) else 1
    blocks.append(
        Block(
            in_ch,
            spec.widths[stage],
            strides=strides,
            bottleneck=spec.bottleneck,
            rngs=rngs,
            dtype=dtype,
        )
    )
    in_ch = spec.widths[stage] * spec.expansion
  return nnx.List(blocks), in_ch


class ResNet(nnx.Module):
  """Stem + 4 stages; returns the final feature map [B, H/32, W/32, C]."""

  def __init__(self, spec: ResNetSpec, *, rngs: nnx.Rngs, dtype=jnp.float32):
    self.spec = spec
    self.stem = Stem(spec.stem_width, rngs=rngs, dtype=dtype)
    ch, stages = spec.stem_width, []
    for s in range(len(spec.stage_sizes)):
      blocks, ch = make_blocks(spec, ch, s, rngs=rngs, dtype=dtype)
      stages.append(blocks)
    self.stages = nnx.List(stages)

  def __call__(self, x, *, train: bool = False):
    x = self.stem(x, train=train)
    for blocks in self.stages:
      for block in blocks:
        x = block(x, train=train)
    return x


def fold_conv(layer: nnx.Conv, bn: nnx.BatchNorm) -> nnx.Conv:
  """A conv with bias computing `bn(layer(x))` for BatchNorm in eval mode.

  Per output channel, g = scale / sqrt(var + eps): kernel * g and
  (bias - mean) * g + beta (bias 0 for a conv without one).
  """
  gain = bn.scale[...] / jnp.sqrt(bn.var[...] + bn.epsilon)
  bias = layer.bias[...] if layer.use_bias else 0.0
  folded = nnx.clone(layer)
  folded.kernel = layer.kernel.replace(layer.kernel[...] * gain)
  # The BatchNorm's shift parameter already has the bias' shape and sharding names.
  folded.bias = bn.bias.replace((bias - bn.mean[...]) * gain + bn.bias[...])
  folded.use_bias = True
  return folded


def fold_batch_norm(model: nnx.Module) -> nnx.Module:
  """A copy of `model` whose ResNet stems and blocks have their BatchNorms folded away.

  Works on any model built from `Stem` and `Block` (ResNet, the SImProv
  descriptor, SSCD, ...); the result computes what `model(x, train=False)`
  computes, to float rounding, and refuses `train=True`. `model` is unchanged.
  """
  model = nnx.clone(model)
  # Listed first: the loop replaces nodes of the graph it would otherwise be walking.
  for module in [m for _, m in nnx.iter_modules(model)]:
    if isinstance(module, Stem) and module.bn is not None:
      module.conv, module.bn = fold_conv(module.conv, module.bn), None
    elif isinstance(module, Block) and module.bns[0] is not None:
      for n, bn in enumerate(module.bns):
        module.convs[n], module.bns[n] = fold_conv(module.convs[n], bn), None
      if module.has_proj:
        module.proj, module.proj_bn = fold_conv(module.proj, module.proj_bn), None
  return model


def flops_per_image(model: nnx.Module, image_size: int) -> float:
  """Forward FLOPs for one image, from XLA's cost analysis of the eval call."""
  graphdef, state = nnx.split(model)

  def fwd(state, x):
    return nnx.merge(graphdef, state)(x)

  x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  cost = jax.jit(fwd).lower(state, x).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0))
