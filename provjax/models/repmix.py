"""RepMix (Bui et al., ECCV 2022): a ResNet with a representation-mixing layer
and detection-gated attribution heads (specs/repmix.md, sections 2-3 and 11).

The trunk is cut into levels so the mixing layer can sit at any of them:

    level 0: the input pixels      level 1: after the stem
    level 2-5: after layer1-4      level 6: after the 256-d embedding

Training feeds `n` images per mixed sample, consecutive in the batch
([s0a, s0b, s1a, s1b, ...]), with weights `mix` [B, n]; BatchNorm before the
mixing point sees all B*n images, after it the B mixed tensors. At inference
(`mix=None`) the layer is skipped: a plain ResNet -> Dense(256) -> heads.

Gating (real fixed at index 0): the attribution logits are scaled by the
detection head's probabilities, a'[:, 0] = a[:, 0] * P(real) and
a'[:, 1:] = a[:, 1:] * P(fake); a' is both what the loss sees and what is
predicted. `gating=False` is the ablation with two independent heads.

Inputs are NHWC images in [0, 1]; the model applies the paper's mean = std =
0.5 normalisation, so preprocessing travels with the weights.
"""

from __future__ import annotations

from flax import nnx
import jax.numpy as jnp

from provjax.models import resnet
from provjax.models.layers.conv import HEAD, batch_norm, conv, dense

MIX_LEVELS = tuple(range(7))
DEFAULT_MIX_LEVEL = 5  # after layer4, before global pooling (the paper's default)

VARIANTS = {
    # ResNet-18 at a quarter width with a light stem (3x3/2, no max-pool): the
    # CPU variant, trained on 56-px crops of the 64-px generator zoo.
    "tiny": dict(backbone="r18q", stem="light", num_classes=7, image_size=56),
    "r18": dict(backbone="r18", stem="imagenet", num_classes=8, image_size=224),
    # The paper's model: torchvision ResNet-50, 224 px, real + 7 GANs.
    "r50": dict(backbone="r50", stem="imagenet", num_classes=8, image_size=224),
}
BACKBONES = {
    **resnet.SPECS,
    "r18q": resnet.ResNetSpec((2, 2, 2, 2), (16, 32, 64, 128), bottleneck=False, stem_width=16),
}


class LightStem(nnx.Module):
  """conv3x3/2 -> BN -> ReLU: keeps the pixel grid a generator's upsampling leaves."""

  def __init__(self, out_ch: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
    self.conv = conv(3, out_ch, 3, strides=2, rngs=rngs, dtype=dtype)
    self.bn = batch_norm(out_ch, rngs=rngs, dtype=dtype)

  def __call__(self, x, *, train: bool):
    return nnx.relu(self.bn(self.conv(x), use_running_average=not train))


def mix_samples(x, weights):
  """(B*n, ...) -> (B, ...): the weighted sum of each group of n consecutive samples."""
  b, n = weights.shape
  grouped = x.reshape((b, n) + x.shape[1:])
  w = weights.astype(x.dtype).reshape((b, n) + (1,) * (x.ndim - 1))
  return jnp.sum(grouped * w, axis=1)


def gate(attribution, detection):
  """a' = a * [P(real), P(fake) x (K-1)]: the detection head gates the attribution logits."""
  p = nnx.softmax(detection, axis=-1)
  k = attribution.shape[-1]
  return attribution * jnp.concatenate([p[:, :1], jnp.repeat(p[:, 1:2], k - 1, axis=-1)], -1)


class RepMix(nnx.Module):
  """Image -> {attribution (gated logits), detection logits, embedding}."""

  def __init__(
      self,
      backbone: str,
      stem: str,
      num_classes: int,
      image_size: int,
      *,
      rngs: nnx.Rngs,
      embed_dim: int = 256,
      mix_level: int = DEFAULT_MIX_LEVEL,
      gating: bool = True,
      dtype=jnp.float32,
  ):
    if mix_level not in MIX_LEVELS:
      raise ValueError(f"mix_level must be one of {MIX_LEVELS}, got {mix_level}")
    if num_classes < 2:
      raise ValueError(f"num_classes counts real and at least one source, got {num_classes}")
    spec = BACKBONES[backbone]
    self.num_classes, self.image_size = num_classes, image_size
    self.mix_level, self.gating = mix_level, gating
    if stem == "light":
      self.stem = LightStem(spec.stem_width, rngs=rngs, dtype=dtype)
    else:
      self.stem = resnet.Stem(spec.stem_width, rngs=rngs, dtype=dtype)
    ch, stages = spec.stem_width, []
    for s in range(len(spec.stage_sizes)):
      blocks, ch = resnet.make_blocks(spec, ch, s, rngs=rngs, dtype=dtype)
      stages.append(blocks)
    self.stages = nnx.List(stages)
    self.embed = dense(ch, embed_dim, rngs=rngs)
    self.attribution = dense(embed_dim, num_classes, rngs=rngs, out_axis=HEAD)
    self.detection = dense(embed_dim, 2, rngs=rngs, out_axis=HEAD)

  def _mix(self, level: int, x, mix):
    return mix_samples(x, mix) if mix is not None and level == self.mix_level else x

  def __call__(self, images, *, train: bool = False, mix=None):
    """`images` [B*n, H, W, 3] in [0, 1]; `mix` [B, n] weights (None: no mixing)."""
    x = self._mix(0, (images.astype(jnp.float32) - 0.5) / 0.5, mix)
    x = self._mix(1, self.stem(x, train=train), mix)
    for level, blocks in enumerate(self.stages, start=2):
      for block in blocks:
        x = block(x, train=train)
      x = self._mix(level, x, mix)
    e = self._mix(6, self.embed(jnp.mean(x.astype(jnp.float32), axis=(1, 2))), mix)
    a, d = self.attribution(e), self.detection(e)
    return {"attribution": gate(a, d) if self.gating else a, "detection": d, "embedding": e}


def create(variant: str = "tiny", *, rngs: nnx.Rngs, **overrides) -> RepMix:
  """Build a variant from VARIANTS; keyword overrides (mix_level, gating, ...) replace entries."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown repmix variant {variant!r}; choose from {sorted(VARIANTS)}")
  return RepMix(**{**VARIANTS[variant], **overrides}, rngs=rngs)
