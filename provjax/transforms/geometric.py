"""Geometric ops: they move pixels, so they map coords, geo and mask along.

Every op is `op(e, rng, **params) -> Edited`; parameters left as None are
drawn from `rng`. Matrices are forward maps (input -> output) acting on
homogeneous pixel-centre positions (x, y, 1), the OpenCV/PIL order; the ops
invert them and sample the input at the inverse-mapped output grid, using the
same positions for the image and the tables (`core.remap`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from provjax.transforms import core
from provjax.transforms.core import Edited

# ---------------------------------------------------------------- helpers ---


def _translate(tx: float, ty: float) -> np.ndarray:
  return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], np.float64)


def _rotation(angle_deg: float) -> np.ndarray:
  """Counter-clockwise rotation as seen on screen (y axis points down)."""
  a = np.deg2rad(angle_deg)
  c, s = np.cos(a), np.sin(a)
  return np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]], np.float64)


def _centre(h: int, w: int) -> tuple[float, float]:
  """(x, y) centre of an h x w image in pixel-centre coordinates."""
  return (w - 1) / 2.0, (h - 1) / 2.0


def _corners(h: int, w: int) -> np.ndarray:
  """4x2 (x, y) corners of the image extent [-0.5, w-0.5] x [-0.5, h-0.5]."""
  return np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]], np.float64)


def _fill(fill) -> tuple[int, int, int]:
  """Outside colour of a warp: black unless given (one value or RGB)."""
  if fill is None:
    return (0, 0, 0)
  return tuple(int(v) for v in np.broadcast_to(fill, 3))


def warp_matrix(
    e: Edited, matrix: np.ndarray, out_shape: tuple[int, int], fill=(0, 0, 0)
) -> Edited:
  """Warps `e` by a forward 3x3 (or 2x3) matrix onto an `out_shape` canvas.

  Args:
    e: the record to warp.
    matrix: forward map from input (x, y, 1) to output (x, y, w).
    out_shape: (height, width) of the output.
    fill: colour of output pixels with no source.
  """
  m = np.asarray(matrix, np.float64)
  if m.shape == (2, 3):
    m = np.vstack([m, [0, 0, 1]])
  inv = np.linalg.inv(m)
  ho, wo = out_shape
  ys, xs = np.meshgrid(
      np.arange(ho, dtype=np.float64), np.arange(wo, dtype=np.float64), indexing="ij"
  )
  den = inv[2, 0] * xs + inv[2, 1] * ys + inv[2, 2]
  # Points mapped from behind the camera (den <= 0) have no source.
  safe = np.where(den > 1e-12, den, 1.0)
  px = (inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]) / safe
  py = (inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]) / safe
  px[den <= 1e-12] = -1e9
  return core.remap(e, py.astype(np.float32), px.astype(np.float32), fill)


def homography_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
  """3x3 H with H @ (src, 1) ~ (dst, 1) for four (x, y) point pairs."""
  rows, rhs = [], []
  for (x, y), (u, v) in zip(np.asarray(src, float), np.asarray(dst, float)):
    rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
    rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    rhs += [u, v]
  h = np.linalg.solve(np.array(rows), np.array(rhs))
  return np.append(h, 1.0).reshape(3, 3)


# -------------------------------------------------------------- size ops ---


def resize(
    e: Edited,
    rng: np.random.Generator | None = None,
    size: tuple[int, int] | None = None,
    scale_range: tuple[float, float] = (0.5, 1.5),
) -> Edited:
  """Resizes to `size` = (height, width) with antialiased bilinear filtering.

  When `size` is None each side is scaled by an independent factor drawn
  from `scale_range`. The image comes from PIL (which antialiases when
  shrinking) using the same pixel-centre map as the tables:
  input = (output + 0.5) * in / out - 0.5.
  """
  h, w = e.shape
  if size is None:
    fy, fx = rng.uniform(*scale_range, size=2)
    size = (max(1, round(h * fy)), max(1, round(w * fx)))
  ho, wo = int(size[0]), int(size[1])
  if (ho, wo) == (h, w):
    return e
  py = (np.arange(ho, dtype=np.float32) + 0.5) * (h / ho) - 0.5
  px = (np.arange(wo, dtype=np.float32) + 0.5) * (w / wo) - 0.5
  py, px = np.meshgrid(py, px, indexing="ij")
  image = np.asarray(Image.fromarray(e.image).resize((wo, ho), Image.Resampling.BILINEAR))
  return core.remap(e, py, px, image=image)


def scale(
    e: Edited,
    rng: np.random.Generator | None = None,
    factor: float | None = None,
    factor_range: tuple[float, float] = (0.6, 1.2),
) -> Edited:
  """Scales both sides by `factor` (drawn from `factor_range` if None)."""
  if factor is None:
    factor = rng.uniform(*factor_range)
  h, w = e.shape
  return resize(e, rng, size=(max(1, round(h * factor)), max(1, round(w * factor))))


def aspect(
    e: Edited,
    rng: np.random.Generator | None = None,
    ratio: float | None = None,
    ratio_range: tuple[float, float] = (0.6, 1.6),
) -> Edited:
  """Multiplies width/height by `ratio` while keeping the area.

  `ratio` is drawn log-uniformly from `ratio_range` when None, so squashing
  and stretching are equally likely.
  """
  if ratio is None:
    ratio = float(np.exp(rng.uniform(*np.log(ratio_range))))
  h, w = e.shape
  r = np.sqrt(ratio)
  return resize(e, rng, size=(max(1, round(h / r)), max(1, round(w * r))))


def to_size(e: Edited, size: int) -> Edited:
  """Final resize to size x size, as the data pipelines feed the models."""
  return resize(e, None, size=(size, size))


# -------------------------------------------------------- crop, pad, flip ---


def crop(
    e: Edited,
    rng: np.random.Generator | None = None,
    box: tuple[int, int, int, int] | None = None,
    frac_range: tuple[float, float] = (0.5, 0.9),
) -> Edited:
  """Crops `box` = (top, left, height, width), exactly, by slicing.

  When `box` is None each side keeps a fraction drawn from `frac_range`, at a
  random position.
  """
  h, w = e.shape
  if box is None:
    ch = max(1, round(h * rng.uniform(*frac_range)))
    cw = max(1, round(w * rng.uniform(*frac_range)))
    box = (int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw)
  top, left, ch, cw = (int(v) for v in box)
  if not (0 <= top and 0 <= left and ch > 0 and cw > 0 and top + ch <= h and left + cw <= w):
    raise ValueError(f"crop box {box} outside a {h}x{w} image")
  return core.slice_record(e, slice(top, top + ch), slice(left, left + cw))


def pad(
    e: Edited,
    rng: np.random.Generator | None = None,
    widths: tuple[int, int, int, int] | None = None,
    fill=None,
    max_frac: float = 0.25,
) -> Edited:
  """Pads (top, bottom, left, right) with a constant colour.

  Padded pixels have coords and geo -1. When None, each width is drawn up to
  `max_frac` of the side and `fill` is a random colour.
  """
  h, w = e.shape
  if widths is None:
    widths = tuple(int(rng.integers(0, int(max_frac * s) + 1)) for s in (h, h, w, w))
  if fill is None:
    fill = rng.integers(0, 256, size=3) if rng is not None else (0, 0, 0)
  t, b, l, r = (int(v) for v in widths)
  spec = ((t, b), (l, r))
  image = np.empty((h + t + b, w + l + r, 3), np.uint8)
  image[:] = np.asarray(fill, np.uint8)
  image[t : t + h, l : l + w] = e.image
  table = lambda a: np.pad(a, spec + ((0, 0),), constant_values=core.INVALID)
  geo = None if e.geo is None else table(e.geo)
  return Edited(image, table(e.coords), np.pad(e.mask, spec), geo)


def hflip(e: Edited, rng: np.random.Generator | None = None) -> Edited:
  """Mirrors left-right."""
  return core.slice_record(e, slice(None), slice(None, None, -1))


def vflip(e: Edited, rng: np.random.Generator | None = None) -> Edited:
  """Mirrors top-bottom."""
  return core.slice_record(e, slice(None, None, -1), slice(None))


def flip(
    e: Edited, rng: np.random.Generator | None = None, horizontal: bool | None = None
) -> Edited:
  """Horizontal or vertical flip; horizontal with p=0.8 when not given."""
  if horizontal is None:
    horizontal = bool(rng.random() < 0.8)
  return hflip(e) if horizontal else vflip(e)


# ----------------------------------------------------------------- warps ---


def rotation_matrix(
    h: int, w: int, angle: float, expand: bool
) -> tuple[np.ndarray, tuple[int, int]]:
  """Forward matrix and output shape of a rotation about the image centre.

  With `expand` the canvas grows to the rotated extent's bounding box (as
  PIL's `rotate(expand=True)`); otherwise it keeps h x w.
  """
  shape = (h, w)
  if expand:
    rot = _rotation(angle)[:2, :2]
    pts = _corners(h, w) @ rot.T
    ext = pts.max(0) - pts.min(0)  # (width, height) of the rotated extent
    shape = (max(1, int(np.ceil(ext[1] - 1e-3))), max(1, int(np.ceil(ext[0] - 1e-3))))
  cx, cy = _centre(h, w)
  ox, oy = _centre(*shape)
  return _translate(ox, oy) @ _rotation(angle) @ _translate(-cx, -cy), shape


def rotate(
    e: Edited,
    rng: np.random.Generator | None = None,
    angle: float | None = None,
    expand: bool | None = None,
    fill=None,
    max_angle: float = 30.0,
) -> Edited:
  """Rotates counter-clockwise by `angle` degrees about the centre.

  When None, `angle` is uniform in [-max_angle, max_angle] and `expand` a
  coin flip (False when no rng is given). Pixels rotated in from outside the
  input have coords -1.
  """
  if angle is None:
    angle = rng.uniform(-max_angle, max_angle)
  if expand is None:
    expand = rng is not None and bool(rng.random() < 0.5)
  m, shape = rotation_matrix(*e.shape, angle, expand)
  return warp_matrix(e, m, shape, _fill(fill))


def random_affine_matrix(
    rng: np.random.Generator,
    h: int,
    w: int,
    max_angle: float = 15.0,
    scale_range: tuple[float, float] = (0.8, 1.2),
    max_shear: float = 10.0,
    max_translate: float = 0.1,
) -> np.ndarray:
  """Forward 3x3 matrix: rotation, scale, shear about the centre, then shift."""
  angle = rng.uniform(-max_angle, max_angle)
  s = rng.uniform(*scale_range)
  shear = np.tan(np.deg2rad(rng.uniform(-max_shear, max_shear)))
  tx, ty = rng.uniform(-max_translate, max_translate, size=2) * (w, h)
  cx, cy = _centre(h, w)
  lin = (
      _rotation(angle)
      @ np.diag([s, s, 1.0])
      @ np.array([[1, shear, 0], [0, 1, 0], [0, 0, 1]], np.float64)
  )
  return _translate(cx + tx, cy + ty) @ lin @ _translate(-cx, -cy)


def affine(
    e: Edited,
    rng: np.random.Generator | None = None,
    matrix: np.ndarray | None = None,
    fill=None,
    **ranges,
) -> Edited:
  """Warps by a 2x3 (or 3x3) forward affine matrix on a same-size canvas.

  When `matrix` is None, it is drawn by `random_affine_matrix(rng, h, w,
  **ranges)` (small rotation, scale, shear and translation).
  """
  if matrix is None:
    matrix = random_affine_matrix(rng, *e.shape, **ranges)
  return warp_matrix(e, matrix, e.shape, _fill(fill))


def random_homography(
    rng: np.random.Generator, h: int, w: int, distortion: float = 0.1
) -> np.ndarray:
  """Homography moving each corner by up to `distortion` of the side."""
  src = _corners(h, w)
  dst = src + rng.uniform(-distortion, distortion, size=(4, 2)) * (w, h)
  return homography_from_points(src, dst)


def perspective(
    e: Edited,
    rng: np.random.Generator | None = None,
    matrix: np.ndarray | None = None,
    fill=None,
    distortion: float = 0.1,
) -> Edited:
  """Warps by a forward 3x3 homography on a same-size canvas.

  When `matrix` is None the four corners are jittered by up to `distortion`
  of the side (`random_homography`).
  """
  if matrix is None:
    matrix = random_homography(rng, *e.shape, distortion)
  return warp_matrix(e, matrix, e.shape, _fill(fill))
