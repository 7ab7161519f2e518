"""The `Edited` record and the sampling primitives every op builds on.

An `Edited` carries an image together with its PixTrace coordinate table
(specs/copy_detection.md section 6): for each output pixel, the (y, x) position
in the original image it came from, or -1 where it has none. Positions use the
pixel-centre convention: pixel i covers [i - 0.5, i + 0.5] and its centre is i.

Geometric ops are written as inverse maps (output pixel -> input position) and
applied to the image, the tables and the mask with the same positions, so the
tables compose exactly along chains of affine ops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

Op = Callable[["Edited", np.random.Generator], "Edited"]

INVALID = -1.0  # coordinate value for "no source in the original"
# Valid positions lie on the original's extent, so >= -0.5; resampling can
# put them a hair below, hence a threshold halfway to INVALID.
_VALID_ABOVE = -0.75


@dataclasses.dataclass(frozen=True)
class Edited:
  """An edited image and where each of its pixels came from.

  Attributes:
    image: HxWx3 uint8, the edited image.
    coords: HxWx2 float32, (y, x) source position in the original of each
      output pixel, or -1 (both entries) where the pixel has no source
      (padding, overlays, malicious content). Valid positions lie in
      [-0.5, H-0.5] x [-0.5, W-0.5] of the original (`valid` tells them).
      HxWx0 in a record made by `untracked`, which keeps no tables.
    mask: HxW bool, pixels whose content was maliciously changed (splice,
      copy-move target, removal); benign ops never set it.
    geo: HxWx2 float32 or None, like `coords` but ignoring malicious edits:
      the purely geometric source position, used to map `mask` back to the
      original (`targets.source_mask`). None means "same as coords".
  """

  image: np.ndarray
  coords: np.ndarray
  mask: np.ndarray
  geo: np.ndarray | None = None

  def __post_init__(self):
    # Cheap shape checks: a mismatched table silently corrupts every target
    # derived from it, so fail where the bug is made.
    h, w = self.image.shape[:2]
    if self.image.ndim != 3 or self.image.shape[2] != 3:
      raise ValueError(f"image must be HxWx3, got {self.image.shape}")
    if self.coords.shape not in ((h, w, 2), (h, w, 0)) or self.mask.shape != (h, w):
      raise ValueError(
          f"coords {self.coords.shape} / mask {self.mask.shape} "
          f"do not match image {self.image.shape}"
      )
    if self.geo is not None and self.geo.shape != (h, w, 2):
      raise ValueError(f"geo {self.geo.shape} does not match image")

  @property
  def shape(self) -> tuple[int, int]:
    """(height, width) of the edited image."""
    return self.image.shape[:2]

  @property
  def tracked(self) -> bool:
    """False for a record made by `untracked`: it carries no coordinate tables."""
    return self.coords.shape[-1] == 2

  @property
  def geometry(self) -> np.ndarray:
    """The geometric source table: `geo`, or `coords` when geo is unset."""
    return self.coords if self.geo is None else self.geo


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
  """Returns `image` as a contiguous HxWx3 uint8 array (gray is replicated)."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=2)
  if image.shape[2] == 4:
    image = image[..., :3]
  if image.dtype != np.uint8:
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
  return np.ascontiguousarray(image)


def pixel_grid(h: int, w: int) -> np.ndarray:
  """HxWx2 float32 table of each pixel's own (y, x) centre."""
  ys, xs = np.meshgrid(
      np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij"
  )
  return np.stack([ys, xs], axis=-1)


def identity(image: np.ndarray) -> Edited:
  """Wraps an original image: coords are the pixel grid, nothing is masked."""
  image = as_rgb_uint8(image)
  h, w = image.shape[:2]
  grid = pixel_grid(h, w)
  return Edited(image, grid, np.zeros((h, w), bool), grid.copy())


def untracked(image: np.ndarray) -> Edited:
  """Wraps an original image without coordinate tables (coords has no channels).

  For views whose tables nothing reads (a descriptor's contrastive views):
  every op then skips the table work (about a third of the time of the
  descriptor's views) and gives the same image and mask as on `identity(image)`.
  """
  image = as_rgb_uint8(image)
  h, w = image.shape[:2]
  return Edited(image, np.zeros((h, w, 0), np.float32), np.zeros((h, w), bool))


def compose(e: Edited, ops: Sequence[Op], rng: np.random.Generator) -> Edited:
  """Applies `ops` (each `op(e, rng) -> Edited`) in order."""
  for op in ops:
    e = op(e, rng)
  return e


def apply(image: np.ndarray, ops: Sequence[Op], rng: np.random.Generator) -> Edited:
  """Applies `ops` to an original image, starting from `identity(image)`."""
  return compose(identity(image), ops, rng)


def replace(e: Edited, **changes) -> Edited:
  """`dataclasses.replace` for `Edited` (kept here so ops read uniformly)."""
  return dataclasses.replace(e, **changes)


def valid(table: np.ndarray) -> np.ndarray:
  """HxW bool, True where a coords/geo table has a source position.

  Use this rather than `table >= 0`: positions in the original's border
  half-pixel, e.g. -0.2, are valid.
  """
  if table.shape[-1] == 0:
    raise ValueError("the record is untracked (core.untracked): it has no coordinate table")
  return table[..., 0] > _VALID_ABOVE


def invalidate(e: Edited, where: np.ndarray, *, geometric: bool) -> Edited:
  """Marks pixels in `where` as having no source.

  Args:
    e: the record to update.
    where: HxW bool, pixels to invalidate.
    geometric: True for benign content with no source (overlays), which is
      also removed from `geo`; False for malicious content, whose geometric
      source position is kept in `geo` so the mask can be mapped back.
  """
  if not e.tracked:
    return e
  coords = e.coords.copy()
  coords[where] = INVALID
  geo = e.geometry
  if geometric:
    geo = geo.copy()
    geo[where] = INVALID
  elif e.geo is None:
    geo = e.coords  # the old coords are the geometric positions
  return replace(e, coords=coords, geo=geo)


# --------------------------------------------------------------- sampling ---


def inside(py: np.ndarray, px: np.ndarray, h: int, w: int) -> np.ndarray:
  """True where position (py, px) lies on the input's extent."""
  eps = 1e-4  # tolerate rounding of positions that land exactly on an edge
  return (py >= -0.5 - eps) & (py <= h - 0.5 + eps) & (px >= -0.5 - eps) & (px <= w - 0.5 + eps)


def _neighbours(p: np.ndarray, n: int):
  """Lower/upper bilinear neighbour indices and the weight of the upper one.

  Indices are clamped to the array, but the weight is not, so positions in
  the half-pixel border are linearly extrapolated (exact for affine tables).
  """
  i0 = np.clip(np.floor(p), 0, max(n - 2, 0)).astype(np.intp)
  i1 = np.minimum(i0 + 1, n - 1)
  return i0, i1, (p - i0).astype(np.float32)[..., None]


class Sampler:
  """Bilinear sampling of HxW arrays at fixed positions (py, px).

  The neighbours and weights are computed once and shared by the image,
  the tables and the mask, so all of them follow exactly the same map.
  """

  def __init__(self, py: np.ndarray, px: np.ndarray, h: int, w: int):
    py, px = np.broadcast_arrays(np.asarray(py, np.float32), np.asarray(px, np.float32))
    self.py, self.px = py, px
    self.y0, self.y1, self.ty = _neighbours(py, h)
    self.x0, self.x1, self.tx = _neighbours(px, w)
    self.inside = inside(py, px, h, w)
    # Flat indices: np.take on a raveled array is ~5x faster than 2-D
    # fancy indexing, and gathers dominate the cost of a warp.
    self.flat = [
        self.y0 * w + self.x0,
        self.y0 * w + self.x1,
        self.y1 * w + self.x0,
        self.y1 * w + self.x1,
    ]

  def _corners(self, a: np.ndarray):
    flat = a.reshape(a.shape[0] * a.shape[1], -1)
    return tuple(np.take(flat, i, axis=0) for i in self.flat)

  def image(self, image: np.ndarray, fill=(0, 0, 0)) -> np.ndarray:
    """HxWx3 uint8 image, `fill` off the input; weights are clamped to
    [0, 1] (edge replication) since extrapolating colours overshoots."""
    ty, tx = np.clip(self.ty, 0, 1), np.clip(self.tx, 0, 1)
    c00, c01, c10, c11 = (c.astype(np.float32) for c in self._corners(image))
    out = (c00 + (c01 - c00) * tx) * (1 - ty) + (c10 + (c11 - c10) * tx) * ty
    out[~self.inside] = np.asarray(fill, np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)

  def table(self, table: np.ndarray) -> np.ndarray:
    """HxWx(2k) stack of k coordinate tables, each -1 where the position is
    off the input or any of its four neighbours is invalid."""
    corners = self._corners(table)
    c00, c01, c10, c11 = corners
    ty, tx = self.ty, self.tx
    out = (c00 + (c01 - c00) * tx) * (1 - ty) + (c10 + (c11 - c10) * tx) * ty
    k = table.shape[-1] // 2
    good = self.inside[..., None] & np.ones(k, bool)
    for c in corners:
      good &= c[..., 0::2] > _VALID_ABOVE
    out = out.reshape(*out.shape[:-1], k, 2)
    out[~good] = INVALID
    return out.reshape(*out.shape[:-2], 2 * k).astype(np.float32)

  def mask(self, mask: np.ndarray) -> np.ndarray:
    """Nearest-neighbour sample of an HxW bool mask; False off the input."""
    return sample_mask(mask, self.py, self.px, self.inside)


def sample_mask(mask: np.ndarray, py: np.ndarray, px: np.ndarray, on: np.ndarray) -> np.ndarray:
  """Nearest-neighbour sample of an HxW bool mask at (py, px); False where not `on`."""
  h, w = mask.shape
  iy = np.clip(np.floor(py + 0.5), 0, h - 1).astype(np.intp)
  ix = np.clip(np.floor(px + 0.5), 0, w - 1).astype(np.intp)
  return np.take(mask.ravel(), iy * w + ix) & on


def sample_image(image: np.ndarray, py: np.ndarray, px: np.ndarray, fill=(0, 0, 0)) -> np.ndarray:
  """Bilinear sample of an HxWx3 uint8 image; `fill` off its extent."""
  return Sampler(py, px, *image.shape[:2]).image(image, fill)


def sample_table(table: np.ndarray, py: np.ndarray, px: np.ndarray) -> np.ndarray:
  """Bilinear sample of a coordinate table (HxWx2, -1 = invalid).

  The result is -1 where the position is off the input or any of the four
  bilinear neighbours is invalid.
  """
  return Sampler(py, px, *table.shape[:2]).table(table)


def remap(
    e: Edited, py: np.ndarray, px: np.ndarray, fill=(0, 0, 0), image: np.ndarray | None = None
) -> Edited:
  """Applies an inverse map given as input positions for every output pixel.

  Args:
    e: the record to warp.
    py, px: HoxWo float arrays, the input (y, x) position of each output pixel.
    fill: colour of output pixels whose position is off the input.
    image: an already-resampled output image (e.g. an antialiased PIL resize
      computed with the same map); sampled bilinearly from `e.image` if None.

  Returns:
    The warped record; coords, geo and mask follow the same positions.
  """
  if image is not None and not e.tracked:
    # Nothing to interpolate: only the mask follows the map.
    py, px = np.broadcast_arrays(np.asarray(py, np.float32), np.asarray(px, np.float32))
    mask = sample_mask(e.mask, py, px, inside(py, px, *e.shape))
    return Edited(image, np.zeros(py.shape + (0,), np.float32), mask)
  s = Sampler(py, px, *e.shape)
  if image is None:
    image = s.image(e.image, fill)
  if e.geo is None:
    return Edited(image, s.table(e.coords), s.mask(e.mask))
  both = s.table(np.concatenate([e.coords, e.geo], axis=-1))
  return Edited(
      image,
      np.ascontiguousarray(both[..., :2]),
      s.mask(e.mask),
      np.ascontiguousarray(both[..., 2:]),
  )


def slice_record(e: Edited, rows: slice, cols: slice) -> Edited:
  """Crops (or flips, with negative steps) every field by array slicing."""
  geo = None if e.geo is None else np.ascontiguousarray(e.geo[rows, cols])
  return Edited(
      np.ascontiguousarray(e.image[rows, cols]),
      np.ascontiguousarray(e.coords[rows, cols]),
      np.ascontiguousarray(e.mask[rows, cols]),
      geo,
  )


def blend(image: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> np.ndarray:
  """Alpha-blends an HxWx3 `layer` over `image` with HxW `alpha` in [0, 1].

  Pixels with alpha 0 are returned bit-exact, so ops that paste a region
  leave the rest of the image untouched.
  """
  a = alpha[..., None].astype(np.float32)
  out = image.astype(np.float32) * (1 - a) + layer.astype(np.float32) * a
  out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
  return np.where(a > 0, out, image)
