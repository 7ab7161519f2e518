"""Malicious manipulations: splice, copy-move and removal (inpainting).

Each op changes a random region covering ~3-25 % of the image (rectangle,
ellipse or random polygon; hard or feathered edge) and sets `mask` there.
Pixels inside the region show no content of the original at that place, so
their coords become -1, while `geo` keeps their geometric source position,
which is what `targets.source_mask` uses to map the mask back to the
original. Feathering fades the pasted content inwards from the region's
border, so pixels outside the mask are left bit-exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from provjax.transforms import core, inpaint
from provjax.transforms.core import Edited

SHAPES = ("rectangle", "ellipse", "polygon")
# Fraction of its bounding box a shape fills, to aim at the requested area.
_FILL = {"rectangle": 1.0, "ellipse": np.pi / 4, "polygon": 0.4}


def _polygon(rng: np.random.Generator, box) -> list[tuple[float, float]]:
  """A random star-shaped polygon (5-9 vertices) inscribed in `box`."""
  x0, y0, x1, y1 = box
  n = int(rng.integers(5, 10))
  # Jittered even angles: fully random ones can cluster into a sliver.
  ang = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n)
  ang += rng.uniform(0, 2 * np.pi)
  rad = rng.uniform(0.55, 1.0, n)
  cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
  return list(zip(cx + rx * rad * np.cos(ang), cy + ry * rad * np.sin(ang)))


def region_mask(
    rng: np.random.Generator,
    shape: tuple[int, int],
    area_range: tuple[float, float] = (0.03, 0.25),
    kind: str | None = None,
) -> np.ndarray:
  """HxW bool region of a random shape covering about `area_range`.

  Polygons' areas vary around their aim, so a draw more than 20 % outside
  the range is redrawn (up to 10 times).
  """
  kind = kind or str(rng.choice(SHAPES))
  for _ in range(10):
    region = _draw_region(rng, shape, area_range, kind)
    if 0.8 * area_range[0] <= region.mean() <= 1.2 * area_range[1]:
      break
  return region


def _draw_region(
    rng: np.random.Generator, shape: tuple[int, int], area_range: tuple[float, float], kind: str
) -> np.ndarray:
  """One random region of `kind` aiming at an area drawn from the range."""
  h, w = shape
  area = rng.uniform(*area_range) * h * w / _FILL[kind]
  ratio = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))  # width/height
  bh = int(np.clip(round(np.sqrt(area / ratio)), 2, h))
  bw = int(np.clip(round(area / bh), 2, w))
  top, left = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
  box = (left, top, left + bw - 1, top + bh - 1)
  canvas = Image.new("L", (w, h), 0)
  draw = ImageDraw.Draw(canvas)
  if kind == "rectangle":
    draw.rectangle(box, fill=255)
  elif kind == "ellipse":
    draw.ellipse(box, fill=255)
  else:
    draw.polygon(_polygon(rng, box), fill=255)
  return np.asarray(canvas) > 0


def _alpha(rng: np.random.Generator, region: np.ndarray, soft: bool | None) -> np.ndarray:
  """Blend weights: 1 inside a hard region, or feathered inwards if soft."""
  if soft is None:
    soft = bool(rng.random() < 0.5)
  alpha = region.astype(np.float32)
  if soft:
    alpha = ndimage.gaussian_filter(alpha, rng.uniform(1.0, 3.0)) * alpha
  return alpha


def _offset(rng: np.random.Generator, region: np.ndarray, shape, separate: bool) -> tuple[int, int]:
  """Random (dy, dx) keeping the region's box inside a frame of `shape`.

  With `separate`, shifts whose source overlaps the region by more than a
  quarter are redrawn (up to 20 times) so a copy-move actually moves.
  """
  ys, xs = np.nonzero(region)
  h, w = shape
  for _ in range(20):
    dy = int(rng.integers(-ys.min(), h - ys.max()))
    dx = int(rng.integers(-xs.min(), w - xs.max()))
    if not separate:
      break
    overlap = region & np.roll(region, (-dy, -dx), axis=(0, 1))
    if overlap.sum() <= 0.25 * region.sum():
      break
  return dy, dx


def _manipulated(e: Edited, image: np.ndarray, region: np.ndarray) -> Edited:
  """Records a malicious edit: new image, region masked, its coords -1."""
  e = core.invalidate(core.replace(e, image=image), region, geometric=False)
  return core.replace(e, mask=e.mask | region)


def _paste(
    e: Edited, rng: np.random.Generator, source: np.ndarray, region, soft, offset, separate: bool
) -> Edited:
  """Pastes `source` shifted by `offset` into `region` of `e`."""
  if region is None:
    region = region_mask(rng, e.shape)
  if not region.any():
    return e
  dy, dx = offset or _offset(rng, region, e.shape, separate)
  shifted = np.roll(source, (-dy, -dx), axis=(0, 1))  # shifted[y] = src[y+dy]
  image = core.blend(e.image, shifted, _alpha(rng, region, soft))
  return _manipulated(e, image, region)


def splice(
    e: Edited,
    rng: np.random.Generator,
    donor: np.ndarray,
    region: np.ndarray | None = None,
    soft: bool | None = None,
    offset: tuple[int, int] | None = None,
) -> Edited:
  """Pastes a region of another image (`donor`, resized to fit if needed).

  Args:
    e: the record to edit.
    rng: draws what is not given.
    donor: HxWx3 image the content comes from.
    region: HxW bool target region; random (`region_mask`) if None.
    soft: feathered edge; a coin flip if None.
    offset: (dy, dx), output pixel (y, x) takes donor pixel (y+dy, x+dx);
      random (keeping the region inside the donor) if None.
  """
  donor = core.as_rgb_uint8(donor)
  if donor.shape[:2] != e.shape:
    donor = np.asarray(
        Image.fromarray(donor).resize((e.shape[1], e.shape[0]), Image.Resampling.BILINEAR)
    )
  return _paste(e, rng, donor, region, soft, offset, separate=False)


def copy_move(
    e: Edited,
    rng: np.random.Generator,
    region: np.ndarray | None = None,
    soft: bool | None = None,
    offset: tuple[int, int] | None = None,
) -> Edited:
  """Copies another part of the image itself into `region`.

  Arguments as in `splice`; a random offset is chosen so the copied source
  overlaps the target region by at most a quarter when possible.
  """
  return _paste(e, rng, e.image, region, soft, offset, separate=True)


def remove(e: Edited, rng: np.random.Generator, region: np.ndarray | None = None) -> Edited:
  """Erases `region` (random if None) and inpaints it (`inpaint.inpaint`)."""
  if region is None:
    region = region_mask(rng, e.shape)
  return _manipulated(e, inpaint.inpaint(e.image, region, rng), region)


def random_manipulation(
    e: Edited,
    rng: np.random.Generator,
    donors: Sequence[np.ndarray] | Callable[[], np.ndarray] | None = None,
) -> Edited:
  """One of splice (only when `donors` are given), copy-move or removal.

  `donors` is a list to pick from, or a function that makes one donor: it
  is called only when a splice is drawn, so the others never pay for it.
  """
  kinds = ["copy_move", "remove"] + (["splice"] if donors else [])
  kind = kinds[int(rng.integers(len(kinds)))]
  if kind == "splice":
    donor = donors() if callable(donors) else donors[int(rng.integers(len(donors)))]
    return splice(e, rng, donor)
  return copy_move(e, rng) if kind == "copy_move" else remove(e, rng)
