"""Tests for provjax.transforms.copy_recipe: query families and training views on a real photo.

Tables are checked against the pixels themselves: where no photometric op ran, a view pixel
with a valid table entry must equal the original sampled there (scipy's bilinear
`map_coordinates`, an independent sampler).
"""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import data

import provjax.transforms as T
from provjax.transforms import copy_recipe, pixtrace

MAGENTA = (255, 0, 255)


def shrink(image, side):
  return np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.LANCZOS))


@pytest.fixture(scope="module")
def photo():
  return shrink(data.astronaut(), 128)


@pytest.fixture(scope="module")
def donors():
  # Larger than the photo, so pasted copies are enlarged (bilinear, comparable pixel by pixel).
  return [shrink(data.coffee(), 400), shrink(data.chelsea(), 400)]


def check_table(e, source_shape):
  """A well-formed table: valid entries on the original's extent, the rest exactly -1."""
  h, w = e.shape
  assert e.image.shape == (h, w, 3) and e.image.dtype == np.uint8
  assert e.coords.shape == (h, w, 2) and e.coords.dtype == np.float32
  ok = T.valid(e.coords)
  c = e.coords[ok]
  # Chained warps extrapolate the table in their border half-pixel: a little slack.
  assert (c >= -0.5 - 0.5).all()
  assert (c <= np.asarray(source_shape) - 0.5 + 0.5).all()
  np.testing.assert_array_equal(e.coords[~ok], -1.0)


def resampled(source, coords):
  """The original sampled bilinearly at each table position (edges replicated)."""
  chans = [
      ndimage.map_coordinates(
          source[..., c].astype(float), coords.reshape(-1, 2).T, order=1, mode="nearest"
      )
      for c in range(3)
  ]
  return np.stack(chans, -1).reshape(*coords.shape[:2], 3)


@pytest.mark.parametrize("family", copy_recipe.QUERY_FAMILIES)
def test_every_family_gives_a_valid_table(photo, donors, family):
  for seed in range(3):
    q = copy_recipe.make_query(photo, np.random.default_rng(seed), family, donors=donors)
    check_table(q, photo.shape[:2])
    assert T.valid(q.coords).mean() > 0.03
  sized = copy_recipe.make_query(photo, np.random.default_rng(0), family, donors=donors, size=64)
  assert sized.shape == (64, 64)
  check_table(sized, photo.shape[:2])


def test_natural_sizes(photo, donors):
  rng = np.random.default_rng(0)
  crop = copy_recipe.make_query(photo, rng, "crop", donors=donors)
  area = crop.shape[0] * crop.shape[1] / photo.shape[0] / photo.shape[1]
  assert 0.25 < area < 0.55
  inside = copy_recipe.make_query(photo, rng, "image_in_image", donors=donors)
  assert inside.shape == donors[0].shape[:2]


@pytest.mark.parametrize("family", ["crop", "geometric", "image_in_image"])
def test_geometric_queries_show_the_source_at_their_table(photo, donors, family):
  for seed in range(3):
    q = copy_recipe.make_query(photo, np.random.default_rng(seed), family, donors=donors)
    # Skip the outermost valid ring, where resampling mixes in the fill colour.
    ok = ndimage.binary_erosion(T.valid(q.coords), iterations=2)
    diff = np.abs(q.image.astype(float) - resampled(photo, q.coords))[ok]
    # Chained warps resample twice (a little smoothing); a table off by 2 px is ~10x worse.
    off = np.abs(q.image.astype(float) - resampled(photo, q.coords + 2))[ok]
    assert np.median(diff) <= 2 and diff.mean() <= 5, (family, seed)
    assert off.mean() > 3 * max(diff.mean(), 1)


def test_photometric_queries_keep_the_identity_table(photo):
  q = copy_recipe.make_query(photo, np.random.default_rng(0), "photometric", donors=[])
  np.testing.assert_array_equal(q.coords, T.pixel_grid(*photo.shape[:2]))
  assert np.abs(q.image.astype(int) - photo).mean() > 3


def test_unknown_family_and_missing_donors(photo):
  rng = np.random.default_rng(0)
  with pytest.raises(KeyError):
    copy_recipe.make_query(photo, rng, "sepia", donors=[])
  for family in ("image_in_image", "mixed"):
    with pytest.raises(ValueError):
      copy_recipe.make_query(photo, rng, family, donors=[])


def test_donor_pixels_carry_minus_one(photo):
  donor = np.broadcast_to(np.uint8(MAGENTA), (200, 300, 3))
  assert not (photo == MAGENTA).all(-1).any()
  for seed in range(5):
    e = copy_recipe.image_in_image(T.identity(photo), np.random.default_rng(seed), donor)
    is_donor = (e.image == MAGENTA).all(-1)
    np.testing.assert_array_equal(~T.valid(e.coords), is_donor)
    side = np.sqrt((~is_donor).sum())  # the photo is square
    assert 0.25 * 200 - 1 <= side <= 0.5 * 200 + 1


def test_copy_view_is_deterministic(photo, donors):
  e = T.identity(photo)
  a = copy_recipe.copy_view(e, np.random.default_rng(7), donors=donors, size=64)
  b = copy_recipe.copy_view(e, np.random.default_rng(7), donors=donors, size=64)
  c = copy_recipe.copy_view(e, np.random.default_rng(8), donors=donors, size=64)
  np.testing.assert_array_equal(a.image, b.image)
  np.testing.assert_array_equal(a.coords, b.coords)
  assert not np.array_equal(a.coords, c.coords)


def test_copy_views_and_their_overlaps(photo, donors):
  e = T.identity(photo)
  rng = np.random.default_rng(0)
  views = [copy_recipe.copy_view(e, rng, donors=donors, size=64) for _ in range(12)]
  for v in views:
    assert v.shape == (64, 64)
    check_table(v, photo.shape[:2])
  for q, r in zip(views[::2], views[1::2]):
    qr, rq = pixtrace.pair_overlaps(q, r, photo.shape[:2], 8)
    assert qr.shape == rq.shape == (64, 65)
    np.testing.assert_allclose(qr.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(rq.sum(1), 1, atol=1e-6)


def test_image_in_image_views_are_mostly_donor(photo, donors):
  e = T.identity(photo)
  for seed in range(5):
    v = copy_recipe.copy_view(
        e, np.random.default_rng(seed), donors=donors, size=64, p_image_in_image=1.0
    )
    # The copy covers at most half the side, so at most a quarter of the view has a source.
    assert T.valid(v.coords).mean() <= 0.25 + 0.05


def test_crop_resize_matches_crop_then_resize():
  rng = np.random.default_rng(0)
  e = T.rotate(T.identity(rng.integers(0, 256, (50, 60, 3), np.uint8)), angle=20)
  for box, out in (((3, 5, 30, 40), (64, 64)), (None, (20, 25)), ((0, 0, 50, 60), (101, 77))):
    fast = copy_recipe.crop_resize(e, out, box)
    slow = T.resize(T.crop(e, box=box) if box else e, size=out)
    np.testing.assert_array_equal(T.valid(fast.coords), T.valid(slow.coords))
    np.testing.assert_allclose(fast.coords, slow.coords, atol=1e-4)
    np.testing.assert_allclose(fast.geo, slow.geo, atol=1e-4)
    np.testing.assert_array_equal(fast.image, slow.image)
    np.testing.assert_array_equal(fast.mask, slow.mask)


def test_rot90_table_points_at_the_shown_pixel(photo):
  e = T.identity(photo)
  for k in (1, 2, 3):
    r = copy_recipe.rot90(e, k)
    ij = r.coords.astype(int)
    np.testing.assert_array_equal(r.image, photo[ij[..., 0], ij[..., 1]])
  np.testing.assert_array_equal(copy_recipe.rot90(e, 1).image, np.rot90(photo))


def test_linear_color_jitter(photo):
  e = T.identity(photo)
  # Without hue it is photometric.color_jitter for the same draws.
  for seed in range(3):
    fast = copy_recipe.linear_color_jitter(e, np.random.default_rng(seed), (0.4, 0.4, 0.4, 0.0))
    ref = T.color_jitter(e, np.random.default_rng(seed), strength=1.0, hue=0.0)
    assert np.abs(fast.image.astype(int) - ref.image).max() <= 1
  # A hue turn keeps each pixel's luma but changes its colour.
  luma = np.float32([0.299, 0.587, 0.114])
  turned = copy_recipe.linear_color_jitter(e, np.random.default_rng(1), (0, 0, 0, 0.2)).image
  assert np.abs(turned @ luma - photo @ luma).mean() < 1.5
  assert np.abs(turned.astype(int) - photo).mean() > 5
