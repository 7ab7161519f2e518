"""PixTrace correspondences between two views of one original, and CopyNCE patch overlaps.

Every view (`core.Edited`) carries `coords`, the position in the original of each of its
pixels (-1 where none). Two views of the same original are related through it
(specs/copy_detection.md section 6):

    que->ref = T_ref^-1 o T_que

`inverse_table` gives T^-1 (a scatter of the view's pixels onto the original's pixels),
`correspondence` composes the two, `patch_overlap` counts where the pixels of each query patch
land among the reference patches (CopyNCE's q(j|i), with a dummy bin for pixels that land
nowhere) and `pair_overlaps` gives both directions for a training pair.

Coarse views. A view that shows the original shrunk or rotated hits only some of the original's
pixels, so a pixel-exact inverse has holes inside the view's footprint, and a query pixel that
falls in one would wrongly count as absent from the reference (the dummy bin). `correspondence`
therefore inverts the reference on cells of the original as large as the bounding box of one
reference pixel's footprint there: every such cell inside the footprint holds a reference pixel,
and the correspondence stays within one cell, about one reference pixel, of the exact one.
Only in the one-cell band along the footprint's edges can a pixel be counted on the wrong side
(a partial cell may hold no reference pixel, or one just outside). For references at the
original's scale or finer and axis aligned the cell is one pixel, and the result is exactly the
pixel scatter.
"""

from __future__ import annotations

import functools

import numpy as np

from provjax.transforms.core import Edited, valid

_UNIT = (1.0, 1.0)
_KEY_STEPS = 1 << 20  # quantisation of the distance key that picks a cell's winner


def _cell_size(coords: np.ndarray) -> tuple[float, float]:
  """(cy, cx): per axis of the original, the extent of one view pixel's footprint, at least 1.

  The footprint of a view pixel is the parallelogram spanned by the table's steps to the next
  row and column; any axis-aligned box of its bounding-box size contains a view pixel, so cells
  of that size leave no holes. The largest extent over the view is used, so perspective views get
  the cell of their most compressed part.
  """
  ok = valid(coords)
  both = ok[:-1, :-1] & ok[1:, :-1] & ok[:-1, 1:]
  if not both.any():
    return _UNIT
  cell = []
  for axis in (coords[..., 0], coords[..., 1]):  # per channel: 2-D reductions are much faster
    extent = np.abs(axis[1:, :-1] - axis[:-1, :-1])
    extent += np.abs(axis[:-1, 1:] - axis[:-1, :-1])
    e = float(np.where(both, extent, 0).max())
    # Float noise of an exact unit step must not make the cell a hair larger than a pixel.
    cell.append(1.0 if e <= 1 + 1e-3 else e)
  return tuple(cell)


def _grid(source_shape: tuple[int, int], cell: tuple[float, float]) -> tuple[int, int]:
  """Number of cells (rows, columns) covering the original."""
  return tuple(max(1, int(np.ceil(n / c - 1e-6))) for n, c in zip(source_shape, cell))


def _cell_of(coords: np.ndarray, cell: tuple[float, float], grid: tuple[int, int], offsets=False):
  """Flat cell index of each pixel's source position (-1 where it has none) and, if asked, that
  position's offset (y, x) from its cell's centre, in cell units."""
  flat, offset = 0, []
  for axis, c, n, stride in ((0, cell[0], grid[0], grid[1]), (1, cell[1], grid[1], 1)):
    # Cell k covers source positions [k c - 0.5, (k + 1) c - 0.5); with c = 1 that is rounding.
    # Valid positions are >= -0.5, so truncation is the floor.
    f = (coords[..., axis].ravel() + np.float32(0.5)) * np.float32(1 / c)
    k = np.minimum(f.astype(np.int32), n - 1)
    flat = flat + k * stride
    if offsets:
      offset.append(f - k - np.float32(0.5))
  flat = np.where(valid(coords).ravel(), flat, -1)
  return (flat, offset) if offsets else flat


def _scatter(coords: np.ndarray, cell: tuple[float, float], grid: tuple[int, int]) -> np.ndarray:
  """Flat index of the view pixel chosen for each cell of the original (-1 for none).

  Where several view pixels fall in one cell, the one whose source position is nearest the
  cell's centre wins (ties: the first in row-major order).
  """
  flat, (oy, ox) = _cell_of(coords, cell, grid, offsets=True)
  hit = np.flatnonzero(flat >= 0)
  n = coords.shape[0] * coords.shape[1]
  # One integer key orders by distance, then by pixel index, so np.minimum.at picks the winner
  # in a single vectorised pass; the squared offset is at most 0.5 inside the grid.
  dist = np.minimum((oy[hit] ** 2 + ox[hit] ** 2) * np.float32(2 * _KEY_STEPS), _KEY_STEPS)
  keys = np.full(grid[0] * grid[1], (_KEY_STEPS + 1) * n, np.int64)
  np.minimum.at(keys, flat[hit], dist.astype(np.int64) * n + hit)
  return np.where(keys < (_KEY_STEPS + 1) * n, keys % n, -1)


def _positions(index: np.ndarray, width: int) -> np.ndarray:
  """Nx2 float32 (y, x) of flat pixel indices, -1 where the index is -1."""
  out = np.stack(np.divmod(index, width), axis=-1).astype(np.float32)
  out[index < 0] = -1.0
  return out


def inverse_table(coords: np.ndarray, source_shape: tuple[int, int]) -> np.ndarray:
  """T^-1: for each pixel of the original, a position in the view showing it.

  Each valid view pixel is scattered onto the original pixel its source position rounds to.
  When several view pixels land on one original pixel (the view magnifies it), the one whose
  source position is nearest that pixel's centre wins, ties going to the first in row-major
  order. Any of them would do: they all show that original pixel, and they lie within its
  footprint in the view, so the choice moves a correspondence by less than that footprint.

  Args:
    coords: HxWx2 table of a view (`Edited.coords`).
    source_shape: (Hs, Ws) of the original.

  Returns:
    Hs x Ws x 2 float32, the (y, x) view pixel of each original pixel, -1 where no view pixel
    maps there (outside the view, or a hole left where the view shrinks or rotates it).
  """
  winner = _scatter(coords, _UNIT, tuple(source_shape))
  return _positions(winner, coords.shape[1]).reshape(*source_shape, 2)


def _match(coords_q: np.ndarray, coords_r: np.ndarray, source_shape: tuple[int, int]):
  """Flat reference pixel of each query pixel (-1 for none): `correspondence` before positions."""
  cell = _cell_size(coords_r)
  grid = _grid(source_shape, cell)
  winner = _scatter(coords_r, cell, grid)
  flat = _cell_of(coords_q, cell, grid)
  ref = np.where(flat >= 0, winner[flat], -1)  # flat = -1 reads the last cell, then discarded
  # Misses next to a filled cell lie on the reference's edges: worth a look at the neighbours.
  miss = np.flatnonzero((flat >= 0) & (ref < 0))
  miss = miss[_next_to_hit(winner >= 0, grid)[flat[miss]]]
  if miss.size:
    ref[miss] = _nearby(coords_q.reshape(-1, 2)[miss], flat[miss], coords_r, winner, cell, grid)
  return ref


def _next_to_hit(hit: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
  """Flat bool per cell: it or one of its 8 neighbours holds a reference pixel."""
  padded = np.zeros((grid[0] + 2, grid[1] + 2), bool)
  padded[1:-1, 1:-1] = hit.reshape(grid)
  near = np.zeros(grid, bool)
  for dy in range(3):
    for dx in range(3):
      near |= padded[dy : dy + grid[0], dx : dx + grid[1]]
  return near.ravel()


_RING = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])


def _nearby(
    p: np.ndarray,
    flat: np.ndarray,
    coords_r: np.ndarray,
    winner: np.ndarray,
    cell: tuple[float, float],
    grid: tuple[int, int],
) -> np.ndarray:
  """For source positions `p` in empty cells (`flat`) along the reference's edges: the nearest
  winner of the 8 neighbouring cells if `p` lies within half a cell of it (inside that pixel's
  footprint), else -1."""
  ky, kx = np.divmod(flat, grid[1])
  ny, nx = ky[:, None] + _RING[:, 0], kx[:, None] + _RING[:, 1]  # [m, 8]
  inside = (ny >= 0) & (ny < grid[0]) & (nx >= 0) & (nx < grid[1])
  cand = np.where(inside, winner[np.where(inside, ny * grid[1] + nx, 0)], -1)
  d = (np.abs(coords_r.reshape(-1, 2)[cand] - p[:, None]) / np.asarray(cell, np.float32)).max(-1)
  d[cand < 0] = np.inf
  best = d.argmin(1)
  rows = np.arange(len(p))
  return np.where(d[rows, best] <= 0.5, cand[rows, best], -1)


def correspondence(
    coords_q: np.ndarray, coords_r: np.ndarray, source_shape: tuple[int, int]
) -> np.ndarray:
  """que->ref = T_ref^-1 o T_que: for each query pixel, where its source pixel is in the reference.

  T_ref^-1 is taken on cells of the original the size of one reference pixel's footprint (module
  docstring), so a reference that shrinks or rotates the original leaves no holes.

  Args:
    coords_q: Hq x Wq x 2 table of the query view.
    coords_r: Hr x Wr x 2 table of the reference view of the same original.
    source_shape: (Hs, Ws) of the original.

  Returns:
    Hq x Wq x 2 float32 (y, x) reference pixel of each query pixel, -1 where the query pixel has
    no source or the reference does not show it.
  """
  ref = _match(coords_q, coords_r, tuple(source_shape))
  return _positions(ref, coords_r.shape[1]).reshape(*coords_q.shape[:2], 2)


def _patches(shape: tuple[int, int], patch: int) -> tuple[int, int]:
  """Patch grid (rows, columns) of an image; its sides must be multiples of `patch`."""
  if shape[0] % patch or shape[1] % patch:
    raise ValueError(f"image {shape} is not a whole number of {patch}x{patch} patches")
  return shape[0] // patch, shape[1] // patch


@functools.lru_cache(maxsize=32)
def _patch_index(shape: tuple[int, int], patch: int) -> np.ndarray:
  """Row-major patch index of every pixel of an image, flattened (cached, read-only)."""
  grid = _patches(shape, patch)
  rows = np.arange(shape[0]) // patch
  cols = np.arange(shape[1]) // patch
  index = (rows[:, None] * grid[1] + cols[None, :]).ravel()
  index.setflags(write=False)
  return index


def _overlap(ref: np.ndarray, query_shape, ref_shape, patch: int) -> np.ndarray:
  """Overlap matrix from the flat reference pixel of each query pixel (-1 for none)."""
  query = _patch_index(tuple(query_shape), patch)
  ref_patch = _patch_index(tuple(ref_shape), patch)
  lq, lr = query[-1] + 1, ref_patch[-1] + 1
  bins = np.where(ref >= 0, ref_patch[ref], lr)  # ref = -1 reads a real patch, then discarded
  counts = np.bincount(query * (lr + 1) + bins, minlength=lq * (lr + 1))
  return (counts.reshape(lq, lr + 1) * np.float32(1 / patch**2)).astype(np.float32)


def patch_overlap(q2r: np.ndarray, ref_shape: tuple[int, int], patch: int) -> np.ndarray:
  """CopyNCE's overlap q(j|i) from a que->ref correspondence.

  Args:
    q2r: Hq x Wq x 2 reference position of each query pixel (`correspondence`), -1 for none.
    ref_shape: (Hr, Wr) of the reference.
    patch: patch side in pixels; both images must be whole numbers of patches.

  Returns:
    Lq x (Lr + 1) float32: row i is query patch i (row-major), column j < Lr the fraction of its
    pixels that land in reference patch j, column Lr (the dummy bin) the fraction that land
    nowhere. Rows sum to 1.
  """
  hr, wr = ref_shape
  # Position -> pixel, by the pixel-centre convention: rounding.
  y = np.clip(np.floor(q2r[..., 0].ravel() + 0.5), 0, hr - 1).astype(np.int64)
  x = np.clip(np.floor(q2r[..., 1].ravel() + 0.5), 0, wr - 1).astype(np.int64)
  ref = np.where(valid(q2r).ravel(), y * wr + x, -1)
  return _overlap(ref, q2r.shape[:2], tuple(ref_shape), patch)


def pair_overlaps(
    e_q: Edited, e_r: Edited, source_shape: tuple[int, int], patch: int
) -> tuple[np.ndarray, np.ndarray]:
  """The two overlap matrices of a CopyNCE pair: q->r [Lq, Lr + 1] and r->q [Lr, Lq + 1].

  Both directions go through the original (r->q = T_que^-1 o T_ref) rather than inverting q->r
  as the reference code does, which would leave holes wherever the query is the coarser view.
  Pixels with no source (overlays, padding, donor pixels) fall in the dummy bin.
  """
  source_shape = tuple(source_shape)
  q2r = _match(e_q.coords, e_r.coords, source_shape)
  r2q = _match(e_r.coords, e_q.coords, source_shape)
  return _overlap(q2r, e_q.shape, e_r.shape, patch), _overlap(r2q, e_r.shape, e_q.shape, patch)
