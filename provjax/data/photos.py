"""Offline image sources: bundled photographs and procedural images.

Real photographs come from files that scikit-image, scikit-learn and
matplotlib ship inside their wheels, so nothing is downloaded. About twenty
photos become thousands of distinct natural originals through random
crops (:func:`photo_crop`); which photo belongs to which split is decided
in :mod:`provjax.data.splits`. Procedural images (:func:`procedural_image`)
add textures, shapes, gradients and noise fields that no photo contains.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

from provjax.data import splits

# scikit-image loaders whose files are inside the wheel (the rest of
# skimage.data needs pooch and a network). Synthetic or near-copy entries
# (horse silhouette, logo, colorwheel, cat == chelsea) are left out.
_SKIMAGE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)
_SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
_MATPLOTLIB_PHOTOS = ("grace_hopper.jpg",)


def _as_rgb(img: np.ndarray) -> np.ndarray:
  """Gray or RGBA uint8 -> read-only HxWx3 uint8 (the cache is shared)."""
  img = np.asarray(img)
  if img.ndim == 2:
    img = np.repeat(img[..., None], 3, axis=-1)
  img = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
  img.flags.writeable = False
  return img


def _skimage_photos() -> Iterator[tuple[str, np.ndarray]]:
  import skimage.data  # pylint: disable=g-import-not-at-top

  for name in _SKIMAGE_PHOTOS:
    yield name, getattr(skimage.data, name)()
  left, right, _ = skimage.data.stereo_motorcycle()
  yield "motorcycle_left", left
  yield "motorcycle_right", right


def _sklearn_photos() -> Iterator[tuple[str, np.ndarray]]:
  from sklearn.datasets import load_sample_image  # pylint: disable=g-import-not-at-top

  for filename in _SKLEARN_PHOTOS:
    yield filename.removesuffix(".jpg"), load_sample_image(filename)


def _matplotlib_photos() -> Iterator[tuple[str, np.ndarray]]:
  from matplotlib import cbook  # pylint: disable=g-import-not-at-top

  for filename in _MATPLOTLIB_PHOTOS:
    with cbook.get_sample_data(filename) as f:
      yield filename.rsplit(".", 1)[0], np.asarray(Image.open(f).convert("RGB"))


@functools.cache
def sample_photos() -> list[tuple[str, np.ndarray]]:
  """Returns the bundled real photographs, loaded once per process.

  Returns:
    (name, image) pairs in a fixed order; images are read-only HxWx3 uint8
    arrays of varying sizes (about 170 to 1400 pixels a side). A source
    whose package is missing or broken is skipped, never downloaded.
  """
  photos = []
  for source in (_skimage_photos, _sklearn_photos, _matplotlib_photos):
    try:
      photos.extend((name, _as_rgb(img)) for name, img in source())
    except (ImportError, OSError, ValueError):
      continue  # an optional package without its data: use the rest
  if not photos:
    raise RuntimeError("no bundled sample photographs could be loaded")
  return photos


def split_photos(split: str) -> list[tuple[str, np.ndarray]]:
  """The bundled photos of one split (see splits.BUNDLED_SPLITS), as (name, image) pairs."""
  names = splits.BUNDLED_SPLITS[splits.check_split(split)]
  return [(name, image) for name, image in sample_photos() if name in names]


def photo_crop(
    rng: np.random.Generator, size: int, *, pool: Sequence[tuple[str, np.ndarray]] | None = None
) -> tuple[str, np.ndarray]:
  """Takes a random square crop of a random photo of `pool`.

  The crop side is 30-100% of the photo's short side, the crop is flipped
  left-right half the time and resized to `size` x `size`.

  Args:
    rng: the source of randomness; the result is a function of its state.
    size: output side in pixels.
    pool: the (name, image) pairs it may crop from; default all bundled
      photos. Pass one split's photos (splits.photo_pool) to keep splits
      honest: a crop is only ever of a photo of that split.

  Returns:
    (photo name, size x size x 3 uint8 crop).
  """
  pool = sample_photos() if pool is None else pool
  if not pool:
    raise ValueError("photo_crop: the photo pool is empty")
  name, photo = pool[rng.integers(len(pool))]
  height, width = photo.shape[:2]
  short = min(height, width)
  side = int(rng.integers(math.ceil(0.3 * short), short + 1))
  top = int(rng.integers(height - side + 1))
  left = int(rng.integers(width - side + 1))
  crop = photo[top : top + side, left : left + side]
  if rng.random() < 0.5:
    crop = crop[:, ::-1]
  resized = Image.fromarray(np.ascontiguousarray(crop)).resize(
      (size, size), Image.Resampling.BICUBIC, reducing_gap=2.0
  )
  return name, np.asarray(resized)


def photo_crops(rng: np.random.Generator, size: int) -> Iterator[np.ndarray]:
  """Yields endless random photo crops (see :func:`photo_crop`)."""
  while True:
    yield photo_crop(rng, size)[1]


# --------------------------------------------------------------------------
# Procedural images. Each generator maps (rng, size) to a float HxWx3 image
# in [0, 1]; procedural_image picks one (or blends two) at random.


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
  """Pixel-centre coordinates in [-1, 1], as (y, x) arrays of shape HxW."""
  axis = (np.arange(size) + 0.5) / size * 2.0 - 1.0
  return np.meshgrid(axis, axis, indexing="ij")


def _colorize(rng: np.random.Generator, field: np.ndarray) -> np.ndarray:
  """Maps a scalar field to colour through a random 3-stop palette."""
  lo, hi = field.min(), field.max()
  t = (field - lo) / max(hi - lo, 1e-12)
  stops = rng.random((3, 3))
  first = stops[0] + (stops[1] - stops[0]) * np.minimum(2 * t, 1)[..., None]
  return first + (stops[2] - stops[1]) * np.maximum(2 * t - 1, 0)[..., None]


def _sinusoids(rng: np.random.Generator, size: int) -> np.ndarray:
  """Sum of random plane waves, some under Gaussian (Gabor) envelopes."""
  y, x = _grid(size)
  field = np.zeros((size, size))
  for _ in range(rng.integers(2, 7)):
    angle, freq = rng.uniform(0, np.pi), rng.uniform(1, 20)
    wave = np.sin(
        freq * np.pi * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 2 * np.pi)
    )
    if rng.random() < 0.5:  # Gabor: localise the wave
      cy, cx, width = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.2, 0.8)
      wave *= np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))
    field += rng.uniform(0.3, 1.0) * wave
  return _colorize(rng, field)


def _fractal_noise(rng: np.random.Generator, size: int) -> np.ndarray:
  """1/f^beta noise per channel: cloud- and terrain-like fields."""
  fy = np.fft.fftfreq(size)[:, None]
  fx = np.fft.rfftfreq(size)[None, :]
  radius = np.sqrt(fy**2 + fx**2)
  radius[0, 0] = 1.0  # the DC term; removed below
  amplitude = radius ** -rng.uniform(1.0, 2.2)
  amplitude[0, 0] = 0.0
  channels = []
  for _ in range(3):
    spectrum = amplitude * np.exp(2j * np.pi * rng.random(amplitude.shape))
    field = np.fft.irfft2(spectrum, s=(size, size))
    channels.append((field - field.min()) / max(np.ptp(field), 1e-12))
  mixed = np.stack(channels, -1) @ rng.uniform(-1, 1, (3, 3))
  return (mixed - mixed.min()) / max(np.ptp(mixed), 1e-12)


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
  """A smooth linear or radial colour gradient."""
  y, x = _grid(size)
  if rng.random() < 0.5:
    angle = rng.uniform(0, 2 * np.pi)
    field = x * np.cos(angle) + y * np.sin(angle)
  else:
    cy, cx = rng.uniform(-1, 1, 2)
    field = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
  return _colorize(rng, field)


def _pattern(rng: np.random.Generator, size: int) -> np.ndarray:
  """Rotated checkerboard or stripes in two random colours."""
  y, x = _grid(size)
  angle, period = rng.uniform(0, np.pi), rng.uniform(0.05, 0.5)
  u = (x * np.cos(angle) + y * np.sin(angle)) / period
  v = (-x * np.sin(angle) + y * np.cos(angle)) / period
  on = np.floor(u) % 2 if rng.random() < 0.5 else (np.floor(u) + np.floor(v)) % 2
  colors = rng.random((2, 3))
  return np.where(on[..., None] > 0, colors[0], colors[1])


def _shapes(rng: np.random.Generator, size: int) -> np.ndarray:
  """Random ellipses, rectangles and polygons over a gradient background."""
  background = (_gradient(rng, size) * 255).astype(np.uint8)
  canvas = Image.fromarray(background)
  draw = ImageDraw.Draw(canvas)
  for _ in range(rng.integers(3, 25)):
    fill = tuple(int(c) for c in rng.integers(0, 256, 3))
    kind = rng.integers(3)
    if kind == 2:
      points = rng.uniform(-0.1, 1.1, (rng.integers(3, 8), 2)) * size
      draw.polygon([tuple(p) for p in points], fill=fill)
      continue
    corners = np.sort(rng.uniform(-0.1, 1.1, (2, 2)) * size, axis=0)
    box = [float(corners[0, 0]), float(corners[0, 1]), float(corners[1, 0]), float(corners[1, 1])]
    (draw.ellipse if kind == 0 else draw.rectangle)(box, fill=fill)
  return np.asarray(canvas) / 255.0


_GENERATORS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "sinusoids": _sinusoids,
    "fractal": _fractal_noise,
    "gradient": _gradient,
    "pattern": _pattern,
    "shapes": _shapes,
}


STYLES = tuple(sorted(_GENERATORS))


def style_image(style: str, rng: np.random.Generator, size: int) -> np.ndarray:
  """One procedural image of a single named style (a key of STYLES), as uint8."""
  if style not in _GENERATORS:
    raise ValueError(f"unknown procedural style {style!r}; choose from {STYLES}")
  return np.clip(np.round(_GENERATORS[style](rng, size) * 255), 0, 255).astype(np.uint8)


def procedural_style(rng: np.random.Generator, size: int) -> tuple[str, np.ndarray]:
  """Like :func:`procedural_image`, also naming the style it drew.

  Returns:
    (style, image): style is a generator name, or "a+b" when two
    generators were blended through a random fractal mask.
  """
  names = sorted(_GENERATORS)
  first = names[rng.integers(len(names))]
  image = _GENERATORS[first](rng, size)
  style = first
  if rng.random() < 0.35:  # blend with a second style for mixed content
    second = names[rng.integers(len(names))]
    mask = _fractal_noise(rng, size)[..., :1] > rng.uniform(0.3, 0.7)
    image = np.where(mask, _GENERATORS[second](rng, size), image)
    style = f"{first}+{second}"
  return style, np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def procedural_image(rng: np.random.Generator, size: int) -> np.ndarray:
  """Draws a random colourful procedural image.

  Styles: sinusoid/Gabor textures, 1/f fractal noise, smooth gradients,
  checkerboards/stripes and random shapes, sometimes two blended.

  Args:
    rng: the source of randomness; equal states give equal images.
    size: output side in pixels.

  Returns:
    A size x size x 3 uint8 image.
  """
  return procedural_style(rng, size)[1]
