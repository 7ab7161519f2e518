"""Photometric ops: they change pixel values only, so coords, geo and mask
are passed through untouched (PixTrace, specs/copy_detection.md section 6).

Every op is `op(e, rng, **params) -> Edited`; parameters left as None are
drawn from `rng` at moderate (AugLy / ImageNet-C level 1-3) severity.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from provjax.transforms import core
from provjax.transforms.core import Edited


def _with_image(e: Edited, image: np.ndarray) -> Edited:
  return core.replace(e, image=core.as_rgb_uint8(image))


def _pil(e: Edited) -> Image.Image:
  return Image.fromarray(e.image)


def jpeg(
    e: Edited,
    rng: np.random.Generator | None = None,
    quality: int | None = None,
    quality_range: tuple[int, int] = (20, 75),
) -> Edited:
  """JPEG round trip at `quality` (drawn from `quality_range` if None)."""
  if quality is None:
    quality = int(rng.integers(quality_range[0], quality_range[1] + 1))
  buf = io.BytesIO()
  _pil(e).save(buf, format="JPEG", quality=int(quality))
  buf.seek(0)
  return _with_image(e, np.asarray(Image.open(buf).convert("RGB")))


def noise(
    e: Edited,
    rng: np.random.Generator,
    std: float | None = None,
    std_range: tuple[float, float] = (3.0, 20.0),
) -> Edited:
  """Additive Gaussian noise with standard deviation `std` (0-255 scale)."""
  if std is None:
    std = rng.uniform(*std_range)
  n = rng.standard_normal(e.image.shape, dtype=np.float32) * np.float32(std)
  return _with_image(e, e.image.astype(np.float32) + n)


def blur(
    e: Edited,
    rng: np.random.Generator | None = None,
    radius: float | None = None,
    radius_range: tuple[float, float] = (0.5, 2.5),
) -> Edited:
  """Gaussian blur with PIL `radius` (standard deviation in pixels)."""
  if radius is None:
    radius = rng.uniform(*radius_range)
  return _with_image(e, np.asarray(_pil(e).filter(ImageFilter.GaussianBlur(float(radius)))))


def _shift_hue(image: np.ndarray, hue: float) -> np.ndarray:
  """Rotates hue by `hue` turns (e.g. 0.1 = 36 degrees) in PIL's HSV."""
  hsv = np.asarray(Image.fromarray(image).convert("HSV")).copy()
  hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(hue * 256)) % 256
  return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


def color_jitter(
    e: Edited,
    rng: np.random.Generator | None = None,
    brightness: float | None = None,
    contrast: float | None = None,
    saturation: float | None = None,
    hue: float | None = None,
    strength: float = 1.0,
) -> Edited:
  """Brightness, contrast and saturation factors, then a hue rotation.

  Factors of 1 (and hue 0) are no-ops. Missing ones are drawn around 1 with
  a spread of 0.4 * strength (hue: +-0.1 * strength turns), torchvision-like.
  """
  draw = lambda v, s: v if v is not None else 1 + rng.uniform(-s, s)
  s = 0.4 * strength
  b, c, sat = draw(brightness, s), draw(contrast, s), draw(saturation, s)
  if hue is None:
    hue = rng.uniform(-0.1, 0.1) * strength
  img = e.image.astype(np.float32) * b
  gray = img @ np.array([0.299, 0.587, 0.114], np.float32)
  img = (img - gray.mean()) * c + gray.mean()
  gray = (img @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
  img = np.clip((img - gray) * sat + gray, 0, 255).astype(np.uint8)
  return _with_image(e, _shift_hue(img, hue) if abs(hue) > 1e-3 else img)


def grayscale(e: Edited, rng: np.random.Generator | None = None) -> Edited:
  """Luma (ITU-R 601) replicated over the three channels."""
  return _with_image(e, np.asarray(_pil(e).convert("L")))


def sharpen(
    e: Edited,
    rng: np.random.Generator | None = None,
    factor: float | None = None,
    factor_range: tuple[float, float] = (1.5, 4.0),
) -> Edited:
  """PIL sharpness enhancement by `factor` (1 = unchanged)."""
  if factor is None:
    factor = rng.uniform(*factor_range)
  return _with_image(e, np.asarray(ImageEnhance.Sharpness(_pil(e)).enhance(float(factor))))


def pixelize(
    e: Edited,
    rng: np.random.Generator | None = None,
    ratio: float | None = None,
    ratio_range: tuple[float, float] = (0.15, 0.5),
) -> Edited:
  """Box-downsamples by `ratio` and blows back up with nearest neighbour.

  Each block still shows (an average of) the pixels it covers, so the
  coordinate table is kept, as AugLy's pixelization is treated as benign.
  """
  if ratio is None:
    ratio = rng.uniform(*ratio_range)
  h, w = e.shape
  small = _pil(e).resize((max(1, round(w * ratio)), max(1, round(h * ratio))), Image.Resampling.BOX)
  return _with_image(e, np.asarray(small.resize((w, h), Image.Resampling.NEAREST)))


def stripes(
    e: Edited,
    rng: np.random.Generator,
    angle: float | None = None,
    period: float | None = None,
    width: float | None = None,
    opacity: float | None = None,
    color=None,
) -> Edited:
  """Semi-transparent parallel stripes (AugLy overlay_stripes).

  Opacity stays <= 0.6 when drawn so the content shows through; the pixels
  keep their source like any other photometric change.
  """
  h, w = e.shape
  angle = rng.uniform(0, 180) if angle is None else angle
  period = rng.uniform(0.05, 0.2) * max(h, w) if period is None else period
  width = rng.uniform(0.1, 0.5) if width is None else width
  opacity = rng.uniform(0.2, 0.6) if opacity is None else opacity
  color = rng.integers(0, 256, size=3) if color is None else color
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
  a = np.deg2rad(angle)
  phase = (xs * np.cos(a) + ys * np.sin(a)) / period
  on = (phase - np.floor(phase)) < width
  img = e.image.astype(np.float32)
  img[on] = img[on] * (1 - opacity) + np.asarray(color, np.float32) * opacity
  return _with_image(e, img)
