"""The 19 ImageNet-C corruptions (Hendrycks & Dietterich, 2019) in NumPy/SciPy/PIL.

`corrupt(image, name, severity, rng)` applies one corruption at severity 1-5;
`random_corruption` draws one for training (RepMix trains on `TRAIN_IDS` and
holds out `UNSEEN_IDS`), and `corruption` wraps it as an `Edited` op.

Size. The ImageNet-C tables are defined at 224 px, while images here are
mostly 64 px (sometimes 32 or 224+). Every spatial parameter (blur sigmas and
radii, displacements, motion length, glass delta, flake, drop, plasma and
frost feature sizes) is multiplied by s = min(H, W) / 224, so a 64 px image
gets the look of a 224 px ImageNet-C image downscaled to 64 px. Pixel-wise
parameters (noise levels, colour factors, JPEG quality, pixelate ratios) are
size free. Where scaling would make a parameter vanish, e.g. a blur sigma
below a pixel at 32 px, it is floored (`_MIN_SIGMA`, `_MIN_RADIUS`, ...), so
nearby severities may coincide at 32 px but never lose their effect; no
corruption is undefined at any size >= 16 px, so none is capped.

Simplifications (no OpenCV, Wand or texture files):
  * motion blur (Wand) is a one-sided line kernel with Gaussian tap weights,
    ImageMagick-like; defocus uses an antialiased disk;
  * glass blur resamples every pixel at a random nearby offset in parallel
    instead of the sequential per-pixel swap loop;
  * frost uses a procedural ice texture (ridged multi-octave noise, bluish
    white) in place of the six frost photographs;
  * snow, spatter and the noise fields of elastic/fog are re-implemented from
    their definitions; spatter's water drops use a soft relief of the drop
    mask in place of Canny + distance transform + emboss, and its drop layer
    is drawn at 224 px scale and downsampled (its thresholds do not scale).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from provjax.transforms import core
from provjax.transforms.core import Edited

NAMES = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
    "speckle_noise",
    "gaussian_blur",
    "spatter",
    "saturate",
)
TRAIN_IDS = (0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)  # RepMix training set
UNSEEN_IDS = (4, 5, 6, 7)  # glass, motion, zoom blur and snow: held out

# Floors for scaled parameters, so small images still get a visible effect.
_MIN_SIGMA = 0.4  # Gaussian blur sigma, px
_MIN_RADIUS = 0.75  # defocus disk radius, px
_MIN_DELTA = 0.3  # glass blur displacement, px
_MIN_LENGTH = 1.5  # motion streak length, px

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)

# --------------------------------------------------------------- helpers ---


def _scale(x: np.ndarray) -> float:
  """The factor taking ImageNet-C's 224 px lengths to this image."""
  return min(x.shape[:2]) / 224


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
  """Gaussian blur over the two spatial axes only."""
  sigmas = (sigma, sigma) + (0,) * (x.ndim - 2)
  return ndimage.gaussian_filter(x, sigmas, mode="nearest")


def _correlate(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """Correlates x (HxW or HxWxC) with an odd 2-D kernel, edges replicated.

  Sums shifted slices over the kernel's non-negligible taps only, which is
  much faster than a dense filter for line and disk kernels.
  """
  kh, kw = kernel.shape
  h, w = x.shape[:2]
  pad = ((kh // 2, kh // 2), (kw // 2, kw // 2)) + ((0, 0),) * (x.ndim - 2)
  padded = np.pad(x, pad, mode="edge")
  kernel = kernel.astype(x.dtype)
  taps = kernel > 1e-4 * kernel.max()
  out = np.zeros_like(x)
  for i, j in zip(*np.nonzero(taps)):
    out += kernel[i, j] * padded[i : i + h, j : j + w]
  return out / kernel[taps].sum()


def _resize(a: np.ndarray, h: int, w: int, resample=Image.Resampling.BILINEAR) -> np.ndarray:
  """Resizes an HxW float array with PIL ('F' mode)."""
  return np.asarray(Image.fromarray(a.astype(np.float32), "F").resize((w, h), resample))


def _pil(x: np.ndarray) -> Image.Image:
  return Image.fromarray(np.clip(np.rint(x * 255), 0, 255).astype(np.uint8))


def _from_pil(img: Image.Image) -> np.ndarray:
  return np.asarray(img.convert("RGB"), np.float32) / 255


def _gray(x: np.ndarray) -> np.ndarray:
  return x @ _LUMA


def _motion_kernel(length: float, sigma: float, angle: float) -> np.ndarray:
  """One-sided streak: taps every half pixel along `angle` (degrees) up to
  `length`, Gaussian-weighted by distance, bilinearly splatted (Wand-like)."""
  t = np.linspace(0, length, max(2, int(np.ceil(2 * length)) + 1))
  weights = np.exp(-(t**2) / (2 * sigma**2))
  a = np.deg2rad(angle)
  r = int(np.ceil(length)) + 1
  py, px = r - t * np.sin(a), r + t * np.cos(a)
  kernel = np.zeros((2 * r + 1, 2 * r + 1))
  y0, x0 = np.floor(py).astype(int), np.floor(px).astype(int)
  fy, fx = py - y0, px - x0
  for dy, wy in ((0, 1 - fy), (1, fy)):
    for dx, wx in ((0, 1 - fx), (1, fx)):
      np.add.at(kernel, (y0 + dy, x0 + dx), weights * wy * wx)
  return kernel


def _motion(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
  """Wand's motion_blur(radius, sigma, angle): its kernel spans 2 * radius."""
  return _correlate(x, _motion_kernel(max(_MIN_LENGTH, 2 * radius), max(_MIN_SIGMA, sigma), angle))


def _value_noise(h: int, w: int, cell: float, rng: np.random.Generator) -> np.ndarray:
  """Smooth noise in [0, 1] with features `cell` px wide (bicubic lattice)."""
  gh, gw = int(np.ceil(h / cell)) + 2, int(np.ceil(w / cell)) + 2
  lattice = rng.random((gh, gw), dtype=np.float32)
  big = _resize(lattice, round(gh * cell), round(gw * cell), Image.Resampling.BICUBIC)
  return big[:h, :w]


def _plasma(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
  """size x size (a power of 2) diamond-square plasma fractal in [0, 1].

  As in ImageNet-C the map wraps around, starts from one zero corner, and the
  displacement amplitude is wibble**2 with wibble divided by `decay` per level,
  so a larger decay gives a smoother fog.
  """
  a = np.zeros((size, size))
  step, wibble = size, 100.0
  while step >= 2:
    half = step // 2
    g = a[::half, ::half]  # a view: the corners and centres of this level
    c = g[0::2, 0::2]
    mean = (c + np.roll(c, -1, 0) + np.roll(c, -1, 1) + np.roll(c, (-1, -1), (0, 1))) / 4
    g[1::2, 1::2] = mean + wibble * rng.uniform(-wibble, wibble, mean.shape)
    nb = (np.roll(g, 1, 0) + np.roll(g, -1, 0) + np.roll(g, 1, 1) + np.roll(g, -1, 1)) / 4
    for sl in ((slice(0, None, 2), slice(1, None, 2)), (slice(1, None, 2), slice(0, None, 2))):
      g[sl] = nb[sl] + wibble * rng.uniform(-wibble, wibble, nb[sl].shape)
    step, wibble = half, wibble / decay
  a -= a.min()
  return (a / a.max()).astype(np.float32)


# ----------------------------------------------------------------- noise ---

# Each corruption maps a float32 HxWx3 image in [0, 1], the severity (1-5)
# and the rng to a float image; `corrupt` clips and quantises the result.


def _gaussian_noise(x, severity, rng):
  c = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1]
  return x + rng.normal(0, c, x.shape).astype(np.float32)


def _shot_noise(x, severity, rng):
  c = (60, 25, 12, 5, 3)[severity - 1]
  return rng.poisson(x * c).astype(np.float32) / c


def _impulse_noise(x, severity, rng):
  """Salt and pepper on a fraction c of the values (each channel apart)."""
  c = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
  u = rng.random(x.shape, dtype=np.float32)
  return np.where(u < c / 2, 0, np.where(u < c, 1, x)).astype(np.float32)


def _speckle_noise(x, severity, rng):
  c = (0.15, 0.2, 0.35, 0.45, 0.6)[severity - 1]
  return x + x * rng.normal(0, c, x.shape).astype(np.float32)


# ------------------------------------------------------------------ blur ---


def _gaussian_blur(x, severity, rng):
  c = (1, 2, 3, 4, 6)[severity - 1]
  return _blur(x, max(_MIN_SIGMA, c * _scale(x)))


def _defocus_blur(x, severity, rng):
  """Antialiased disk of the scaled radius, softened by the alias blur."""
  radius, alias = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))[severity - 1]
  s = _scale(x)
  r = max(_MIN_RADIUS, radius * s)
  n = int(np.ceil(r)) + 1
  yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
  disk = np.clip(r + 0.5 - np.hypot(yy, xx), 0, 1)
  return _correlate(x, ndimage.gaussian_filter(disk, alias * s))


def _glass_blur(x, severity, rng):
  """Blur, locally scramble pixels `iterations` times, blur again.

  Each round resamples every pixel (bilinearly) at a random offset within
  the scaled max_delta, all at once: a vectorised stand-in for the
  reference's sequential per-pixel swaps, and sub-pixel deltas (small
  images) still scramble a little instead of rounding to nothing.
  """
  sigma, delta, iterations = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))[
      severity - 1
  ]
  s = _scale(x)
  h, w = x.shape[:2]
  sigma, delta = max(_MIN_SIGMA, sigma * s), max(_MIN_DELTA, delta * s)
  x = _blur(x, sigma)
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
  for _ in range(iterations):
    oy, ox = rng.uniform(-delta, delta, (2, h, w)).astype(np.float32)
    pos = [ys + oy, xs + ox]
    x = np.stack(
        [ndimage.map_coordinates(x[..., k], pos, order=1, mode="nearest") for k in range(3)], -1
    )
  return _blur(x, sigma)


def _motion_blur(x, severity, rng):
  radius, sigma = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))[severity - 1]
  s = _scale(x)
  return _motion(x, radius * s, sigma * s, rng.uniform(-45, 45))


def _zoom_blur(x, severity, rng):
  """Average of the image and centre zooms by factors 1 .. 1.11-1.31."""
  top, step = ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03))[severity - 1]
  zooms = np.arange(1, top, step)
  h, w = x.shape[:2]
  img = _pil(x)
  out = x.copy()
  for z in zooms:
    bw, bh = w / z, h / z
    box = ((w - bw) / 2, (h - bh) / 2, (w + bw) / 2, (h + bh) / 2)
    out += _from_pil(img.resize((w, h), Image.Resampling.BILINEAR, box=box))
  return out / (len(zooms) + 1)


# --------------------------------------------------------------- weather ---


def _snow(x, severity, rng):
  """Thresholded noise flakes streaked by motion blur, over a greyed image."""
  loc, scale, zoom, threshold, radius, sigma, blend = (
      (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
      (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
      (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
      (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
      (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
  )[severity - 1]
  s = _scale(x)
  h, w = x.shape[:2]
  zoom = max(1.0, zoom * s)  # flake size in px
  flakes = rng.normal(loc, scale, (int(np.ceil(h / zoom)), int(np.ceil(w / zoom))))
  flakes = _resize(flakes, h, w)
  flakes = np.clip(np.where(flakes < threshold, 0, flakes), 0, 1)
  flakes = _motion(flakes, radius * s, sigma * s, rng.uniform(-135, -45))[..., None]
  x = blend * x + (1 - blend) * np.maximum(x, _gray(x)[..., None] * 1.5 + 0.5)
  return x + flakes + flakes[::-1, ::-1]


def _frost_texture(h: int, w: int, s: float, rng: np.random.Generator) -> np.ndarray:
  """HxWx3 icy texture in [0, 1]: bright crystal veins over a hazy ground.

  Veins are the ridges |2n - 1| ~ 0 of two multi-octave noises (level-set
  networks that branch like ice crystals); the ground is the smooth noise
  itself plus a fine grain, all tinted bluish white.
  """

  def fractal(cell):
    octaves = [_value_noise(h, w, max(1.0, cell / 2**k), rng) for k in range(3)]
    return sum(o * 0.5**k for k, o in enumerate(octaves)) / 1.75

  cell = max(3.0, 28 * s)  # crystal size: 28 px at 224
  veins = [(1 - np.abs(2 * fractal(c) - 1)) ** 8 for c in (cell, 0.6 * cell)]
  ground = fractal(2 * cell)
  grain = rng.random((h, w), dtype=np.float32) ** 6
  ice = 0.55 * veins[0] + 0.35 * veins[1] + 0.45 * ground + 0.15 * grain
  ice = np.clip(ice / np.percentile(ice, 99.5), 0, 1)
  return ice[..., None] * np.array([0.86, 0.93, 1.0], np.float32)


def _frost(x, severity, rng):
  image_w, frost_w = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))[severity - 1]
  h, w = x.shape[:2]
  return image_w * x + frost_w * _frost_texture(h, w, _scale(x), rng)


def _fog(x, severity, rng):
  """Adds a plasma fractal sized like ImageNet-C's 256 map, then rescales."""
  strength, decay = ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4))[severity - 1]
  h, w = x.shape[:2]
  extent = max(h, w, round(256 * _scale(x)))  # the map's size at this scale
  size = 2 ** int(np.ceil(np.log2(max(16, extent))))
  plasma = _plasma(size, decay, rng)
  if size != extent:
    plasma = _resize(plasma, extent, extent)
  top = x.max()
  return (x + strength * plasma[:h, :w, None]) * top / (top + strength)


def _spatter(x, severity, rng):
  """Water drops (severity 1-3) or mud (4-5) from thresholded blurred noise.

  Thresholds of blurred noise do not survive scaling the blur (the field's
  spread and so the wet fraction change), so below 224 px the drop layer is
  drawn at 224 px scale with the reference parameters and area-downsampled.
  """
  loc, scale, sigma, threshold, intensity, mud = (
      (0.65, 0.3, 4, 0.69, 0.6, False),
      (0.65, 0.3, 3, 0.68, 0.6, False),
      (0.65, 0.3, 2, 0.68, 0.5, False),
      (0.65, 0.3, 1, 0.65, 1.5, True),
      (0.67, 0.4, 1, 0.65, 1.5, True),
  )[severity - 1]
  h, w = x.shape[:2]
  s = _scale(x)
  vs, vh, vw = (s, h, w) if s >= 1 else (1.0, round(h / s), round(w / s))
  field = _blur(rng.normal(loc, scale, (vh, vw)).astype(np.float32), sigma * vs)
  wet = field > threshold
  if mud:
    m = _blur(wet.astype(np.float32), intensity * vs)
    m = _resize(np.where(m < 0.8, 0, m), h, w, Image.Resampling.BOX)[..., None]
    return x * (1 - m) + m * np.array([63, 42, 20], np.float32) / 255
  # Lit from the top left: an emboss of the soft drop mask brightens the
  # rims facing the light, like the reference's embossed distance map.
  soft = _blur(wet.astype(np.float32), vs)
  relief = np.clip(soft + ndimage.correlate(soft, [[-2, -1, 0], [-1, 0, 1], [0, 1, 2]]), 0, None)
  m = _resize(np.where(wet, field, 0) * relief, h, w, Image.Resampling.BOX)
  m = m / m.max() * intensity if m.max() > 0 else m
  return x + m[..., None] * np.array([175, 238, 238], np.float32) / 255


# ---------------------------------------------------------------- digital ---


def _with_value(x: np.ndarray, v_new: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Sets HSV value (the max channel) keeping hue and saturation.

  With H and S fixed, RGB is proportional to V, so no HSV round trip is
  needed; black pixels (V = 0) become grey at the new value.
  """
  ratio = np.divide(v_new, v, out=np.zeros_like(v), where=v > 0)
  return np.where(v[..., None] > 0, x * ratio[..., None], v_new[..., None])


def _brightness(x, severity, rng):
  c = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
  v = x.max(axis=-1)
  return _with_value(x, np.clip(v + c, 0, 1), v)


def _contrast(x, severity, rng):
  c = (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1]
  means = x.mean(axis=(0, 1), keepdims=True)
  return (x - means) * c + means


def _saturate(x, severity, rng):
  """HSV saturation S -> clip(S * mult + add), hue and value kept.

  Each channel is V - V * S * f(hue), so scaling V - channel by S'/S sets
  the saturation; grey pixels (hue undefined, 0 = red as in skimage) get
  R = V and G = B = V (1 - S').
  """
  mult, add = ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2))[severity - 1]
  v, lo = x.max(axis=-1), x.min(axis=-1)
  sat = np.divide(v - lo, v, out=np.zeros_like(v), where=v > 0)
  new = np.clip(sat * mult + add, 0, 1)
  ratio = np.divide(new, sat, out=np.zeros_like(v), where=sat > 0)[..., None]
  grey = v[..., None] * (1 - new[..., None] * np.array([0, 1, 1], np.float32))
  return np.where(sat[..., None] > 0, v[..., None] - (v[..., None] - x) * ratio, grey)


def _pixelate(x, severity, rng):
  c = (0.6, 0.5, 0.4, 0.3, 0.25)[severity - 1]
  h, w = x.shape[:2]
  small = _pil(x).resize((max(1, round(w * c)), max(1, round(h * c))), Image.Resampling.BOX)
  return _from_pil(small.resize((w, h), Image.Resampling.BOX))


def _jpeg_compression(x, severity, rng):
  quality = (25, 18, 15, 10, 7)[severity - 1]
  buf = io.BytesIO()
  _pil(x).save(buf, format="JPEG", quality=quality)
  buf.seek(0)
  return _from_pil(Image.open(buf))


def _smooth_noise(h: int, w: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
  """Uniform(-1, 1) noise smoothed with a Gaussian of `sigma` px.

  Done in Fourier space, whose cost does not grow with sigma (elastic
  severity 1 uses sigma ~ 0.76 * side), on a doubled grid so the crop kept
  does not wrap around.
  """
  noise = rng.uniform(-1, 1, (2 * h, 2 * w))
  smooth = ndimage.fourier_gaussian(np.fft.rfft2(noise), sigma, n=2 * w)
  return np.fft.irfft2(smooth, s=noise.shape)[:h, :w]


def _elastic_transform(x, severity, rng):
  """A random affine (three jittered points) then a smooth displacement field.

  ImageNet-C gives the lengths as multiples of 244 px (a typo for 224 that
  the benchmark kept), used here times s. The displacement is alpha *
  (sigma-smoothed uniform noise); per-pixel noise on a coarser grid has its
  smoothed amplitude grow by 1/s, so alpha takes s twice to keep the
  displacement at s times the 224 px one.
  """
  alpha, sigma, jitter = (
      (2, 0.7, 0.1),
      (2, 0.08, 0.2),
      (0.05, 0.01, 0.02),
      (0.07, 0.01, 0.02),
      (0.12, 0.01, 0.02),
  )[severity - 1]
  s = _scale(x)
  alpha, sigma, jitter = alpha * 244 * s * s, sigma * 244 * s, jitter * 244 * s
  h, w = x.shape[:2]
  cy, cx, half = h // 2, w // 2, min(h, w) // 3
  pts = np.array([[cx + half, cy + half], [cx + half, cy - half], [cx - half, cy - half]], float)
  moved = pts + rng.uniform(-jitter, jitter, pts.shape)
  inverse = np.linalg.solve(np.c_[moved, np.ones(3)], pts)  # [x y 1] @ inverse = source (x, y)
  dy, dx = (_smooth_noise(h, w, sigma, rng) * alpha for _ in range(2))
  ys, xs = np.mgrid[0:h, 0:w].astype(float)
  qy, qx = ys + dy, xs + dx
  sx = qx * inverse[0, 0] + qy * inverse[1, 0] + inverse[2, 0]
  sy = qx * inverse[0, 1] + qy * inverse[1, 1] + inverse[2, 1]
  return np.stack(
      [ndimage.map_coordinates(x[..., k], [sy, sx], order=1, mode="mirror") for k in range(3)],
      axis=-1,
  )


_CORRUPTIONS = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "elastic_transform": _elastic_transform,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "spatter": _spatter,
    "saturate": _saturate,
}

# ------------------------------------------------------------------ public ---


def corrupt(image: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
  """Applies ImageNet-C corruption `name` at `severity` (1-5).

  Args:
    image: HxWx3 uint8, H and W >= 16.
    name: one of `NAMES`.
    severity: 1 (mild) to 5 (strongest).
    rng: the only source of randomness, so the output is a function of the
      image, name, severity and rng state.

  Returns:
    HxWx3 uint8, the corrupted image.
  """
  if name not in _CORRUPTIONS:
    raise ValueError(f"unknown corruption {name!r}; expected one of {NAMES}")
  if severity not in (1, 2, 3, 4, 5):
    raise ValueError(f"severity must be an int in 1..5, got {severity!r} for {name!r}")
  x = core.as_rgb_uint8(image).astype(np.float32) / 255
  out = _CORRUPTIONS[name](x, int(severity), rng)
  return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def random_corruption(
    image: np.ndarray, rng: np.random.Generator, ids: tuple[int, ...] = TRAIN_IDS, p: float = 0.95
) -> tuple[np.ndarray, str | None]:
  """With probability p, a corruption drawn uniformly from `ids` at a uniform
  severity; returns (image, name), or (image unchanged, None) otherwise."""
  if rng.random() >= p:
    return image, None
  name = NAMES[ids[rng.integers(len(ids))]]
  return corrupt(image, name, int(rng.integers(1, 6)), rng), name


def corruption(
    e: Edited,
    rng: np.random.Generator,
    name: str | None = None,
    severity: int | None = None,
    ids: tuple[int, ...] = TRAIN_IDS,
) -> Edited:
  """Photometric op: an ImageNet-C corruption (drawn from `ids` and severity
  1-5 where None); coords, geo and mask pass through.

  elastic_transform and glass_blur move pixels by a pixel or two, but the
  coordinate table is kept: they are degradations of the image, not
  geometric edits, just as blur mixes neighbours without changing sources.
  """
  if name is None:
    name = NAMES[ids[rng.integers(len(ids))]]
  if severity is None:
    severity = int(rng.integers(1, 6))
  return core.replace(e, image=corrupt(e.image, name, severity, rng))
