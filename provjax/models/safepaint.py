"""The SafePaint inpainting generator (Chen et al., ACM MM 2024; specs/safepaint.md, sections 1, 6).

    out = model(images, masks)   # images [B, H, W, 3] in [0, 1]; masks [B, H, W, 1], 1 = hole

The official `InpaintGenerator` (hnucdy/SafePaint networks.py), NHWC:
  coarse_generator  cat(I (1 - m) + m, m) -> encoder (7x7, two 4x4/2), dilated ResBlocks,
                    decoder (two ConvT 4x4/2, 7x7) -> O1;  C1 = O1 m + I (1 - m)
  extractor         the domain (style) encoder E(image, region): five 3x3/2 partial convs,
                    mean over the image, 1x1 conv -> a 16-d code
  fine_generator    cat(C1, m, z_b broadcast) -> the same encoder and ResBlocks, then an RWSA
                    block before each ConvT and before the output conv -> O2;  C2 = O2 m + I (1 - m)
and the codes z_b = E(I, 1 - m), z_gt = E(I, m), z_c = E(C1, m), z_r = E(C2, m).

InstanceNorms have no affine parameters (eps 1e-5, biased variance); BatchNorms
(RWSA, extractor) use running statistics unless `train`. Module and attribute
names follow the official ones so that `provjax.inpainting.convert` maps them
with a few rules. One deviation: z_b is broadcast to the input's own H x W (the
official hard-codes 256), so any H, W that are multiples of MULTIPLE and at
least MIN_SIZE run; at 256 x 256 the two agree.
"""

from __future__ import annotations

from flax import nnx
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from provjax.models.layers.conv import HEAD, dense
from provjax.models.layers.partial_conv import PartialConv

STYLE_DIM = 16
# Two stride-2 convs down, two stride-2 ConvTs up: sizes must divide by 4.
MULTIPLE = 4
STYLE_LAYERS = 5
# The smallest side that five valid 3x3 stride-2 convs (s -> (s - 3) // 2 + 1) leave a pixel of.
MIN_SIZE = 2 ** (STYLE_LAYERS + 1) - 1
IN_EPS = 1e-5
BN_EPS = 1e-5
ATTENTION_REDUCTION = 16
GAUSSIAN_SIZE, GAUSSIAN_SIGMA = 5, 1.0

VARIANTS = {
    # A quarter of the width, two ResBlocks: a step of batch 4 at 128 px costs about 2 s on
    # 2 CPU cores (the half-width, four-block model cost about 9 s).
    "tiny": dict(width=16, blocks=2, style_width=16),
    # The paper's (specs/safepaint_state_dict.tsv).
    "full": dict(width=64, blocks=8, style_width=64),
}

# BaseNetwork.init_weights: every conv / ConvT / linear weight N(0, 0.02), bias 0.
_INIT = nnx.initializers.normal(0.02)


def _bn_scale_init(key, shape, dtype=jnp.float32):
  """BatchNorm gamma ~ N(1, 0.02), as the official init."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


class Buffer(nnx.Variable):
  """A fixed tensor that travels with the weights and is never trained (a PyTorch buffer)."""


def _conv(
    in_ch,
    out_ch,
    kernel,
    *,
    rngs,
    strides=1,
    padding=0,
    dilation=1,
    use_bias=True,
    out_axis="conv_out",
) -> nnx.Conv:
  """Conv2d with zero padding `padding` (0: valid), the official init, annotated."""
  return nnx.Conv(
      in_ch,
      out_ch,
      (kernel, kernel),
      strides=(strides, strides),
      padding=((padding, padding), (padding, padding)),
      kernel_dilation=(dilation, dilation),
      use_bias=use_bias,
      kernel_init=nnx.with_partitioning(_INIT, (None, None, "conv_in", out_axis)),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros, (out_axis,)),
      rngs=rngs,
  )


def _up(in_ch, out_ch, *, rngs) -> nnx.ConvTranspose:
  """ConvTranspose2d(k 4, stride 2, padding 1) exactly as PyTorch's: twice the input's size.

  With `transpose_kernel` the kernel is (kh, kw, out, in), the PyTorch weight
  (in, out, kh, kw) in the conv layout, and the op is the gradient of that conv;
  PyTorch's padding p is k - 1 - p = 2 on each side of the stride-dilated input.
  """
  return nnx.ConvTranspose(
      in_ch,
      out_ch,
      (4, 4),
      strides=(2, 2),
      padding=((2, 2), (2, 2)),
      transpose_kernel=True,
      kernel_init=nnx.with_partitioning(_INIT, (None, None, "conv_out", "conv_in")),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("conv_out",)),
      rngs=rngs,
  )


def _bn(ch, *, rngs) -> nnx.BatchNorm:
  """BatchNorm2d: PyTorch momentum 0.1 (0.9 here), eps 1e-5, gamma ~ N(1, 0.02)."""
  return nnx.BatchNorm(
      ch,
      momentum=0.9,
      epsilon=BN_EPS,
      use_fast_variance=False,
      scale_init=nnx.with_partitioning(_bn_scale_init, ("conv_out",)),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("conv_out",)),
      rngs=rngs,
  )


def reflect_pad(x, pad: int):
  """ReflectionPad2d(pad) of [B, H, W, C] (the edge pixel is not repeated)."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def instance_norm(x, eps: float = IN_EPS):
  """InstanceNorm2d without affine parameters: per image and channel over H, W, biased variance."""
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
  return (x - mean) * lax.rsqrt(var + eps)


def to_unit(x):
  """(tanh(x) + 1) / 2: the generators' output range [0, 1]."""
  return (jnp.tanh(x) + 1.0) / 2.0


def merge(images, masks, output):
  """The output inside the hole, the input outside it: output * m + images * (1 - m)."""
  return output * masks + images * (1.0 - masks)


def to_input(image, hole) -> tuple[jax.Array, jax.Array]:
  """uint8 RGB [H, W, 3], bool hole [H, W] -> (images / 255 [1, H, W, 3], masks [1, H, W, 1])."""
  images = jnp.asarray(image, jnp.float32)[None] / 255.0
  masks = jnp.asarray(hole, jnp.float32)[None, ..., None]
  return images, masks


def check_size(height: int, width: int) -> None:
  """Raise ValueError unless H and W are multiples of MULTIPLE and at least MIN_SIZE."""
  if height % MULTIPLE or width % MULTIPLE or min(height, width) < MIN_SIZE:
    raise ValueError(
        f"SafePaint needs H and W that are multiples of {MULTIPLE} and at least {MIN_SIZE}, "
        f"got {height} x {width}"
    )


def smoothing_kernel(size: int = GAUSSIAN_SIZE, sigma: float = GAUSSIAN_SIGMA) -> np.ndarray:
  """The official GaussianSmoothing kernel [size, size], summing to 1.

  Its exponent is -((x - mean) / (2 sigma))^2, not the textbook -(x - mean)^2 / (2 sigma^2):
  a wider bell than sigma says (the constant factor cancels in the normalisation).
  """
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2
  g = np.exp(-((x / (2 * sigma)) ** 2))
  kernel = np.outer(g, g)
  return (kernel / kernel.sum()).astype(np.float32)


class ResnetBlock(nnx.Module):
  """x + IN(conv3x3(pad1(ReLU(IN(conv3x3 dilated(pad_d(x))))))), reflect padding, no final ReLU."""

  def __init__(self, dim: int, dilation: int, *, rngs: nnx.Rngs):
    self.dilation = dilation
    self.conv1 = _conv(dim, dim, 3, dilation=dilation, rngs=rngs)
    self.conv2 = _conv(dim, dim, 3, rngs=rngs)

  def __call__(self, x):
    y = nnx.relu(instance_norm(self.conv1(reflect_pad(x, self.dilation))))
    return x + instance_norm(self.conv2(reflect_pad(y, 1)))


class Trunk(nnx.Module):
  """The encoder (pad3 conv7x7, two conv4x4/2, each IN + ReLU) and dilated ResBlocks of a stage."""

  def __init__(self, in_ch: int, width: int, blocks: int, *, rngs: nnx.Rngs):
    self.encoder = nnx.List(
        [
            _conv(in_ch, width, 7, rngs=rngs),
            _conv(width, 2 * width, 4, strides=2, padding=1, rngs=rngs),
            _conv(2 * width, 4 * width, 4, strides=2, padding=1, rngs=rngs),
        ]
    )
    self.middle = nnx.List([ResnetBlock(4 * width, 2, rngs=rngs) for _ in range(blocks)])

  def encode(self, x):
    x = reflect_pad(x, 3)
    for conv in self.encoder:
      x = nnx.relu(instance_norm(conv(x)))
    for block in self.middle:
      x = block(x)
    return x


class CoarseGenerator(Trunk):
  """Stage 1: cat(I (1 - m) + m, m) [B, H, W, 4] -> O1 [B, H, W, 3] in [0, 1]."""

  def __init__(self, width: int, blocks: int, *, rngs: nnx.Rngs):
    super().__init__(4, width, blocks, rngs=rngs)
    self.decoder = nnx.List(
        [
            _up(4 * width, 2 * width, rngs=rngs),
            _up(2 * width, width, rngs=rngs),
            _conv(width, 3, 7, out_axis=HEAD, rngs=rngs),
        ]
    )

  def __call__(self, x):
    x = self.encode(x)
    for up in self.decoder[:2]:
      x = nnx.relu(instance_norm(up(x)))
    return to_unit(self.decoder[2](reflect_pad(x, 3)))


class GlobalAttention(nnx.Module):
  """Channel gate x * sigmoid(fc2(ReLU(fc1(cat(mean_hw x, max_hw x))))), fc1: 2C -> C / 16."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    hidden = channels // ATTENTION_REDUCTION
    self.fc1 = dense(2 * channels, hidden, kernel_init=_INIT, out_axis=HEAD, rngs=rngs)
    self.fc2 = dense(hidden, channels, kernel_init=_INIT, rngs=rngs)

  def __call__(self, x):
    pooled = jnp.concatenate([jnp.mean(x, axis=(1, 2)), jnp.max(x, axis=(1, 2))], axis=-1)
    gate = nnx.sigmoid(self.fc2(nnx.relu(self.fc1(pooled))))
    return x * gate[:, None, None, :]


class BasicLearningBlock(nnx.Module):
  """ELU(BN(conv3x3 2C -> C(ELU(BN(conv3x3 C -> 2C(x)))))), convs without bias, zero padding 1."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.rconv1 = _conv(channels, 2 * channels, 3, padding=1, use_bias=False, rngs=rngs)
    self.rbn1 = _bn(2 * channels, rngs=rngs)
    self.rconv2 = _conv(2 * channels, channels, 3, padding=1, use_bias=False, rngs=rngs)
    self.rbn2 = _bn(channels, rngs=rngs)

  def __call__(self, x, *, train: bool):
    x = nnx.elu(self.rbn1(self.rconv1(x), use_running_average=not train))
    return nnx.elu(self.rbn2(self.rconv2(x), use_running_average=not train))


class GaussianSmoothing(nnx.Module):
  """Single-channel 5x5 smoothing after reflect padding 2; the kernel is a Buffer (in the state
  dict as `gaussianMask.weight`, so converted weights carry whatever kernel they were trained with).
  """

  def __init__(self, size: int = GAUSSIAN_SIZE, sigma: float = GAUSSIAN_SIGMA):
    self.kernel = Buffer(jnp.asarray(smoothing_kernel(size, sigma))[:, :, None, None])

  def __call__(self, mask):
    kernel = self.kernel[...]
    return lax.conv_general_dilated(
        reflect_pad(mask, kernel.shape[0] // 2),
        kernel,
        (1, 1),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


class RWSA(nnx.Module):
  """Region-wise separated attention (the official `RASC`) on features [B, h, w, C].

  out = fuser(cat(GA_bg(x) (1 - m)~ + (BLB(GA_sp(x)) + GA_mix(x)) m~, x)), where m~ and
  (1 - m)~ are the hole mask and its complement at the feature size, smoothed.
  """

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.connection = BasicLearningBlock(channels, rngs=rngs)
    self.background_attention = GlobalAttention(channels, rngs=rngs)
    self.mixed_attention = GlobalAttention(channels, rngs=rngs)
    self.spliced_attention = GlobalAttention(channels, rngs=rngs)
    self.gaussian_mask = GaussianSmoothing()
    self.fuser = _conv(2 * channels, channels, 1, rngs=rngs)

  def region_masks(self, masks, height: int):
    """(m~, (1 - m)~) at `height`: round(avg_pool(m, 2, stride M // h)), then smoothed.

    As the official, the stride comes from the heights (its `w` is NCHW's dim 2);
    torch.round and jnp.round both round half to even, so a 2x2 window half in
    the hole counts as outside.
    """
    if masks.shape[1] != height:
      stride = masks.shape[1] // height
      masks = jnp.round(nnx.avg_pool(masks, (2, 2), strides=(stride, stride)))
    return self.gaussian_mask(masks), self.gaussian_mask(1.0 - masks)

  def __call__(self, x, masks, *, train: bool = False):
    hole, background = self.region_masks(masks, x.shape[1])
    kept = self.background_attention(x) * background
    spliced = self.connection(self.spliced_attention(x), train=train) + self.mixed_attention(x)
    return self.fuser(jnp.concatenate([kept + spliced * hole, x], axis=-1))


class FineGenerator(Trunk):
  """Stage 2: cat(C1, m, z_b map) [B, H, W, 20] and masks -> O2 [B, H, W, 3] in [0, 1]."""

  def __init__(self, width: int, blocks: int, *, rngs: nnx.Rngs):
    super().__init__(3 + 1 + STYLE_DIM, width, blocks, rngs=rngs)
    self.att1 = RWSA(4 * width, rngs=rngs)
    self.deconv1 = _up(4 * width, 2 * width, rngs=rngs)
    self.att2 = RWSA(2 * width, rngs=rngs)
    self.deconv2 = _up(2 * width, width, rngs=rngs)
    self.att3 = RWSA(width, rngs=rngs)
    # A plain 7x7 conv, under the official's name.
    self.deconv3 = _conv(width, 3, 7, out_axis=HEAD, rngs=rngs)

  def __call__(self, x, masks, *, train: bool = False):
    x = self.encode(x)
    x = nnx.relu(instance_norm(self.deconv1(self.att1(x, masks, train=train))))
    x = nnx.relu(instance_norm(self.deconv2(self.att2(x, masks, train=train))))
    x = self.att3(x, masks, train=train)
    return to_unit(self.deconv3(reflect_pad(x, 3)))


class StyleEncoder(nnx.Module):
  """E(image, region): the domain code [B, 16] of the pixels where `region` [B, H, W, 1] is 1.

  Partial convs 3x3 / 2, valid: 3 -> w (bias) ReLU; w -> 2w -> 4w -> 8w (no bias; BN, ReLU);
  8w -> 8w (no bias, no norm); mean over H, W (zero where the updated region is empty,
  as AdaptiveAvgPool2d(1)); 1x1 conv -> 16.
  """

  def __init__(self, width: int, *, rngs: nnx.Rngs, style_dim: int = STYLE_DIM):
    conv = lambda i, o, bias: PartialConv(i, o, 3, strides=2, use_bias=bias, rngs=rngs)
    self.conv1f = conv(3, width, True)
    self.conv2f = conv(width, 2 * width, False)
    self.norm2f = _bn(2 * width, rngs=rngs)
    self.conv3f = conv(2 * width, 4 * width, False)
    self.norm3f = _bn(4 * width, rngs=rngs)
    self.conv4f = conv(4 * width, 8 * width, False)
    self.norm4f = _bn(8 * width, rngs=rngs)
    self.conv5f = conv(8 * width, 8 * width, False)
    self.convs = _conv(8 * width, style_dim, 1, out_axis=HEAD, rngs=rngs)

  def __call__(self, x, region, *, train: bool = False):
    x, region = self.conv1f(x, region)
    x = nnx.relu(x)
    for conv, norm in (
        (self.conv2f, self.norm2f),
        (self.conv3f, self.norm3f),
        (self.conv4f, self.norm4f),
    ):
      x, region = conv(x, region)
      x = nnx.relu(norm(x, use_running_average=not train))
    x, _ = self.conv5f(x, region)
    return self.convs(jnp.mean(x, axis=(1, 2), keepdims=True))[:, 0, 0]


class SafePaint(nnx.Module):
  """(images, masks) -> {o1, o2, c1, c2 [B, H, W, 3]; z_b, z_gt, z_c, z_r [B, 16]}."""

  def __init__(self, width: int, blocks: int, style_width: int, *, rngs: nnx.Rngs):
    self.coarse_generator = CoarseGenerator(width, blocks, rngs=rngs)
    self.fine_generator = FineGenerator(width, blocks, rngs=rngs)
    self.extractor = StyleEncoder(style_width, rngs=rngs)

  def __call__(self, images, masks, *, train: bool = False) -> dict:
    batch, height, width, _ = images.shape
    check_size(height, width)
    if masks.shape != (batch, height, width, 1):
      raise ValueError(
          f"masks must be {(batch, height, width, 1)} for these images, got {masks.shape}"
      )
    masks = masks.astype(images.dtype)
    o1 = self.coarse_generator(jnp.concatenate([images * (1.0 - masks) + masks, masks], axis=-1))
    c1 = merge(images, masks, o1)
    z_b = self.extractor(images, 1.0 - masks, train=train)
    z_map = jnp.broadcast_to(z_b[:, None, None, :], (batch, height, width, z_b.shape[-1]))
    o2 = self.fine_generator(jnp.concatenate([c1, masks, z_map], axis=-1), masks, train=train)
    c2 = merge(images, masks, o2)
    return {
        "o1": o1,
        "o2": o2,
        "c1": c1,
        "c2": c2,
        "z_b": z_b,
        "z_gt": self.extractor(images, masks, train=train),
        "z_c": self.extractor(c1, masks, train=train),
        "z_r": self.extractor(c2, masks, train=train),
    }


def create(variant: str = "tiny", *, rngs: nnx.Rngs, **overrides) -> SafePaint:
  """Build a variant from VARIANTS; overrides (width, blocks, style_width) replace entries."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown safepaint variant {variant!r}; choose from {sorted(VARIANTS)}")
  return SafePaint(**{**VARIANTS[variant], **overrides}, rngs=rngs)
