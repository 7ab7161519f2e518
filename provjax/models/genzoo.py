"""The generator zoo: small encoder-decoders whose only difference is the
decoder's upsampling path (specs/repmix.md, section 12).

Every generator shares one encoder (three stride-2 convs: 64 px -> an 8x8x32
latent) and a three-stage decoder back to full size. What leaves a
fingerprint is how each decoder stage doubles the resolution:

    tconv         transposed conv, kernel 4, stride 2 (DCGAN checkerboard)
    nearest       nearest-neighbour upsampling + conv3x3
    bilinear      bilinear upsampling + conv3x3
    pixelshuffle  conv3x3 to 4x the channels + depth-to-space (sub-pixel conv)
    vae           a VAE: z ~ N(mu, sigma) from the encoder, bilinear + conv3x3
                  stages with GroupNorm and SiLU (another normaliser and
                  activation), trained with a KL term

Frank et al. (ICML 2020) trace GAN spectra to exactly this upsampling step;
content is shared by every class of the zoo (each generator reconstructs the
same kinds of images), so an attributor must learn the path, not the scene.
Images are NHWC in [0, 1] in and out (sigmoid output).
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp

from provjax.models.layers.conv import conv

VARIANTS = {
    "tconv": dict(upsample="tconv"),
    "nearest": dict(upsample="nearest"),
    "bilinear": dict(upsample="bilinear"),
    "pixelshuffle": dict(upsample="pixelshuffle"),
    "vae": dict(upsample="bilinear", variational=True, norm="group"),
}
UPSAMPLERS = ("tconv", "nearest", "bilinear", "pixelshuffle")


def _conv_transpose(in_ch: int, out_ch: int, *, rngs: nnx.Rngs) -> nnx.ConvTranspose:
  return nnx.ConvTranspose(
      in_ch,
      out_ch,
      (4, 4),
      strides=(2, 2),
      padding="SAME",
      kernel_init=nnx.with_partitioning(
          nnx.initializers.lecun_normal(), (None, None, "conv_in", "conv_out")
      ),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("conv_out",)),
      rngs=rngs,
  )


def depth_to_space(x, r: int = 2):
  """[B, H, W, C*r*r] -> [B, H*r, W*r, C] (PyTorch's PixelShuffle channel order)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, c // (r * r), r, r)
  return x.transpose(0, 1, 4, 2, 5, 3).reshape(b, h * r, w * r, c // (r * r))


class UpStage(nnx.Module):
  """Doubles the resolution the way `upsample` says, then norm + activation."""

  def __init__(self, in_ch: int, out_ch: int, upsample: str, norm: str, *, rngs: nnx.Rngs):
    if upsample not in UPSAMPLERS:
      raise ValueError(f"unknown upsampling {upsample!r}; choose from {UPSAMPLERS}")
    self.upsample = upsample
    if upsample == "tconv":
      self.conv = _conv_transpose(in_ch, out_ch, rngs=rngs)
    elif upsample == "pixelshuffle":
      self.conv = conv(in_ch, 4 * out_ch, 3, rngs=rngs, use_bias=True)
    else:
      self.conv = conv(in_ch, out_ch, 3, rngs=rngs, use_bias=True)
    self.norm = nnx.GroupNorm(out_ch, num_groups=8, rngs=rngs) if norm == "group" else None

  def __call__(self, x):
    if self.upsample in ("nearest", "bilinear"):
      b, h, w, c = x.shape
      x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method=self.upsample)
    x = self.conv(x)
    if self.upsample == "pixelshuffle":
      x = depth_to_space(x)
    if self.norm is not None:
      return nnx.silu(self.norm(x))
    return nnx.relu(x)


class Generator(nnx.Module):
  """Image -> 8x8 latent -> image; `__call__` returns (reconstruction, KL per image)."""

  def __init__(
      self,
      upsample: str,
      *,
      rngs: nnx.Rngs,
      variational: bool = False,
      norm: str = "none",
      width: int = 64,
      latent: int = 32,
  ):
    self.variational = variational
    chans = [(3, width // 4), (width // 4, width // 2), (width // 2, width)]
    self.encoder = nnx.List([conv(i, o, 3, strides=2, rngs=rngs, use_bias=True) for i, o in chans])
    self.to_latent = conv(width, 2 * latent if variational else latent, 1, rngs=rngs, use_bias=True)
    widths = [(latent, width), (width, width // 2), (width // 2, width // 4)]
    self.decoder = nnx.List([UpStage(i, o, upsample, norm, rngs=rngs) for i, o in widths])
    self.to_rgb = conv(width // 4, 3, 3, rngs=rngs, use_bias=True)

  def encode(self, images):
    x = images.astype(jnp.float32) * 2.0 - 1.0
    for c in self.encoder:
      x = nnx.relu(c(x))
    return self.to_latent(x)

  def decode(self, z):
    for stage in self.decoder:
      z = stage(z)
    return nnx.sigmoid(self.to_rgb(z))

  def __call__(self, images, *, key=None):
    """`images` [B, H, W, 3] in [0, 1], H and W multiples of 8. A VAE samples z when given `key`
    (its mean otherwise)."""
    h = self.encode(images)
    if not self.variational:
      return self.decode(h), jnp.zeros(h.shape[0])
    mu, logvar = jnp.split(h, 2, axis=-1)
    logvar = jnp.clip(logvar, -10.0, 10.0)
    z = mu if key is None else mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
    kl = 0.5 * jnp.sum(jnp.exp(logvar) + mu**2 - 1.0 - logvar, axis=(1, 2, 3))
    return self.decode(z), kl


def create(variant: str = "tconv", *, rngs: nnx.Rngs, **overrides) -> Generator:
  """Build a variant from VARIANTS; keyword overrides replace table entries."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown genzoo variant {variant!r}; choose from {sorted(VARIANTS)}")
  return Generator(**{**VARIANTS[variant], **overrides}, rngs=rngs)
