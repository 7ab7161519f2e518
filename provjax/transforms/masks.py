"""Free-form hole masks for inpainting: brush strokes and object-like blobs, at a chosen hole ratio.

Two kinds, as inpainting papers train and test on:

* "strokes": thick random-walk brush strokes (the free-form masks of
  DeepFill v2, Yu et al. 2019, which look like the irregular masks of Liu et
  al. 2018): each stroke is a polyline of 4-10 segments whose direction turns
  by up to 72 degrees per vertex, drawn with a round brush 3-10 % of the
  shorter side wide;
* "blobs": smooth object-like shapes: the level set of a sum of one to three
  rotated elliptical Gaussian bumps whose outline is roughened by low-pass
  noise, so holes are few, compact and irregular.

A mask hits its hole ratio exactly: `free_form_mask` draws a target pixel
count k inside the requested bin, then

* blobs: keeps the k pixels where the field is highest (one threshold);
* strokes: draws strokes until they cover at least k pixels, then shortens
  the last one: of the pixels it added, those farthest from its first vertex
  are dropped until exactly k remain, so every stroke keeps its brush width.
  Should MAX_STROKES strokes fall short, the outlines grow instead, pixels
  joining in order of their city-block distance to the hole (ties broken by
  smooth noise, so a part-ring is added in arcs, not as salt noise).

Every draw comes from the generator passed in, so a mask is a pure function
of the generator's state and the arguments. The ratio bins (RATIO_BINS,
ratio_bin, bin_label) are those of provjax.metrics.inpainting, which scores
per bin: six 10 %-wide bins (lo, hi] of the irregular-mask benchmarks. The
bins of the SafePaint paper itself are not known (specs/safepaint.md section
0).

    rng = np.random.default_rng(0)
    hole = free_form_mask(rng, 256, 256, ratio_bin=2, kind="strokes")  # 20-30 % holes
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from provjax.metrics.inpainting import RATIO_BINS, bin_label, ratio_bin

__all__ = ["KINDS", "RATIO_BINS", "bin_label", "free_form_mask", "ratio_bin"]

KINDS = ("strokes", "blobs")
MAX_STROKES = 64  # strokes drawn before the outlines are grown instead
_VERTICES = (4, 10)  # segments per stroke
_MAX_TURN = 2 * math.pi / 5  # largest change of direction at a vertex
_BRUSH = (0.03, 0.10)  # brush width, as a fraction of the shorter side
_SEGMENT = (0.05, 0.25)  # segment length, as a fraction of sqrt(height * width)
_BUMPS = (1, 3)  # Gaussian bumps per blob field
_BUMP_RADIUS = (0.1, 0.35)  # a bump's semi-axes, as a fraction of each side
_ROUGHNESS = 0.6  # weight of the low-pass noise that roughens blob outlines
_NOISE_CELLS = 6  # the roughening noise has about this many cells a side
_FIELD_SIDE = 64  # blob fields are computed at most this many pixels a side, then upsampled


def _resize(field: np.ndarray, height: int, width: int) -> np.ndarray:
  """A float field resized bicubically to HxW."""
  image = Image.fromarray(field.astype(np.float32))
  return np.asarray(image.resize((width, height), Image.Resampling.BICUBIC), np.float64)


def _smooth_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """HxW low-pass noise, about unit variance: a coarse Gaussian grid upsampled bicubically."""
  return _resize(rng.standard_normal((_NOISE_CELLS, _NOISE_CELLS)), height, width)


def _bounce(position: float, step: float, size: int) -> tuple[float, float]:
  """(new position, new step) of a move along one axis that reflects off the frame's edges."""
  target = position + step
  if not 0 <= target <= size - 1:
    step = -step
    target = min(max(position + step, 0.0), size - 1.0)
  return target, step


def _stroke(draw: ImageDraw.ImageDraw, rng: np.random.Generator, height: int, width: int):
  """Draws one random-walk brush stroke on `draw`; returns its first vertex (x, y).

  The stroke is a thick polyline with a disc at each vertex, which rounds
  the joints and ends (cheaper than Pillow's curved joints). A segment that
  would leave the frame is mirrored back into it, so strokes do not run
  along the edges.
  """
  brush = max(1, round(rng.uniform(*_BRUSH) * min(height, width)))
  segments = int(rng.integers(_VERTICES[0], _VERTICES[1] + 1))
  turns = rng.uniform(-_MAX_TURN, _MAX_TURN, segments)
  lengths = rng.uniform(*_SEGMENT, segments) * math.sqrt(height * width)
  angle = rng.uniform(0, 2 * math.pi)
  x, y = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
  points = [(x, y)]
  for turn, length in zip(turns.tolist(), lengths.tolist()):
    angle += turn
    x, dx = _bounce(x, length * math.cos(angle), width)
    y, dy = _bounce(y, length * math.sin(angle), height)
    angle = math.atan2(dy, dx)
    points.append((x, y))
  draw.line(points, fill=255, width=brush)
  r = (brush - 1) / 2  # Pillow's ellipse box is inclusive: this disc is `brush` pixels across
  for px, py in points:
    draw.ellipse((px - r, py - r, px + r, py + r), fill=255)
  return points[0]


def _trim_last(before: np.ndarray, after: np.ndarray, count: int, start) -> np.ndarray:
  """`after` less the last stroke's new pixels farthest from its start, so `count` remain.

  The last stroke (`after` minus `before`) covered more than the pixels that
  were missing, so shortening it alone reaches `count`: its kept part ends in
  an arc around its first vertex `start` (x, y).
  """
  excess = int(np.count_nonzero(after)) - count
  if excess == 0:
    return after
  new = np.flatnonzero(after & ~before)
  rows, cols = np.divmod(new, after.shape[1])
  far = (rows - start[1]) ** 2 + (cols - start[0]) ** 2  # Pillow puts pixel centres on integers
  out = after.ravel().copy()
  out[new[np.argpartition(-far, excess - 1)[:excess]]] = False
  return out.reshape(after.shape)


def _grow(rng: np.random.Generator, mask: np.ndarray, count: int) -> np.ndarray:
  """`mask` (not empty) grown at its outline to exactly `count` pixels.

  Background pixels join in order of their city-block distance to the hole,
  ties broken by smooth noise, so a part-ring is added in arcs rather than as
  scattered pixels.
  """
  noise = _smooth_noise(rng, *mask.shape)
  tiebreak = 0.99 * (noise - noise.min()) / max(float(np.ptp(noise)), 1e-12)
  key = ndimage.distance_transform_cdt(~mask, metric="taxicab") + tiebreak
  outside = np.flatnonzero(~mask)
  change = count - int(np.count_nonzero(mask))
  out = mask.ravel().copy()
  out[outside[np.argpartition(key.ravel()[outside], change - 1)[:change]]] = True
  return out.reshape(mask.shape)


def _strokes(rng: np.random.Generator, height: int, width: int, count: int) -> np.ndarray:
  """Brush strokes covering exactly `count` pixels: the last one shortened, or all grown."""
  canvas = Image.new("L", (width, height), 0)
  draw = ImageDraw.Draw(canvas)
  for _ in range(MAX_STROKES):
    before = canvas.copy()
    start = _stroke(draw, rng, height, width)
    if height * width - canvas.histogram()[0] >= count:  # C-side count of the painted pixels
      return _trim_last(np.asarray(before) > 0, np.asarray(canvas) > 0, count, start)
  return _grow(rng, np.asarray(canvas) > 0, count)


def _blob_field(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """A sum of random rotated Gaussian bumps, each roughened by its own low-pass noise.

  The field is smooth, so it is computed on a grid of at most _FIELD_SIDE
  pixels a side and upsampled: the outline it gives is the same, at a
  fraction of the cost.
  """
  scale = min(1.0, _FIELD_SIDE / max(height, width))
  rows, cols = max(1, round(height * scale)), max(1, round(width * scale))
  y = ((np.arange(rows) + 0.5) * (height / rows))[:, None]
  x = ((np.arange(cols) + 0.5) * (width / cols))[None, :]
  field = np.zeros((rows, cols))
  for _ in range(int(rng.integers(_BUMPS[0], _BUMPS[1] + 1))):
    cy, cx = rng.uniform(0.15, 0.85) * height, rng.uniform(0.15, 0.85) * width
    ry, rx = rng.uniform(*_BUMP_RADIUS) * height, rng.uniform(*_BUMP_RADIUS) * width
    theta, weight = rng.uniform(0, math.pi), rng.uniform(0.6, 1.0)
    u = ((x - cx) * math.cos(theta) + (y - cy) * math.sin(theta)) / rx
    v = (-(x - cx) * math.sin(theta) + (y - cy) * math.cos(theta)) / ry
    log_bump = -0.5 * (u * u + v * v) + _ROUGHNESS * _smooth_noise(rng, rows, cols)
    field += weight * np.exp(log_bump)
  return _resize(field, height, width) if (rows, cols) != (height, width) else field


def _blobs(rng: np.random.Generator, height: int, width: int, count: int) -> np.ndarray:
  """The `count` pixels where a blob field is highest."""
  field = _blob_field(rng, height, width).ravel()
  mask = np.zeros(field.size, bool)
  mask[np.argpartition(-field, count - 1)[:count]] = True
  return mask.reshape(height, width)


def _count_range(index: int, pixels: int) -> tuple[int, int]:
  """The smallest and largest hole-pixel counts k whose ratio k / pixels falls in bin `index`.

  Float products can land one off, so each end is nudged with the very
  comparison bin_of_ratio makes.
  """
  lo, hi = RATIO_BINS[index]
  low, high = math.floor(lo * pixels) + 1, math.floor(hi * pixels)
  low -= (low - 1) / pixels > lo
  low += low / pixels <= lo
  high += (high + 1) / pixels <= hi
  high -= high / pixels > hi
  if low > high:
    raise ValueError(f"a {pixels}-pixel mask cannot have a hole ratio in {bin_label(index)}")
  return low, high


def free_form_mask(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    ratio_bin: int | None = None,  # pylint: disable=redefined-outer-name
    kind: str | None = None,
) -> np.ndarray:
  """A random hole mask whose hole ratio lies in bin `ratio_bin` of RATIO_BINS.

  Args:
    rng: every random choice is drawn from it; equal states give equal masks.
    height, width: the mask's size in pixels.
    ratio_bin: the bin the hole ratio must fall in; None draws one uniformly
      from RATIO_BINS, so ratios range over (1 %, 60 %].
    kind: "strokes" or "blobs" (KINDS); None draws one, each half the time.

  Returns:
    HxW bool, True = hole. Its hole count is uniform over the counts the
    bin allows (the ratio is uniform within the bin).

  Raises:
    ValueError: for an unknown kind or bin, a size under 1 pixel, or one
      with too few pixels for any ratio in the bin (under 10 pixels).
  """
  if height < 1 or width < 1:
    raise ValueError(f"free_form_mask: size {height}x{width} has no pixels")
  if kind is None:
    kind = KINDS[int(rng.integers(len(KINDS)))]
  if kind not in KINDS:
    raise ValueError(f"unknown mask kind {kind!r}; expected one of {KINDS}")
  if ratio_bin is None:
    ratio_bin = int(rng.integers(len(RATIO_BINS)))
  if not 0 <= ratio_bin < len(RATIO_BINS):
    raise ValueError(f"ratio_bin {ratio_bin} is not in 0..{len(RATIO_BINS) - 1}")
  low, high = _count_range(ratio_bin, height * width)
  count = int(rng.integers(low, high + 1))
  draw = _strokes if kind == "strokes" else _blobs
  return draw(rng, height, width, count)
