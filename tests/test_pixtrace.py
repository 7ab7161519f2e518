"""Tests for provjax.transforms.pixtrace: correspondences and CopyNCE overlaps.

The overlap matrices are checked on views whose answer is known in closed form (identity, flip,
crop, 2x resizes, a paste into a frame), and the correspondences of random views against an
independent nearest-neighbour search in the original (scipy's cKDTree).
"""

import numpy as np
import pytest
from scipy.spatial import cKDTree

import provjax.transforms as T
from provjax.transforms import copy_recipe, pixtrace

S = 64  # side of the original
P = 8  # patch side


def original(side=S, seed=0):
  return T.identity(np.random.default_rng(seed).integers(0, 256, (side, side, 3), np.uint8))


def patch_map(query_grid, fn, ref_grid):
  """Overlap matrix where query patch (a, b) lies wholly in reference patch fn(a, b) (None for
  the dummy bin)."""
  lq, lr = query_grid[0] * query_grid[1], ref_grid[0] * ref_grid[1]
  m = np.zeros((lq, lr + 1), np.float32)
  for a in range(query_grid[0]):
    for b in range(query_grid[1]):
      j = fn(a, b)
      m[a * query_grid[1] + b, lr if j is None else j[0] * ref_grid[1] + j[1]] = 1
  return m


# -------------------------------------------------------------- analytic cases ---


def test_identical_views_give_the_identity():
  e = original()
  qr, rq = pixtrace.pair_overlaps(e, e, (S, S), P)
  l = (S // P) ** 2
  for m in (qr, rq):
    assert m.shape == (l, l + 1) and m.dtype == np.float32
    np.testing.assert_array_equal(m[:, :l], np.eye(l))
    assert not m[:, l].any()


def test_horizontal_flip_is_a_permutation():
  e = original()
  n = S // P
  qr, rq = pixtrace.pair_overlaps(T.hflip(e), e, (S, S), P)
  expected = patch_map((n, n), lambda a, b: (a, n - 1 - b), (n, n))
  np.testing.assert_array_equal(qr, expected)
  np.testing.assert_array_equal(rq, expected)  # a flip is its own inverse


def test_right_half_crop():
  e = original()
  n = S // P
  q = T.crop(e, box=(0, S // 2, S, S // 2))  # 64 x 32: 8 x 4 patches
  qr, rq = pixtrace.pair_overlaps(q, e, (S, S), P)
  np.testing.assert_array_equal(qr, patch_map((n, n // 2), lambda a, b: (a, b + n // 2), (n, n)))
  expected = patch_map((n, n), lambda a, b: (a, b - n // 2) if b >= n // 2 else None, (n, n // 2))
  np.testing.assert_array_equal(rq, expected)


def test_2x_upscale():
  # Query pixel i shows source position i/2 - 1/4, which rounds to source pixel i // 2: each 8 px
  # query patch lies in one reference patch. Backwards, source pixel k is shown by query pixels
  # 2k and 2k + 1 at equal distance, the tie goes to 2k, so a reference patch spreads evenly
  # over a 2 x 2 block of query patches.
  e = original()
  n = S // P
  q = T.resize(e, size=(2 * S, 2 * S))
  qr, rq = pixtrace.pair_overlaps(q, e, (S, S), P)
  np.testing.assert_array_equal(
      qr, patch_map((2 * n, 2 * n), lambda a, b: (a // 2, b // 2), (n, n))
  )
  expected = np.zeros_like(rq)
  for a in range(n):
    for b in range(n):
      for i in range(2):
        for j in range(2):
          expected[a * n + b, (2 * a + i) * 2 * n + 2 * b + j] = 0.25
  np.testing.assert_array_equal(rq, expected)


def test_2x_downscale_has_no_holes():
  # The 32 px reference hits only a quarter of the original's pixels; on 2 px cells (its
  # footprint) every query pixel i finds reference pixel i // 2.
  e = original()
  n = S // P
  r = T.resize(e, size=(S // 2, S // 2))
  q2r = pixtrace.correspondence(e.coords, r.coords, (S, S))
  i = np.arange(S) // 2
  np.testing.assert_array_equal(q2r[..., 0], np.repeat(i[:, None], S, 1))
  np.testing.assert_array_equal(q2r[..., 1], np.repeat(i[None, :], S, 0))
  qr, rq = pixtrace.pair_overlaps(e, r, (S, S), P)
  np.testing.assert_array_equal(qr, patch_map((n, n), lambda a, b: (a // 2, b // 2), (n // 2,) * 2))
  np.testing.assert_allclose(rq[:, :-1].max(1), 0.25)
  np.testing.assert_allclose((rq[:, :-1] > 0).sum(1), 4)


def test_paste_into_a_frame_puts_the_frame_in_the_dummy_bin():
  # A 32 px original in the middle of a 64 px canvas (pad gives the frame coords -1).
  e = original(S // 2)
  q = T.pad(e, widths=(16, 16, 16, 16), fill=0)
  qr, rq = pixtrace.pair_overlaps(q, e, (S // 2, S // 2), P)
  inside = lambda a, b: (a - 2, b - 2) if 2 <= a < 6 and 2 <= b < 6 else None
  np.testing.assert_array_equal(qr, patch_map((8, 8), inside, (4, 4)))
  np.testing.assert_array_equal(rq, patch_map((4, 4), lambda a, b: (a + 2, b + 2), (8, 8)))


# ------------------------------------------------------------ correspondences ---


def test_crop_round_trip():
  e = original()
  top, left, h, w = 10, 20, 30, 36
  q = T.crop(e, box=(top, left, h, w))
  q2r = pixtrace.correspondence(q.coords, e.coords, (S, S))
  np.testing.assert_array_equal(q2r, T.pixel_grid(h, w) + np.float32([top, left]))
  r2q = pixtrace.correspondence(e.coords, q.coords, (S, S))
  inside = np.zeros((S, S), bool)
  inside[top : top + h, left : left + w] = True
  np.testing.assert_array_equal(T.valid(r2q), inside)
  back = r2q[q2r[..., 0].astype(int), q2r[..., 1].astype(int)]
  np.testing.assert_array_equal(back, T.pixel_grid(h, w))


def test_inverse_table_scatter():
  e = original()
  flipped = pixtrace.inverse_table(T.hflip(e).coords, (S, S))
  np.testing.assert_array_equal(flipped, T.pixel_grid(S, S)[:, ::-1])
  # 4x down: reference pixel j shows source 4j + 1.5, which rounds to 4j + 2; nothing else is hit.
  inv = pixtrace.inverse_table(T.resize(e, size=(16, 16)).coords, (S, S))
  hit = T.valid(inv)
  assert hit.sum() == 16 * 16
  np.testing.assert_array_equal(inv[2::4, 2::4], T.pixel_grid(16, 16))
  # 2x up: of the two query pixels per source pixel and axis (a tie), the first wins.
  up = pixtrace.inverse_table(T.resize(e, size=(2 * S, 2 * S)).coords, (S, S))
  np.testing.assert_array_equal(up, 2 * T.pixel_grid(S, S))


def test_rotated_reference_has_no_holes():
  e = original()
  r = T.rotate(e, angle=30, expand=True)
  # The pixel scatter leaves holes where the rotated grid misses original pixels...
  assert T.valid(pixtrace.inverse_table(r.coords, (S, S))).mean() < 0.95
  # ...the footprint-sized cells do not, and stay within a cell of the exact position.
  q2r = pixtrace.correspondence(e.coords, r.coords, (S, S))
  assert T.valid(q2r).all()
  shown = r.coords[q2r[..., 0].astype(int), q2r[..., 1].astype(int)]
  cell = np.cos(np.pi / 6) + np.sin(np.pi / 6)
  assert np.abs(shown - e.coords).max() < cell


@pytest.mark.parametrize("seed", range(4))
def test_random_views_match_nearest_neighbour_search(seed):
  rng = np.random.default_rng(seed)
  image = original(96, seed).image
  donors = [original(96, seed + 10).image]
  q = copy_recipe.copy_view(T.identity(image), rng, donors=donors, size=64)
  r = copy_recipe.copy_view(T.identity(image), rng, donors=donors, size=64)
  q2r = pixtrace.correspondence(q.coords, r.coords, (96, 96))
  vq, vr = T.valid(q.coords), T.valid(r.coords)
  if not vq.any() or not vr.any():
    pytest.skip("a view with no source pixels")
  tree = cKDTree(r.coords[vr])
  dist, _ = tree.query(q.coords[vq], p=np.inf)
  found = T.valid(q2r)[vq]
  # Query pixels whose source a reference pixel shows within half a source pixel are found
  # (all but a few in the one-cell band along the reference's edges), and what is found is at
  # most a footprint cell away in the original.
  assert found[dist < 0.5].mean() > 0.95
  cell = np.asarray(pixtrace._cell_size(r.coords))
  shown = r.coords[q2r[..., 0].astype(int), q2r[..., 1].astype(int)][T.valid(q2r)]
  assert (np.abs(shown - q.coords[T.valid(q2r)]) <= cell + 1e-4).all()
  qr, rq = pixtrace.pair_overlaps(q, r, (96, 96), P)
  np.testing.assert_allclose(qr.sum(1), 1, atol=1e-6)
  np.testing.assert_allclose(rq.sum(1), 1, atol=1e-6)
  np.testing.assert_allclose(qr[:, -1], 1 - found_per_patch(T.valid(q2r)), atol=1e-6)


def found_per_patch(found):
  """Fraction of each 8 px patch's pixels that have a correspondence."""
  h, w = found.shape
  return found.reshape(h // P, P, w // P, P).mean((1, 3)).ravel()


def test_patch_overlap_rejects_partial_patches():
  e = original()
  with pytest.raises(ValueError):
    pixtrace.patch_overlap(e.coords[:60], (S, S), P)
  with pytest.raises(ValueError):
    pixtrace.patch_overlap(e.coords, (S, 60), P)
