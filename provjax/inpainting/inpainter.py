"""Run a SafePaint generator on whole images of any size: fill the hole, keep the rest.

    inpainter = Inpainter(provjax.load("safepaint.synth-v1"))
    filled = inpainter(image, hole)            # HxWx3 uint8, HxW bool (True = fill)
    filled = inpainter.batch(images, holes)    # B equal-size images in one forward pass
    hole = read_mask("mask.png")               # any mode; luminance > 127 = hole

The generator needs H and W to be multiples of `safepaint.MULTIPLE` and at
least `safepaint.MIN_SIZE`, so each image is padded by reflection (split
evenly between the two sides) and the result cropped back. The hole mask is
reflected with it: padded pixels are valid context where they mirror valid
pixels, and a hole where they mirror the hole, so what lies under the hole
never reaches the generator through the padding. The forward pass (uint8 in,
eval mode, merged stage-2 output rounded to uint8 out) is one jitted function
with static shapes, compiled once per padded (B, H, W) and kept
(`Inpainter.compiled`). Pixels outside the hole are the input's own, by
construction. Inside it the official tool truncates `C2 * 255` where this
rounds, so the two can differ there by one level.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from provjax import compile_options
from provjax.data.images import read_image
from provjax.models import safepaint

# SafePaint's memory is linear in the pixel count (its attention is over channels, not
# positions): XLA's memory analysis of safepaint.full at 256 x 256 (`provjax bench --only
# inpaint`) is 191 MiB, about 80 MiB of it activations, some 1.2 KiB a pixel, so this limit
# stands for about 5 GiB.
DEFAULT_MAX_PIXELS = 2048 * 2048
MASK_THRESHOLD = 127  # luminance above it is hole


class TooLargeError(ValueError):
  """An image with more pixels than the inpainter's limit."""


def read_mask(path: str, *, max_pixels: int = 64_000_000) -> np.ndarray:
  """A hole mask file (PNG, JPEG, ... any mode) -> HxW bool, True = hole.

  The file is decoded like any image (`read_image`: EXIF orientation, alpha
  over white, 16-bit scaled to 8), turned to luminance (Pillow's "L") and
  thresholded at > 127. On the official 0/255 masks this is the official
  loader's `mask > 0`; on a JPEG mask it ignores the compression's ringing.
  Raises ImageError naming the file when it cannot be read.
  """
  rgb = read_image(path, max_pixels=max_pixels)
  return np.asarray(Image.fromarray(rgb).convert("L")) > MASK_THRESHOLD


def padding(size: int, *, multiple: int, minimum: int) -> tuple[int, int]:
  """(before, after) to add to `size`: the smallest multiple of `multiple` >= max(size, minimum)."""
  target = -(-max(size, minimum) // multiple) * multiple
  extra = target - size
  return extra // 2, extra - extra // 2


def pad(images: np.ndarray, holes: np.ndarray, *, multiple: int, minimum: int):
  """Reflect-pad (B, H, W, 3) images and (B, H, W) holes to a size the generator accepts.

  Returns:
    (images, holes, window): the padded arrays and the (rows, cols) slices
    that cut the original pixels back out.
  """
  (top, bottom), (left, right) = (
      padding(n, multiple=multiple, minimum=minimum) for n in images.shape[1:3]
  )
  widths = ((0, 0), (top, bottom), (left, right))
  window = (slice(top, top + images.shape[1]), slice(left, left + images.shape[2]))
  return (
      np.pad(images, (*widths, (0, 0)), mode="reflect"),
      np.pad(holes, widths, mode="reflect"),
      window,
  )


def _forward(graphdef, state, images, holes):
  """uint8 (B, H, W, 3), bool (B, H, W) -> the merged stage-2 output C2 as uint8, eval mode."""
  model = nnx.merge(graphdef, state)
  masks = holes[..., None].astype(jnp.float32)
  out = model(images.astype(jnp.float32) / 255.0, masks, train=False)
  return jnp.round(jnp.clip(out["c2"], 0.0, 1.0) * 255.0).astype(jnp.uint8)


def _checked(images: np.ndarray, holes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(B, H, W, 3) uint8 images and (B, H, W) holes (nonzero = hole) of the same size, or raise."""
  images, holes = np.asarray(images), np.asarray(holes)
  if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
    raise ValueError(f"expected HxWx3 uint8 images, got {images.dtype} {images.shape[1:]}")
  if holes.shape[1:] != images.shape[1:3] or holes.shape[0] != images.shape[0]:
    (h, w), (mh, mw) = images.shape[1:3], holes.shape[-2:]
    raise ValueError(f"the mask is {mw}x{mh} but the image is {w}x{h} (width x height)")
  return images, holes != 0


class Inpainter:
  """A SafePaint generator compiled per padded image size.

  Args:
    model: a SafePaint module (e.g. `provjax.load("safepaint.synth-v1")`); it
      is run in eval mode (BatchNorm running statistics) whatever mode it is in.
    max_pixels: larger images raise TooLargeError before anything runs.
  """

  def __init__(self, model, *, max_pixels: int = DEFAULT_MAX_PIXELS):
    self.graphdef, self.state = nnx.split(model)
    self.max_pixels = max_pixels
    self._compiled: dict[tuple[int, int, int], jax.stages.Compiled] = {}

  def compiled(self, batch: int, height: int, width: int) -> jax.stages.Compiled:
    """The executable for one padded (B, H, W) (compiled on first use, then cached)."""
    key = (int(batch), int(height), int(width))
    if key not in self._compiled:
      images = jax.ShapeDtypeStruct((*key, 3), jnp.uint8)
      holes = jax.ShapeDtypeStruct(key, jnp.bool_)
      forward = jax.jit(_forward, static_argnums=0)
      self._compiled[key] = forward.lower(self.graphdef, self.state, images, holes).compile(
          compiler_options=compile_options.compiler_options()
      )
    return self._compiled[key]

  def check_size(self, height: int, width: int) -> None:
    """Raise TooLargeError for more than `max_pixels` pixels."""
    if height * width > self.max_pixels:
      raise TooLargeError(
          f"image too large for the inpainter ({width}x{height} = {height * width} pixels, "
          f"limit {self.max_pixels}; its memory grows with the pixels)"
      )

  def batch(self, images: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 and (B, H, W) holes (nonzero = fill) -> (B, H, W, 3) uint8 filled.

    Outside each hole the result is the input, exactly; a batch without any
    hole pixel is returned as it is, without running the model.
    """
    images, holes = _checked(images, holes)
    self.check_size(*images.shape[1:3])
    if not holes.any():
      return images.copy()
    padded, padded_holes, (rows, cols) = pad(
        images, holes, multiple=safepaint.MULTIPLE, minimum=safepaint.MIN_SIZE
    )
    # The state goes in as an argument (not a constant baked into each executable), so
    # every size shares one copy of the weights.
    filled = self.compiled(*padded_holes.shape)(self.state, padded, padded_holes)
    filled = np.asarray(jax.device_get(filled))[:, rows, cols]
    return np.where(holes[..., None], filled, images)

  def __call__(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 and HxW hole (nonzero = fill) -> HxWx3 uint8, equal to `image` outside it."""
    image, hole = np.asarray(image), np.asarray(hole)
    if image.ndim != 3 or hole.ndim != 2:
      raise ValueError(f"expected an HxWx3 image and an HxW mask, got {image.shape}, {hole.shape}")
    return self.batch(image[None], hole[None])[0]
