"""The copy-detection augmentation recipe: training views and evaluation query families.

`copy_view` draws one training view as SSCD's "advanced" recipe with CopyNCE's additions
(specs/copy_detection.md sections 4 and 6); `make_query` draws an evaluation query of one named
family (`QUERY_FAMILIES`), so a benchmark can report retrieval per family. Both are built from
the transforms package's ops, so every view carries an exact PixTrace table (`Edited.coords`)
from which `pixtrace.pair_overlaps` derives the CopyNCE targets.

Donor images (the backgrounds of image-in-image views) must come from the same data split as the
copies: a donor from the evaluation split would leak it into training. Their pixels get coords -1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from provjax.transforms import core
from provjax.transforms import geometric as geo
from provjax.transforms import overlays
from provjax.transforms import photometric as photo
from provjax.transforms.core import Edited

_BLUR_AT = 224  # SSCD's blur radii (1-5 px) are meant for 224 px views

# ------------------------------------------------------------ building blocks ---


def rot90(e: Edited, k: int) -> Edited:
  """Rotates by k quarter turns counter-clockwise, exactly (by transposing the arrays)."""
  turn = lambda a: np.ascontiguousarray(np.rot90(a, k))
  return Edited(turn(e.image), turn(e.coords), turn(e.mask), None if e.geo is None else turn(e.geo))


def crop_resize(
    e: Edited, out_shape: tuple[int, int], box: tuple[int, int, int, int] | None = None
) -> Edited:
  """`geometric.crop` to `box` then `geometric.resize` to `out_shape`, in one separable pass.

  The map is axis aligned, so the tables are interpolated along rows and then columns, several
  times faster than the general warp, with the same pixel-centre map and validity rule
  (-1 where any bilinear neighbour is invalid); the image is PIL's antialiased resize of the box.

  Args:
    e: the record.
    out_shape: (height, width) of the result.
    box: (top, left, height, width) inside the image; the whole image if None.
  """
  top, left, bh, bw = box if box is not None else (0, 0, *e.shape)
  rows, cols = slice(top, top + bh), slice(left, left + bw)
  if (bh, bw) == tuple(out_shape):
    return core.slice_record(e, rows, cols)
  ho, wo = out_shape
  # Views of the box only: the tables' work then scales with the output, not the input.
  py = (np.arange(ho, dtype=np.float32) + 0.5) * np.float32(bh / ho) - 0.5
  px = (np.arange(wo, dtype=np.float32) + 0.5) * np.float32(bw / wo) - 0.5
  image = Image.fromarray(np.ascontiguousarray(e.image[rows, cols]))
  image = np.asarray(image.resize((wo, ho), Image.Resampling.BILINEAR))
  iy = np.clip(np.floor(py + 0.5), 0, bh - 1).astype(np.intp)
  ix = np.clip(np.floor(px + 0.5), 0, bw - 1).astype(np.intp)
  table = lambda t: None if t is None else _lerp_table(t[rows, cols], py, px)
  return Edited(image, table(e.coords), e.mask[rows, cols][iy][:, ix], table(e.geo))


def _neighbours(p: np.ndarray, n: int):
  """Bilinear neighbours and unclamped weight along one axis, as core.Sampler takes them (the
  extrapolation in the border half-pixel is exact for affine tables)."""
  i0 = np.clip(np.floor(p), 0, max(n - 2, 0)).astype(np.intp)
  return i0, np.minimum(i0 + 1, n - 1), (p - i0).astype(np.float32)


def _lerp_table(table: np.ndarray, py: np.ndarray, px: np.ndarray) -> np.ndarray:
  """Bilinear resample of a coordinate table on the grid py x px, one axis at a time, -1 where
  any of the four neighbours is invalid."""
  y0, y1, ty = _neighbours(py, table.shape[0])
  x0, x1, tx = _neighbours(px, table.shape[1])
  out = np.empty((len(py), len(px), 2), np.float32)
  for c in range(2):  # 2-D planes: row gathers are contiguous copies, ~3x faster than 3-D
    plane = table[..., c]
    rows = plane[y0] + (plane[y1] - plane[y0]) * ty[:, None]
    out[..., c] = rows[:, x0] + (rows[:, x1] - rows[:, x0]) * tx
  ok = core.valid(table)
  ok = ok[y0] & ok[y1]
  ok = ok[:, x0] & ok[:, x1]
  if not ok.all():
    out[~ok] = core.INVALID
  return out


def random_box(
    rng: np.random.Generator,
    shape: tuple[int, int],
    area_range: tuple[float, float],
    ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
  """(top, left, height, width) of a random box, torchvision RandomResizedCrop style.

  The area fraction is uniform in `area_range` and the width/height ratio log-uniform in
  `ratio_range`; a box that does not fit is clamped to the image (instead of torchvision's
  ten retries), which only trims the largest boxes.
  """
  h, w = shape
  area = h * w * rng.uniform(*area_range)
  ratio = np.exp(rng.uniform(*np.log(ratio_range)))
  bh = int(np.clip(round(np.sqrt(area / ratio)), 1, h))
  bw = int(np.clip(round(np.sqrt(area * ratio)), 1, w))
  return int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1)), bh, bw


def random_resized_crop(
    e: Edited,
    rng: np.random.Generator,
    size: int,
    area_range: tuple[float, float] = (0.08, 1.0),
    ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
) -> Edited:
  """torchvision's RandomResizedCrop: a `random_box` crop resized to size x size."""
  return crop_resize(e, (size, size), random_box(rng, e.shape, area_range, ratio_range))


def image_in_image(
    e: Edited,
    rng: np.random.Generator,
    donor: np.ndarray,
    size: int | None = None,
    scale_range: tuple[float, float] = (0.25, 0.5),
) -> Edited:
  """Pastes the copy into a donor image, the donor's pixels getting coords -1.

  Args:
    e: the copy.
    rng: draws the scale and position.
    donor: HxWx3 image of the same data split.
    size: the canvas is the donor resized to size x size, or the donor as it is if None.
    scale_range: the copy's longer side as a fraction of the canvas's shorter side (its aspect
      is kept).
  """
  canvas = core.as_rgb_uint8(donor)
  if size is not None and canvas.shape[:2] != (size, size):
    canvas = np.asarray(Image.fromarray(canvas).resize((size, size), Image.Resampling.BILINEAR))
  ch, cw = canvas.shape[:2]
  side = rng.uniform(*scale_range) * min(ch, cw)
  h, w = e.shape
  ph, pw = max(1, round(side * h / max(h, w))), max(1, round(side * w / max(h, w)))
  copy = crop_resize(e, (ph, pw))
  top, left = int(rng.integers(0, ch - ph + 1)), int(rng.integers(0, cw - pw + 1))
  e = geo.pad(copy, widths=(top, ch - ph - top, left, cw - pw - left), fill=0)
  image = canvas.copy()
  image[top : top + ph, left : left + pw] = copy.image
  return core.replace(e, image=image)


def random_erase(
    e: Edited,
    rng: np.random.Generator,
    area_range: tuple[float, float] = (0.02, 0.2),
    ratio_range: tuple[float, float] = (0.3, 3.3),
) -> Edited:
  """torchvision RandomErasing with random values; the erased pixels get coords -1."""
  top, left, bh, bw = random_box(rng, e.shape, area_range, ratio_range)
  image = e.image.copy()
  image[top : top + bh, left : left + bw] = rng.integers(0, 256, size=(bh, bw, 3), dtype=np.uint8)
  erased = np.zeros(e.shape, bool)
  erased[top : top + bh, left : left + bw] = True
  return core.invalidate(core.replace(e, image=image), erased, geometric=True)


def _shrink_pad(e: Edited, rng: np.random.Generator, max_frac: float = 0.25) -> Edited:
  """Padding by up to `max_frac` of each side with a random colour, keeping the image size.

  Equivalent to `geometric.pad` then a resize back, but the content is shrunk first so the
  tables never go through a general warp.
  """
  h, w = e.shape
  t, b, l, r = rng.uniform(0, max_frac, size=4) * (h, h, w, w)
  ph, pw = max(1, round(h * h / (h + t + b))), max(1, round(w * w / (w + l + r)))
  top, left = round((h - ph) * t / max(t + b, 1e-6)), round((w - pw) * l / max(l + r, 1e-6))
  widths = (top, h - ph - top, left, w - pw - left)
  return geo.pad(crop_resize(e, (ph, pw)), widths=widths, fill=rng.integers(0, 256, size=3))


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# RGB -> YIQ (NTSC); a hue shift is a rotation of the (I, Q) chroma plane.
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def linear_color_jitter(
    e: Edited, rng: np.random.Generator, strength: tuple[float, float, float, float]
) -> Edited:
  """torchvision-style ColorJitter(brightness, contrast, saturation, hue) as one colour matrix.

  Factors are drawn as 1 +- strength (hue: +- strength turns) and applied in that order, as in
  `photometric.color_jitter`, with no clipping in between, so all four compose into one affine
  map of RGB: brightness and contrast (about the mean luma) scale, saturation mixes with the
  pixel's luma, and hue rotates the YIQ chroma plane (the linear stand-in for an HSV hue turn).
  One 3x3 product is several times faster than the PIL HSV round trip, which matters at 224 px.
  """
  sb, sc, ss, sh = strength
  b, c, sat = (1 + rng.uniform(-v, v) for v in (sb, sc, ss))
  angle = 2 * np.pi * rng.uniform(-sh, sh)
  rot = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
  hue = np.linalg.inv(_YIQ) @ rot @ _YIQ
  luma = np.ones((3, 1)) * _LUMA[None, :]  # x -> its luma in all three channels
  mix = hue @ (sat * np.eye(3) + (1 - sat) * luma)
  x = e.image.reshape(-1, 3).astype(np.float32)
  mean = b * float((x @ _LUMA).mean())
  out = x @ (mix * (c * b)).T.astype(np.float32)
  out += (mix @ np.full(3, (1 - c) * mean)).astype(np.float32)
  image = np.clip(out, 0, 255, out=out).astype(np.uint8).reshape(e.image.shape)
  return core.replace(e, image=image)


def _coords_only(e: Edited) -> Edited:
  """Drops `geo` where it equals coords (no malicious edit), halving every later warp's table work."""
  return core.replace(e, geo=None) if e.geo is not None and not e.mask.any() else e


def _blur_radius(e: Edited, rng: np.random.Generator, radius_range: tuple[float, float]) -> float:
  """A blur radius from a range given for 224 px images, scaled to this image."""
  return rng.uniform(*radius_range) * min(e.shape) / _BLUR_AT


def _pick_donor(donors: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
  """One donor, uniformly."""
  if not donors:
    raise ValueError("image-in-image needs donor images (from the same data split)")
  return donors[int(rng.integers(len(donors)))]


# ---------------------------------------------------------------- training ---


def copy_view(
    e: Edited,
    rng: np.random.Generator,
    *,
    donors: Sequence[np.ndarray],
    size: int,
    p_image_in_image: float = 0.2,
) -> Edited:
  """One training view: SSCD "advanced" with CopyNCE's additions, ending at size x size.

  In order: horizontal flip (p 0.5) and vertical flip (p 0.1); p 0.05 a rotation by 90, 180 or
  270 degrees; p 0.1 text (size 0.1-0.3, opacity 0.1-1); p 0.2 an emoji (size 0.1-0.5, opacity
  0.7-1); p 0.05 a free rotation (0-359 degrees); a RandomResizedCrop (area 0.08-1) or, with
  `p_image_in_image` when donors are given, the copy pasted into a donor at 0.25-0.5 of its side;
  p 0.1 a perspective or affine warp and p 0.1 padding (then resized back); p 0.8 colour jitter
  (0.8, 0.8, 0.8, 0.2); p 0.2 grayscale; p 0.5 Gaussian blur (radius 1-5 at 224 px, scaled to
  `size`); p 0.1 pixelization; p 0.2 JPEG (quality 0-100); p 0.1 random erasing.

  Args:
    e: the original (`core.identity(image)`) or an already edited record.
    rng: all draws come from it, so a seed fixes the view.
    donors: uint8 images of the same data split for image-in-image; may be empty.
    size: output side.
    p_image_in_image: probability of image-in-image instead of the crop.
  """
  e = _coords_only(e)
  if rng.random() < 0.5:
    e = geo.hflip(e)
  if rng.random() < 0.1:
    e = geo.vflip(e)
  if rng.random() < 0.05:
    e = rot90(e, int(rng.integers(1, 4)))
  if rng.random() < 0.1:
    e = _coords_only(overlays.overlay_text(e, rng, opacity=rng.uniform(0.1, 1.0)))
  if rng.random() < 0.2:
    e = _coords_only(overlays.overlay_emoji(e, rng))
  if rng.random() < 0.05:
    e = geo.rotate(e, rng, angle=rng.uniform(0, 359))
  if donors and rng.random() < p_image_in_image:
    e = image_in_image(e, rng, _pick_donor(donors, rng), size)
  else:
    e = random_resized_crop(e, rng, size)
  if rng.random() < 0.1:
    if rng.random() < 0.5:
      e = geo.perspective(e, rng, distortion=0.15)
    else:
      e = geo.affine(e, rng, max_angle=180.0, max_shear=45.0)
  if rng.random() < 0.1:
    e = _shrink_pad(e, rng)
  if rng.random() < 0.8:
    e = linear_color_jitter(e, rng, (0.8, 0.8, 0.8, 0.2))
  if rng.random() < 0.2:
    e = photo.grayscale(e)
  if rng.random() < 0.5:
    e = photo.blur(e, radius=_blur_radius(e, rng, (1.0, 5.0)))
  if rng.random() < 0.1:
    e = photo.pixelize(e, rng, ratio_range=(0.2, 0.5))
  if rng.random() < 0.2:
    e = photo.jpeg(e, rng, quality_range=(0, 100))
  if rng.random() < 0.1:
    e = random_erase(e, rng)
  return e


# ------------------------------------------------------------------ queries ---

_Family = Callable[[Edited, np.random.Generator, Sequence[np.ndarray]], Edited]


def _benign(e, rng, donors):
  e = geo.scale(e, rng, factor_range=(0.5, 1.25))
  if rng.random() < 0.5:
    e = photo.color_jitter(e, rng, strength=0.5)
  if rng.random() < 0.5:
    e = photo.blur(e, rng, radius_range=(0.3, 1.2))
  return photo.jpeg(e, rng, quality_range=(30, 90))


def _crop(e, rng, donors):
  return geo.crop(e, box=random_box(rng, e.shape, (0.3, 0.5)))


def _overlay(e, rng, donors):
  e = overlays.overlay_text(e, rng, opacity=rng.uniform(0.5, 1.0))
  return overlays.overlay_emoji(e, rng)


def _image_in_image(e, rng, donors):
  return image_in_image(e, rng, _pick_donor(donors, rng))


def _some(rng: np.random.Generator, n: int, at_least: int) -> np.ndarray:
  """Indices (sorted) of a random subset of range(n) with at least `at_least` members."""
  return np.sort(rng.choice(n, size=int(rng.integers(at_least, n + 1)), replace=False))


def _geometric(e, rng, donors):
  ops = (
      lambda e: geo.rotate(e, rng, max_angle=30.0),
      lambda e: geo.flip(e, rng),
      lambda e: geo.perspective(e, rng, distortion=0.1),
  )
  for i in _some(rng, len(ops), 1):
    e = ops[i](e)
  return e


def _photometric(e, rng, donors):
  ops = (
      lambda e: photo.color_jitter(e, rng, strength=2.0),  # factors 1 +- 0.8, hue +- 0.2
      photo.grayscale,
      lambda e: photo.blur(e, radius=max(0.5, _blur_radius(e, rng, (1.0, 5.0)))),
      lambda e: photo.noise(e, rng, std_range=(5.0, 25.0)),
  )
  for i in _some(rng, len(ops), 2):
    e = ops[i](e)
  return e


# benign: rescale 0.5-1.25 and JPEG 30-90, maybe mild colour and blur; crop: 30-50 % of the
# area; overlay: text and an emoji; image_in_image: inside a donor at 25-50 % of its side;
# geometric: some of rotation (+-30 degrees), flip, perspective; photometric: two or more of
# strong colour jitter, grayscale, blur, noise; mixed: 2-4 of those six in random order.
_BASE: dict[str, _Family] = {
    "benign": _benign,
    "crop": _crop,
    "overlay": _overlay,
    "image_in_image": _image_in_image,
    "geometric": _geometric,
    "photometric": _photometric,
}


def _mixed(e, rng, donors):
  names = list(_BASE)
  for i in rng.choice(len(names), size=int(rng.integers(2, 5)), replace=False):
    e = _BASE[names[i]](e, rng, donors)
  return e


_FAMILIES: dict[str, _Family] = {**_BASE, "mixed": _mixed}
QUERY_FAMILIES = tuple(_FAMILIES)


def make_query(
    image: np.ndarray,
    rng: np.random.Generator,
    family: str,
    *,
    donors: Sequence[np.ndarray],
    size: int | None = None,
) -> Edited:
  """An evaluation query of `family` (see `QUERY_FAMILIES`) made from an original image.

  Args:
    image: the original, HxWx3 (or gray) uint8.
    rng: draws every parameter.
    family: a name from `QUERY_FAMILIES`.
    donors: images of the same split for image-in-image ("image_in_image" and "mixed" need them).
    size: final size x size resize, or None to keep the family's natural size (queries of a
      benchmark are not all square).

  Raises:
    KeyError: for an unknown family.
    ValueError: when the family needs donors and none are given.
  """
  if family not in _FAMILIES:
    raise KeyError(f"unknown query family {family!r}; choose from {QUERY_FAMILIES}")
  if family in ("image_in_image", "mixed") and not donors:
    raise ValueError(f"query family {family!r} needs donor images")
  e = _FAMILIES[family](core.identity(image), rng, donors)
  return e if size is None else geo.to_size(e, size)
