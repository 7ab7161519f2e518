"""Error level analysis (provjax.models.ela): the pasted-JPEG case, shapes, ranges, the filter."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage import data

from provjax.data.images import encode_jpeg, read_image
from provjax.models import ela as ela_lib


def _pasted(photo: np.ndarray):
  """A never-compressed photo with a block-aligned region taken from its quality-60 JPEG."""
  compressed = read_image(encode_jpeg(photo, 60))
  forged = photo.copy()
  region = np.zeros(photo.shape[:2], bool)
  region[32:96, 40:104] = True  # on the 8x8 JPEG grid
  forged[region] = compressed[region]
  return forged, region


PHOTOS = {
    "chelsea": lambda: data.chelsea()[50:178, 100:228],
    "coffee": lambda: data.coffee()[100:228, 200:328],
    "cat": lambda: data.cat()[150:278, 150:278],
}


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_map_is_higher_inside_the_pasted_region(name):
  photo = np.ascontiguousarray(PHOTOS[name]())
  forged, region = _pasted(photo)
  score_map, score = ela_lib.ela(forged)
  assert score_map[region].mean() > score_map[~region].mean() + 0.1
  # The region's pixels fill the top of the map: more of them than chance above its median.
  assert np.mean(score_map[region] > np.median(score_map)) > 0.75
  _, authentic_score = ela_lib.ela(photo)
  assert score > authentic_score


def test_shapes_ranges_and_determinism():
  image = np.random.default_rng(0).integers(0, 256, (33, 47, 3), dtype=np.uint8)
  score_map, score = ela_lib.ela(image)
  assert score_map.shape == (33, 47) and score_map.dtype == np.float32
  assert score_map.min() >= 0 and score_map.max() < 1
  top = np.sort(score_map.ravel())[-16:]  # 1 % of 33 x 47 = 15.5 pixels, rounded
  assert 0 <= score < 1 and score == pytest.approx(top.mean())
  again, again_score = ela_lib.ela(image)
  np.testing.assert_array_equal(score_map, again)
  assert score == again_score


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (8, 200)])
def test_images_smaller_than_the_window(shape):
  image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
  score_map, score = ela_lib.ela(image)
  assert score_map.shape == shape and np.isfinite(score)


def test_flat_image_scores_zero():
  score_map, score = ela_lib.ela(np.full((40, 40, 3), 128, np.uint8))
  assert score == 0.0 and not score_map.any()


def test_box_filter_matches_scipy():
  values = np.random.default_rng(2).random((30, 41)).astype(np.float32)
  expected = ndimage.uniform_filter(values.astype(np.float64), 15, mode="reflect")
  np.testing.assert_allclose(ela_lib.box_filter(values), expected, rtol=1e-5, atol=1e-6)


def test_rejects_non_rgb_input():
  with pytest.raises(ValueError, match="HxWx3 uint8"):
    ela_lib.ela(np.zeros((8, 8), np.uint8))
  with pytest.raises(ValueError, match="HxWx3 uint8"):
    ela_lib.ela(np.zeros((8, 8, 3), np.float32))
