"""TruFor: forgery localization, confidence and detection (specs/trufor.md, sections 1-5).

  x = uint8 RGB / 256 (NHWC) --dncnn--> noiseprint [B, H, W, 1], tiled to 3 channels
  (ImageNet-normalised x, noiseprint) --backbone (dual MiT + FRM/FFM)--> 4 fused maps
  fused maps --decode_head (K=2)--> loc logits, --decode_head_conf (K=1)--> conf logit,
      both at ceil(H/4) and bilinearly upsampled to H x W
  (loc, conf) at H x W --confidence-weighted pooling--> 8 statistics --detection--> det logit

For a user: map = softmax(loc_logits)[..., 1], conf = sigmoid(conf_logits[..., 0]),
score = sigmoid(det_logit). Any H x W works; nothing is resized on the way in.

Training phases freeze parts: `train` names the parts that run in training mode
(BatchNorm batch statistics and running-average updates, dropout, stochastic
depth); every other part runs in eval mode. Dropout needs `rngs` (an
`nnx.Rngs` with a `dropout` stream, or a key) when a part that has it trains.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from provjax.models import cmx, mit
from provjax.models import noiseprint as noiseprint_lib
from provjax.models.layers.conv import HEAD
from provjax.models.layers.preprocess import imagenet_normalize

VARIANTS = {
    # Private micro variant for CPU training and tests.
    "tiny": dict(
        embed_dims=(16, 32, 64, 128),
        num_heads=(1, 1, 2, 4),
        depths=(1, 1, 1, 1),
        sr_ratios=(8, 4, 2, 1),
        decoder_dim=64,
        noiseprint="tiny",
    ),
    # The paper's model: MiT-B2 dual encoder, decoder dim 512, full Noiseprint++.
    "b2": dict(
        embed_dims=(64, 128, 320, 512),
        num_heads=(1, 2, 5, 8),
        depths=(3, 4, 6, 3),
        sr_ratios=(8, 4, 2, 1),
        decoder_dim=512,
        noiseprint="full",
    ),
}

INPUT_SCALE = 256.0  # uint8 / 256, not / 255: what Noiseprint++ was trained with


def preprocess(images_uint8) -> jax.Array:
  """uint8 RGB images (any leading shape, channels last) -> float32 / 256."""
  return jnp.asarray(images_uint8, jnp.float32) / INPUT_SCALE


def resize_bilinear(x, size: tuple[int, int]):
  """NHWC bilinear resize; equals PyTorch's align_corners=False when upsampling."""
  if tuple(x.shape[1:3]) == tuple(size):
    return x
  return jax.image.resize(x, (x.shape[0], *size, x.shape[-1]), method="linear")


# PyTorch's default Linear/Conv init (kaiming_uniform, a = sqrt(5)), kept where the
# official model does not re-initialise: the decoder projections, the confidence
# head and the detector.
_TORCH_DEFAULT_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# The official re-initialisation of the localization head's convs.
_KAIMING_FAN_IN = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")


def _head_conv(in_ch: int, out_ch: int, init, *, rngs: nnx.Rngs, out_axis: str = "conv_out"):
  """1x1 conv of the decoder heads."""
  return nnx.Conv(
      in_ch,
      out_ch,
      (1, 1),
      kernel_init=nnx.with_partitioning(init, (None, None, "conv_in", out_axis)),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros, (out_axis,)),
      rngs=rngs,
  )


class MLPDecoder(nnx.Module):
  """SegFormer all-MLP head: per-scale Linear to `dim`, upsample to the 1/4 map, fuse, predict K.

  `reinit` selects the official localization head's treatment (convs
  kaiming_normal fan_in, BN eps 1e-3 = BN_EPS); without it the head keeps
  PyTorch's defaults (kaiming_uniform a = sqrt(5), BN eps 1e-5), as the
  official confidence head does: its BN eps of 1e-5 is confirmed by the
  reference outputs (tests/test_trufor_convert.py), from which its untouched
  init is inferred.
  """

  def __init__(
      self, in_dims: Sequence[int], dim: int, classes: int, *, reinit: bool, rngs: nnx.Rngs
  ):
    conv_init = _KAIMING_FAN_IN if reinit else _TORCH_DEFAULT_INIT
    for i, c in enumerate(in_dims, start=1):
      setattr(self, f"linear_c{i}", mit.linear(c, dim, kernel_init=_TORCH_DEFAULT_INIT, rngs=rngs))
    self.linear_fuse = _head_conv(len(in_dims) * dim, dim, conv_init, rngs=rngs)
    self.fuse_norm = nnx.BatchNorm(
        dim,
        momentum=0.9,
        epsilon=1e-3 if reinit else 1e-5,
        scale_init=nnx.with_partitioning(nnx.initializers.ones, ("conv_out",)),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("conv_out",)),
        rngs=rngs,
    )
    self.dropout = nnx.Dropout(0.1, broadcast_dims=(1, 2))  # Dropout2d: whole channels
    self.linear_pred = _head_conv(dim, classes, conv_init, out_axis=HEAD, rngs=rngs)
    self.num_scales = len(in_dims)

  def __call__(self, feats, *, train: bool = False, rngs: nnx.Rngs | None = None):
    size = feats[0].shape[1:3]
    # Concatenated deepest first: [c4, c3, c2, c1].
    ups = [
        resize_bilinear(getattr(self, f"linear_c{i + 1}")(feats[i]), size)
        for i in reversed(range(self.num_scales))
    ]
    x = self.linear_fuse(jnp.concatenate(ups, axis=-1))
    x = nnx.relu(self.fuse_norm(x, use_running_average=not train))
    x = self.dropout(x, deterministic=not train, rngs=rngs)
    return self.linear_pred(x)


def weighted_statistics(x, log_w):
  """[soft-min, soft-max, mean, mean square] of x [B, P] under weights softmax(log_w) [B, P]."""
  log_w = jax.nn.log_softmax(log_w, axis=-1)
  soft_min = -jax.nn.logsumexp(log_w - x, axis=-1)
  soft_max = jax.nn.logsumexp(log_w + x, axis=-1)
  w = jnp.exp(log_w)
  return jnp.stack([soft_min, soft_max, (w * x).sum(-1), (w * x * x).sum(-1)], axis=-1)


def uniform_statistics(x):
  """`weighted_statistics` under equal weights, written out: a constant all-zero
  `log_w` makes XLA constant-fold a log_softmax over every pixel at compile time."""
  log_n = jnp.log(jnp.asarray(x.shape[-1], x.dtype))
  soft_min = log_n - jax.nn.logsumexp(-x, axis=-1)
  soft_max = jax.nn.logsumexp(x, axis=-1) - log_n
  return jnp.stack([soft_min, soft_max, x.mean(-1), (x * x).mean(-1)], axis=-1)


def confidence_pooling(loc_logits, conf_logits):
  """The 8 detector inputs, over all H x W pixels.

  Statistics of the conf logit under uniform weights, then of the loc logit
  difference (forged - pristine) under weights proportional to sigmoid(conf).
  """
  b = conf_logits.shape[0]
  conf = conf_logits.reshape(b, -1)
  diff = (loc_logits[..., 1] - loc_logits[..., 0]).reshape(b, -1)
  f1 = uniform_statistics(conf)
  f2 = weighted_statistics(diff, jax.nn.log_sigmoid(conf))
  return jnp.concatenate([f1, f2], axis=-1)


class DetHead(nnx.Module):
  """Linear(8, 128) -> ReLU -> Dropout(0.5) -> Linear(128, 1)."""

  def __init__(self, in_dim: int = 8, hidden: int = 128, *, rngs: nnx.Rngs):
    self.fc1 = mit.linear(in_dim, hidden, kernel_init=_TORCH_DEFAULT_INIT, rngs=rngs)
    self.dropout = nnx.Dropout(0.5)
    self.fc2 = nnx.Linear(
        hidden,
        1,
        kernel_init=nnx.with_partitioning(_TORCH_DEFAULT_INIT, ("embed_in", HEAD)),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros, (HEAD,)),
        rngs=rngs,
    )

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    x = self.dropout(nnx.relu(self.fc1(x)), deterministic=not train, rngs=rngs)
    return self.fc2(x)[:, 0]


def _as_rngs(rngs):
  """Accept an nnx.Rngs, a PRNG key or None."""
  if rngs is None or isinstance(rngs, nnx.Rngs):
    return rngs
  return nnx.Rngs(dropout=rngs)


class TruFor(nnx.Module):
  """Noiseprint++ + dual MiT encoder + localization/confidence decoders + detector.

  Args:
    embed_dims, num_heads, depths, sr_ratios: the MiT configuration per stage.
    decoder_dim: width of both MLP decoders (512 in the paper).
    noiseprint: `noiseprint.VARIANTS` key of the extractor.
    mlp_ratio: Mix-FFN expansion.
    drop_path: final stochastic-depth rate of the encoder (training only).
  """

  PARTS = ("dncnn", "backbone", "decode_head", "decode_head_conf", "detection")

  def __init__(
      self,
      embed_dims: Sequence[int],
      num_heads: Sequence[int],
      depths: Sequence[int],
      sr_ratios: Sequence[int],
      decoder_dim: int,
      noiseprint: str,
      *,
      mlp_ratio: int = 4,
      drop_path: float = 0.1,
      rngs: nnx.Rngs,
  ):
    self.dncnn = noiseprint_lib.create(noiseprint, rngs=rngs)
    self.backbone = cmx.DualMiT(
        embed_dims,
        num_heads,
        depths,
        sr_ratios,
        mlp_ratio=mlp_ratio,
        drop_path=drop_path,
        rngs=rngs,
    )
    self.decode_head = MLPDecoder(embed_dims, decoder_dim, 2, reinit=True, rngs=rngs)
    self.decode_head_conf = MLPDecoder(embed_dims, decoder_dim, 1, reinit=False, rngs=rngs)
    self.detection = DetHead(rngs=rngs)

  @classmethod
  def train_parts(cls, train: bool | Collection[str]) -> frozenset[str]:
    """`True`/`False` (every part / none) or a collection of part names -> a set of names."""
    if isinstance(train, bool):
      return frozenset(cls.PARTS if train else ())
    if isinstance(train, str):
      train = (train,)
    unknown = sorted(set(train) - set(cls.PARTS))
    if unknown:
      raise ValueError(f"unknown TruFor parts {unknown}; parts are {list(cls.PARTS)}")
    return frozenset(train)

  def encode(self, x, *, train: bool | Collection[str] = False, rngs=None):
    """x [B, H, W, 3] (uint8 / 256) -> (noiseprint [B, H, W, 1], 4 fused NHWC maps)."""
    parts, rngs = self.train_parts(train), _as_rngs(rngs)
    noise = self.dncnn(x, train="dncnn" in parts)
    modal = jnp.tile(noise, (1, 1, 1, 3))
    feats = self.backbone(imagenet_normalize(x), modal, train="backbone" in parts, rngs=rngs)
    return noise, feats

  def localize(self, feats, size, *, train: bool | Collection[str] = False, rngs=None):
    """Fused maps -> localization logits [B, H, W, 2] at `size` = (H, W)."""
    on = "decode_head" in self.train_parts(train)
    return resize_bilinear(self.decode_head(feats, train=on, rngs=_as_rngs(rngs)), size)

  def confidence(self, feats, size, *, train: bool | Collection[str] = False, rngs=None):
    """Fused maps -> confidence logits [B, H, W, 1] at `size` = (H, W)."""
    on = "decode_head_conf" in self.train_parts(train)
    return resize_bilinear(self.decode_head_conf(feats, train=on, rngs=_as_rngs(rngs)), size)

  def detect(self, loc_logits, conf_logits, *, train: bool | Collection[str] = False, rngs=None):
    """Full-resolution loc [B, H, W, 2] and conf [B, H, W, 1] logits -> det logit [B]."""
    on = "detection" in self.train_parts(train)
    feats = confidence_pooling(loc_logits, conf_logits)
    return self.detection(feats, train=on, rngs=_as_rngs(rngs))

  def __call__(self, x, *, train: bool | Collection[str] = (), rngs=None) -> dict:
    """x [B, H, W, 3] (uint8 / 256) -> dict(loc_logits, conf_logits, det_logit, noiseprint)."""
    rngs = _as_rngs(rngs)
    size = x.shape[1:3]
    noise, feats = self.encode(x, train=train, rngs=rngs)
    loc = self.localize(feats, size, train=train, rngs=rngs)
    conf = self.confidence(feats, size, train=train, rngs=rngs)
    det = self.detect(loc, conf, train=train, rngs=rngs)
    return dict(loc_logits=loc, conf_logits=conf, det_logit=det, noiseprint=noise)


def create(variant: str = "tiny", *, rngs: nnx.Rngs, **overrides) -> TruFor:
  """Build a variant from VARIANTS; keyword overrides replace table entries."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown trufor variant {variant!r}; choose from {sorted(VARIANTS)}")
  return TruFor(**{**VARIANTS[variant], **overrides}, rngs=rngs)


def count_values(model: nnx.Module) -> int:
  """Parameters plus BatchNorm statistics (what the official state dict holds, less the
  num_batches_tracked counters)."""
  state = nnx.state(model, nnx.Param, nnx.BatchStat)
  return int(sum(np.prod(v.shape) for v in jax.tree.leaves(state)))
