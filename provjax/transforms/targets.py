"""Supervision derived from the coordinate tables, never guessed.

`source_mask` maps the manipulation mask of an edited image back onto the
original's frame; `heatmap_target` turns it into the SImProv comparator's 7x7
ground truth (area-weighted coverage divided by its maximum,
specs/simprov.md section 9).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from provjax.transforms.core import Edited, valid


def _footprint(geo: np.ndarray) -> float:
  """Median size, in original pixels, of one output pixel's step."""
  dy = np.linalg.norm(geo[1:, :-1] - geo[:-1, :-1], axis=-1)
  dx = np.linalg.norm(geo[:-1, 1:] - geo[:-1, :-1], axis=-1)
  v = valid(geo)
  ok = v[1:, :-1] & v[:-1, 1:] & v[:-1, :-1]
  return float(np.median(np.maximum(dy, dx)[ok])) if ok.any() else 1.0


def source_mask(e: Edited, shape: tuple[int, int]) -> np.ndarray:
  """Marks the original's pixels whose edited counterparts are manipulated.

  Masked output pixels are scattered to their geometric source (`geo`).
  Where the edit shrank or rotated the image the scattered points leave
  gaps, which a morphological closing as wide as one output pixel's
  footprint fills without growing the region.

  Args:
    e: the edited record.
    shape: (height, width) of the original image.

  Returns:
    bool array of `shape`.
  """
  h, w = shape[:2]
  out = np.zeros((h, w), bool)
  geo = e.geometry
  pts = geo[e.mask & valid(geo)]
  if not len(pts):
    return out
  iy = np.floor(pts[:, 0] + 0.5).astype(np.intp)
  ix = np.floor(pts[:, 1] + 0.5).astype(np.intp)
  ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
  out[iy[ok], ix[ok]] = True
  step = _footprint(geo)
  if step > 0.7:
    r = max(1, int(np.ceil((step - 1) / 2)))
    st = np.ones((2 * r + 1, 2 * r + 1), bool)
    out = ndimage.binary_erosion(ndimage.binary_dilation(out, st), st, border_value=1)
  return out


def _cell_weights(n: int, grid: int) -> np.ndarray:
  """grid x n overlap lengths of pixel [i, i+1) with each of `grid` cells."""
  edges = np.arange(grid + 1) * (n / grid)
  lo, hi = np.arange(n), np.arange(n) + 1
  return np.clip(
      np.minimum(hi[None], edges[1:, None]) - np.maximum(lo[None], edges[:-1, None]), 0, None
  )


def heatmap_target(e: Edited, orig_shape: tuple[int, int], grid: int = 7) -> np.ndarray:
  """SImProv heatmap ground truth on a grid x grid grid of the original.

  Each cell holds the fraction of its area covered by `source_mask`
  (cells split pixels by area when the size is not a multiple of grid);
  the result is divided by its maximum, or all zeros if nothing is
  manipulated.

  Returns:
    (grid, grid) float32 in [0, 1].
  """
  h, w = orig_shape[:2]
  sm = source_mask(e, (h, w)).astype(np.float64)
  cover = _cell_weights(h, grid) @ sm @ _cell_weights(w, grid).T
  cover /= (h / grid) * (w / grid)
  peak = cover.max()
  return (cover / peak if peak > 0 else cover).astype(np.float32)
