"""Free-form hole masks (provjax.transforms.masks): ratio bins, determinism, kinds, edge sizes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from provjax.transforms import masks

SEEDS = range(4)


def _boundary_fraction(hole: np.ndarray) -> float:
  """Hole pixels with a 4-neighbour outside the hole (the frame not counting), per hole pixel."""
  inner = ndimage.binary_erosion(hole, border_value=1)
  return float(np.count_nonzero(hole & ~inner) / np.count_nonzero(hole))


@pytest.mark.parametrize("kind", masks.KINDS)
@pytest.mark.parametrize("ratio_bin", range(len(masks.RATIO_BINS)))
def test_hole_ratio_lands_in_the_requested_bin(kind, ratio_bin):
  lo, hi = masks.RATIO_BINS[ratio_bin]
  ratios = []
  for seed in SEEDS:
    hole = masks.free_form_mask(np.random.default_rng(seed), 64, 80, ratio_bin=ratio_bin, kind=kind)
    assert hole.shape == (64, 80) and hole.dtype == bool
    assert masks.ratio_bin(hole) == ratio_bin
    ratios.append(hole.mean())
    assert lo < hole.mean() <= hi
  assert len(set(ratios)) > 1  # the ratio varies within the bin


def test_without_arguments_bins_and_kinds_are_drawn():
  bins = {
      masks.ratio_bin(masks.free_form_mask(np.random.default_rng(s), 48, 48)) for s in range(40)
  }
  assert bins == set(range(len(masks.RATIO_BINS)))


def test_same_generator_state_same_mask():
  for kind in (*masks.KINDS, None):
    first = masks.free_form_mask(np.random.default_rng(7), 64, 64, ratio_bin=3, kind=kind)
    again = masks.free_form_mask(np.random.default_rng(7), 64, 64, ratio_bin=3, kind=kind)
    other = masks.free_form_mask(np.random.default_rng(8), 64, 64, ratio_bin=3, kind=kind)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_strokes_are_thin_and_blobs_compact():
  """At equal hole ratios strokes have far more outline per hole pixel than blobs."""
  for ratio_bin in range(len(masks.RATIO_BINS)):
    fractions = {
        kind: np.mean(
            [
                _boundary_fraction(
                    masks.free_form_mask(
                        np.random.default_rng(s), 64, 64, ratio_bin=ratio_bin, kind=kind
                    )
                )
                for s in range(6)
            ]
        )
        for kind in masks.KINDS
    }
    assert fractions["strokes"] > 1.5 * fractions["blobs"], (ratio_bin, fractions)


def test_blobs_are_few_large_pieces():
  for seed in SEEDS:
    hole = masks.free_form_mask(np.random.default_rng(seed), 64, 64, ratio_bin=2, kind="blobs")
    labels, count = ndimage.label(hole)
    largest = np.bincount(labels.ravel())[1:].max()
    assert count <= 4 and largest >= 0.5 * hole.sum(), (seed, count)


def test_strokes_that_fall_short_grow_around_the_stroke(monkeypatch):
  monkeypatch.setattr(masks, "MAX_STROKES", 1)  # one stroke never covers 50-60 %
  eight = np.ones((3, 3), bool)
  for seed in SEEDS:
    hole = masks.free_form_mask(np.random.default_rng(seed), 64, 64, ratio_bin=5, kind="strokes")
    assert masks.ratio_bin(hole) == 5
    assert ndimage.label(hole, structure=eight)[1] == 1  # grown from one stroke, nearest first


@pytest.mark.parametrize("shape", [(10, 10), (3, 200), (200, 7), (1, 64), (257, 131)])
def test_edge_sizes(shape):
  for kind in masks.KINDS:
    for ratio_bin in range(len(masks.RATIO_BINS)):
      hole = masks.free_form_mask(
          np.random.default_rng(ratio_bin), *shape, ratio_bin=ratio_bin, kind=kind
      )
      assert hole.shape == shape and masks.ratio_bin(hole) == ratio_bin


def test_impossible_requests_are_refused():
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="cannot have a hole ratio"):
    masks.free_form_mask(rng, 3, 3, ratio_bin=0)  # 1/9 > 10 %: no count fits 1-10 %
  with pytest.raises(ValueError, match="no pixels"):
    masks.free_form_mask(rng, 0, 16)
  with pytest.raises(ValueError, match="kind"):
    masks.free_form_mask(rng, 16, 16, kind="rectangles")
  with pytest.raises(ValueError, match="ratio_bin"):
    masks.free_form_mask(rng, 16, 16, ratio_bin=len(masks.RATIO_BINS))
