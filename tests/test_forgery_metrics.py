"""TruFor protocol metrics (provjax.metrics.forgery) against scikit-learn and cases by hand."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
import pytest
from sklearn import metrics as skm

from provjax.metrics import forgery as fm


def _square(size=40, lo=10, hi=30):
  gt = np.zeros((size, size), bool)
  gt[lo:hi, lo:hi] = True
  return gt


def _window_filter(gt, size, reduce):
  """A min/max filter written independently: numpy 'symmetric' padding is scipy's 'reflect'."""
  r = size // 2
  padded = np.pad(gt, r, mode="symmetric")
  return reduce(sliding_window_view(padded, (size, size)), axis=(-2, -1))


def _random_gt(rng, size=64):
  gt = np.zeros((size, size), bool)
  for _ in range(rng.integers(1, 4)):
    y, x = rng.integers(0, size - 8, 2)
    h, w = rng.integers(8, 40, 2)
    gt[y : y + h, x : x + w] = True
  return gt


def _reference_f1_best(score_map, gt):
  """Brute force with scikit-learn: every distinct valid value as threshold, map and inverse."""
  gt1, gt0 = fm.border_masks(gt)
  valid = gt1 | gt0
  values, forged = score_map[valid].astype(np.float32), gt1[valid]
  best = 0.0
  for th in np.unique(values):
    predicted = values > th
    for prediction in (predicted, ~predicted):  # ~predicted: the inverted map's decision
      best = max(best, skm.f1_score(forged, prediction, zero_division=0))
  return best


# -------------------------------------------------------------- border masks ---


def test_border_masks_of_a_square_by_hand():
  gt1, gt0 = fm.border_masks(_square())  # forged rows/cols 10..29
  expected1 = np.zeros((40, 40), bool)
  expected1[17:23, 17:23] = True  # eroded by 7 on each side
  expected0 = np.ones((40, 40), bool)
  expected0[5:35, 5:35] = False  # dilated by 5 on each side
  np.testing.assert_array_equal(gt1, expected1)
  np.testing.assert_array_equal(gt0, expected0)
  ignored = ~(gt1 | gt0)
  assert ignored.sum() == 40 * 40 - 36 - 700


def test_border_masks_do_not_erode_from_the_frame():
  gt = _square(lo=0, hi=20)  # touches the top-left corner
  gt1, _ = fm.border_masks(gt)
  assert gt1.sum() == 13 * 13  # eroded only on the sides away from the frame
  assert gt1[0, 0] and gt1[12, 12] and not gt1[13, 13]


@pytest.mark.parametrize("seed", range(5))
def test_border_masks_match_windowed_min_max(seed):
  gt = _random_gt(np.random.default_rng(seed))
  gt1, gt0 = fm.border_masks(gt.astype(np.uint8) * 255)  # 0/255 masks count as bool
  np.testing.assert_array_equal(gt1, _window_filter(gt, 15, np.min))
  np.testing.assert_array_equal(gt0, ~_window_filter(gt, 11, np.max))


# ------------------------------------------------------------- localization ---


def test_f1_best_by_hand_with_ties_and_ignored_band():
  gt = _square()
  gt1, gt0 = fm.border_masks(gt)
  score_map = np.full(gt.shape, 0.2, np.float32)
  score_map[np.nonzero(gt1)[0][:18], np.nonzero(gt1)[1][:18]] = 0.8  # half the 36 forged
  authentic = np.argwhere(gt0)[:10]
  score_map[authentic[:, 0], authentic[:, 1]] = 0.8  # 10 of the 700 authentic
  score_map[~(gt1 | gt0)] = 0.8  # the ignored band must not count
  # th = 0.2: TP 18, FP 10, FN 18 -> 36 / 64; th = 0.8: nothing predicted -> F1 0,
  # inverted 72 / 772; the best of all is 36 / 64.
  assert fm.f1_best(score_map, gt) == pytest.approx(36 / 64)
  assert fm.f1_fixed(score_map, gt) == pytest.approx(36 / 64)


def test_inverted_map_scores_like_the_map():
  gt = _square()
  score_map = np.where(gt, 0.1, 0.9).astype(np.float32)  # marks the authentic part
  assert fm.f1_best(score_map, gt) == 1.0
  assert fm.f1_fixed(score_map, gt) == 1.0
  assert fm.mcc(score_map, gt) == 1.0


def test_inverted_f1_formula_by_hand():
  gt = _square()
  # Nothing predicted forged at 0.5: TP 0, FN 36, FP 0, TN 700 -> F1 0, inverted
  # 2FN / (2FN + TP + TN) = 72 / 772.
  score_map = np.zeros(gt.shape, np.float32)
  assert fm.f1_fixed(score_map, gt) == pytest.approx(72 / 772)


def test_fixed_threshold_is_strictly_greater():
  gt = _square()
  score_map = np.where(gt, 0.5, 0.0).astype(np.float32)
  # map > 0.5 predicts nothing (F1 0, inverted 72/772); `>=` would give 1.
  assert fm.f1_fixed(score_map, gt) == pytest.approx(72 / 772)
  assert fm.f1_fixed(score_map, gt, threshold=0.49) == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_f1_best_and_fixed_match_sklearn_on_random_maps(seed):
  rng = np.random.default_rng(seed)
  gt = _random_gt(rng)
  # Quantised values make many ties; adding the truth makes maps better than chance.
  score_map = np.round(rng.random(gt.shape) * 0.7 + 0.3 * gt, 1).astype(np.float32)
  if seed % 2:
    score_map = 1 - score_map  # an inverted detector
  assert fm.f1_best(score_map, gt) == pytest.approx(_reference_f1_best(score_map, gt), abs=1e-12)
  gt1, gt0 = fm.border_masks(gt)
  valid = gt1 | gt0
  predicted = score_map[valid] > 0.5
  expected = max(
      skm.f1_score(gt1[valid], predicted, zero_division=0),
      skm.f1_score(gt1[valid], ~predicted, zero_division=0),
  )
  assert fm.f1_fixed(score_map, gt) == pytest.approx(expected, abs=1e-12)
  assert fm.mcc(score_map, gt) == pytest.approx(
      abs(skm.matthews_corrcoef(gt1[valid], predicted)), abs=1e-12
  )


def test_f1_best_is_at_least_f1_fixed_on_continuous_maps():
  rng = np.random.default_rng(7)
  gt = _random_gt(rng)
  score_map = rng.random(gt.shape).astype(np.float32) * 0.5 + 0.5 * gt
  assert fm.f1_best(score_map, gt) >= fm.f1_fixed(score_map, gt) > 0.5


def test_authentic_gt_scores_zero_and_no_valid_pixel_is_nan():
  authentic = np.zeros((40, 40), bool)
  score_map = np.random.default_rng(0).random((40, 40)).astype(np.float32)
  # The official arithmetic clamps 0/0 to 0: an all-authentic valid region scores 0.
  assert fm.f1_best(score_map, authentic) == 0.0
  assert fm.f1_fixed(score_map, authentic) == 0.0
  assert fm.mcc(score_map, authentic) == 0.0
  tiny = np.zeros((10, 10), bool)
  tiny[5, 5] = True  # too small to survive erosion; its dilation covers the whole image
  assert np.isnan(fm.f1_best(score_map[:10, :10], tiny))
  assert np.isnan(fm.f1_fixed(score_map[:10, :10], tiny))
  assert np.isnan(fm.mcc(score_map[:10, :10], tiny))


def test_localization_summary_nanmeans_forged_images_only():
  gt = _square()
  perfect = gt.astype(np.float32)
  blank = np.zeros(gt.shape, np.float32)
  tiny = np.zeros((10, 10), bool)
  tiny[5, 5] = True
  summary = fm.localization_summary(
      [perfect, blank, blank, np.zeros((10, 10))], [gt, gt, np.zeros_like(gt), tiny]
  )
  assert summary["count"] == 2  # the authentic GT is left out, the NaN image skipped
  assert summary["f1_best"] == pytest.approx((1 + 72 / 772) / 2)
  assert summary["f1_fixed"] == pytest.approx((1 + 72 / 772) / 2)
  assert summary["mcc"] == pytest.approx(0.5)
  empty = fm.localization_summary([], [])
  assert empty["count"] == 0 and np.isnan(empty["f1_best"])


def test_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match="differ in shape"):
    fm.f1_best(np.zeros((4, 5)), np.zeros((5, 4)))


# ---------------------------------------------------------------- detection ---


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_bacc_match_sklearn_with_ties(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, 200)
  scores = np.round(rng.random(200) * 0.6 + 0.3 * labels, 1)  # ties, and scores of exactly 0.5
  assert np.any(scores == 0.5)
  assert fm.auc(scores, labels) == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)
  assert fm.balanced_accuracy(scores, labels) == pytest.approx(
      skm.balanced_accuracy_score(labels, scores > 0.5), abs=1e-12
  )
  summary = fm.detection_summary(scores, labels)
  assert summary == {"auc": fm.auc(scores, labels), "bacc": fm.balanced_accuracy(scores, labels)}


def test_auc_by_hand():
  # Pairs (pos, neg): (0.9, 0.1) win, (0.9, 0.5) win, (0.5, 0.1) win, (0.5, 0.5) tie.
  assert fm.auc([0.9, 0.5, 0.1, 0.5], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)


def test_one_class_detection():
  scores, labels = [0.2, 0.7, 0.4], [0, 0, 0]
  assert np.isnan(fm.auc(scores, labels))
  # The recall of the one class present, as scikit-learn gives (with a warning).
  assert fm.balanced_accuracy(scores, labels) == pytest.approx(2 / 3)
