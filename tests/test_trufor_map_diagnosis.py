"""scripts/trufor_map_diagnosis.py: the summary of map statistics, on hand-made records."""

import numpy as np
import pytest

from conftest import script

diagnosis = script("trufor_map_diagnosis")


def test_flat_fraction_counts_flat_neighbour_pairs():
  flat = np.full((4, 5, 3), 100, np.uint8)
  stripes = np.zeros((4, 5, 3), np.uint8)
  stripes[:, 1::2] = 255
  assert diagnosis.flat_fraction(flat) == 1.0
  assert diagnosis.flat_fraction(stripes) == 0.0


def _row(kind, level, flat_share, rng):
  """A 16 x 16 record whose map sits at `level` (the edit, if any, 0.2 above it)."""
  image = rng.integers(0, 255, (16, 16, 3)).astype(np.uint8)
  image[:, : round(16 * flat_share)] = 128  # a flat band: its pairs count as flat
  mask = np.zeros((16, 16), bool)
  heat = np.full((16, 16), level, np.float32)
  if kind != "authentic":
    mask[4:8, 4:8] = True
    heat[mask] += 0.2
  return diagnosis.record_row(kind, image, mask, heat, score=level)


def test_summary_of_a_map_that_separates_and_one_that_follows_smoothness():
  rng = np.random.default_rng(0)
  # Separates: authentic maps low, forged high, whatever the content.
  rows = [_row("authentic", 0.1, s, rng) for s in (0.0, 0.5, 0.9)]
  rows += [_row(k, 0.6, s, rng) for k, s in [("splice", 0.1), ("removal", 0.8)]]
  good = diagnosis.summary(rows)
  assert good["auc"]["mean"]["all"] == 1.0 and good["auc"]["score"]["removal"] == 1.0
  assert good["map_level"]["inside_forged"] == pytest.approx(0.8)
  assert good["map_level"]["outside_forged"] == pytest.approx(0.6)
  assert good["map_level"]["authentic"] == pytest.approx(0.1)
  assert good["smoothness_correlation"]["authentic"] is None  # a constant map has no r
  # Follows smoothness: the map's level is the image's flat share, whatever the label.
  shares = [0.1, 0.5, 0.9, 0.2, 0.8]
  kinds = ["authentic"] * 3 + ["splice", "removal"]
  shortcut = diagnosis.summary([_row(k, s, s, rng) for k, s in zip(kinds, shares)])
  assert shortcut["smoothness_correlation"]["authentic"] > 0.9
  assert shortcut["smoothness_correlation"]["forged_outside"] > 0.9
  assert shortcut["auc"]["mean"]["splice"] < 1.0
