"""SImProv's paper-strength training recipe (provjax.transforms.recipes)."""

from __future__ import annotations

import numpy as np
import pytest

from provjax import transforms
from provjax.data import pairs, splits
from provjax.transforms import corruptions, pixtrace, recipes


def _photo(seed: int = 0) -> np.ndarray:
  return splits.draw_procedural(np.random.default_rng(seed), 96, "train")


def test_corruptions_leave_out_elastic_and_glass():
  names = {corruptions.NAMES[i] for i in recipes.CORRUPTION_IDS}
  assert "elastic_transform" not in names and "glass_blur" not in names
  assert len(names) == len(corruptions.NAMES) - 2


def test_views_are_images_and_tracked_records_stay_consistent():
  rng = np.random.default_rng(0)
  for seed in range(12):
    e = recipes.paper_benign(transforms.identity(_photo(seed)), rng)
    assert e.image.dtype == np.uint8 and e.image.ndim == 3 and e.image.shape[2] == 3
    assert e.coords.shape[:2] == e.image.shape[:2]
    u = recipes.paper_benign(transforms.untracked(_photo(seed)), rng)
    assert u.image.dtype == np.uint8 and min(u.image.shape[:2]) >= 16


def test_same_rng_same_view():
  image = _photo(3)
  a = recipes.paper_benign(transforms.untracked(image), np.random.default_rng(5))
  b = recipes.paper_benign(transforms.untracked(image), np.random.default_rng(5))
  np.testing.assert_array_equal(a.image, b.image)


def test_colour_jitter_reaches_the_paper_factors():
  rng = np.random.default_rng(1)
  e = transforms.identity(np.full((32, 32, 3), 128, np.uint8))
  means = [recipes.OPS["color"](e, rng).image.mean() for _ in range(200)]
  # brightness x contrast in [0.2, 2.0]: far darker and far brighter than the moderate +-0.4.
  assert min(means) < 128 * 0.5 and max(means) > 128 * 1.5


def test_manipulations_cover_the_issue_area_range_and_every_kind():
  rng = np.random.default_rng(2)
  donor = lambda: _photo(99)
  areas, changed = [], 0
  for seed in range(30):
    image = _photo(seed)
    e = recipes.paper_manipulation(transforms.identity(image), rng, donors=donor)
    areas.append(e.mask.mean())
    changed += bool(np.any(e.image != image))
  areas = np.array(areas)
  assert areas.min() >= 0.8 * recipes.AREA_RANGE[0] and areas.max() <= 1.2 * recipes.AREA_RANGE[1]
  assert areas.max() > 0.15  # large edits occur, beyond the moderate 3-25 % mostly-small ones
  assert changed >= 28


# ------------------------------------------------------------ comparator pairs


@pytest.mark.parametrize("recipe", ["moderate", "paper", "warp"])
def test_pairs_carry_an_exact_flow_target(recipe):
  rng = np.random.default_rng(4)
  for label in (0, 1, 2):
    p = pairs.make_pair(_photo(label), rng, size=32, label=label, recipe=recipe)
    assert p["flow"].shape == (32, 32, 2) and p["flow"].dtype == np.float32
    if p["label"] == pairs.DISTINCT:
      assert np.all(p["flow"] == -1.0)
    else:
      shown = p["flow"][..., 0] >= 0
      assert shown.any()
      assert p["flow"][shown].min() >= 0 and p["flow"][shown].max() <= 31
  if recipe == "warp":
    assert p["label"] == pairs.BENIGN  # warp pre-training pairs are all benign


def test_flow_of_a_flipped_query_is_the_mirror():
  image = _photo(8)
  e = transforms.identity(image)
  ref, query = transforms.to_size(e, 32), transforms.to_size(transforms.hflip(e), 32)
  flow = pixtrace.correspondence(ref.geometry, query.geometry, image.shape[:2])
  yy, xx = np.mgrid[0:32, 0:32]
  np.testing.assert_array_equal(flow[..., 0], yy)
  np.testing.assert_array_equal(flow[..., 1], 31 - xx)
