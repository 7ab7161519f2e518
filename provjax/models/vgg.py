"""VGG19's convolutional trunk as frozen feature taps (specs/safepaint.md, sections 2 and 6).

The layout of torchvision's `vgg19().features` (layer indices 0-35, the last
max pool left out because no tap lies after it): five stages of 2, 2, 4, 4, 4
3x3 convs with bias, padding 1, each followed by a ReLU, and a 2x2 stride-2
max pool (floor) between stages. Every ReLU output is a tap, named
`relu<stage>_<conv>` (relu1_1 ... relu5_4). Inputs are NHWC float32 in
[0, 1], fed raw: SafePaint's perceptual and style losses apply no ImageNet
normalisation, so neither does this module.

Layout for weight converters: `convs[i]` is the i-th conv, torchvision's
`features.{FEATURE_INDEX[i]}`.

`batch_norm=True` puts a BatchNorm after every conv (as torchvision's
vgg19_bn): the zoo trains its own features that way
(provjax.tasks.vgg_features), since the plain stack learns slowly from
scratch, and `fold_batch_norm` turns the result into the plain VGG that is
released.
"""

from __future__ import annotations

from flax import nnx
import jax.numpy as jnp

from provjax.models.layers.conv import batch_norm as norm
from provjax.models.layers.conv import conv

STAGE_DEPTHS = (2, 2, 4, 4, 4)
VARIANTS = {
    # torchvision's VGG19 (configuration E of Simonyan & Zisserman).
    "vgg19": dict(widths=(64, 128, 256, 512, 512)),
    # The same 16-conv, 5-stage layout at a quarter width, trained here (provjax.tasks.vgg_features).
    "tiny": dict(widths=(16, 32, 64, 128, 128)),
}
TAPS = tuple(
    f"relu{stage + 1}_{i + 1}" for stage, depth in enumerate(STAGE_DEPTHS) for i in range(depth)
)


def _feature_indices() -> tuple[int, ...]:
  """torchvision `features` index of each conv: conv, ReLU per conv, one pool per stage."""
  indices, index = [], 0
  for depth in STAGE_DEPTHS:
    for _ in range(depth):
      indices.append(index)
      index += 2
    index += 1
  return tuple(indices)


FEATURE_INDEX = _feature_indices()


def max_pool(x):
  """PyTorch's MaxPool2d(2, 2): 2x2 windows, stride 2, odd last rows / columns dropped (floor).

  A reshape and max rather than `nnx.max_pool`: the same values, and a gradient
  that XLA's CPU backend computes several times faster than select-and-scatter
  (ties, which PyTorch gives to the first element, share it here).
  """
  b, h, w, c = x.shape
  x = x[:, : h // 2 * 2, : w // 2 * 2]
  return jnp.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


def _stage_input(i: int, x):
  """The input of conv `i`: a new stage starts after a 2x2 stride-2 pool (floor)."""
  return max_pool(x) if i and TAPS[i].endswith("_1") else x


class VGG(nnx.Module):
  """x [B, H, W, 3] in [0, 1] -> {tap: [B, h, w, C]} for every tap up to the deepest asked."""

  def __init__(self, widths: tuple[int, ...], *, batch_norm: bool = False, rngs: nnx.Rngs):
    if len(widths) != len(STAGE_DEPTHS):
      raise ValueError(f"vgg needs {len(STAGE_DEPTHS)} stage widths, got {widths}")
    chans, prev = [], 3
    for width, depth in zip(widths, STAGE_DEPTHS):
      for _ in range(depth):
        chans.append((prev, width))
        prev = width
    # The helper's init (He normal, fan_out; bias 0) is torchvision's VGG init.
    self.convs = nnx.List([conv(i, o, 3, use_bias=True, rngs=rngs) for i, o in chans])
    self.norms = nnx.List([norm(o, rngs=rngs) for _, o in chans]) if batch_norm else None
    self.widths = tuple(widths)

  def __call__(self, x, taps: tuple[str, ...] | None = None, *, train: bool = False) -> dict:
    """Every tap (default), or the layers up to the deepest of `taps` and only those taps.

    `train` selects batch statistics in the BatchNorms of a batch_norm=True
    model; a plain VGG has none.
    """
    wanted = TAPS if taps is None else tuple(taps)
    unknown = sorted(set(wanted) - set(TAPS))
    if unknown:
      raise ValueError(f"unknown vgg taps {unknown}; choose from {TAPS}")
    last = max(TAPS.index(t) for t in wanted)
    out = {}
    for i, name in enumerate(TAPS[: last + 1]):
      x = self.convs[i](_stage_input(i, x))
      if self.norms is not None:
        x = self.norms[i](x, use_running_average=not train)
      x = nnx.relu(x)
      if name in wanted:
        out[name] = x
    return out


def fold_batch_norm(model: VGG) -> VGG:
  """The plain VGG computing what `model` (batch_norm=True) computes in eval mode.

  Each BatchNorm's running statistics and affine parameters are folded into
  the conv before it: kernel * g and (bias - mean) * g + beta, with
  g = scale / sqrt(var + eps), per output channel.
  """
  if model.norms is None:
    raise ValueError("fold_batch_norm: the model has no BatchNorm to fold")
  values = {}
  for i, (layer, bn) in enumerate(zip(model.convs, model.norms)):
    gain = bn.scale[...] / jnp.sqrt(bn.var[...] + bn.epsilon)
    values["convs", i, "kernel"] = layer.kernel[...] * gain
    values["convs", i, "bias"] = (layer.bias[...] - bn.mean[...]) * gain + bn.bias[...]
  # Only its structure is used (the values come from `model`), so build it unsharded.
  with nnx.use_eager_sharding(False):
    graphdef, state = nnx.split(nnx.eval_shape(lambda: VGG(model.widths, rngs=nnx.Rngs(0))))
  flat = [(path, var.replace(values[path])) for path, var in nnx.to_flat_state(state)]
  return nnx.merge(graphdef, nnx.from_flat_state(flat))


def create(variant: str = "tiny", *, rngs: nnx.Rngs, **overrides) -> VGG:
  """Build a variant from VARIANTS; keyword overrides (widths, batch_norm) replace entries."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown vgg variant {variant!r}; choose from {sorted(VARIANTS)}")
  return VGG(**{**VARIANTS[variant], **overrides}, rngs=rngs)
