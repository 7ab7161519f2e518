"""Forgery detection and localization metrics of the TruFor protocol (specs/trufor.md section 7).

Localization is scored per forged image and averaged with nanmean over the
dataset; detection is scored over real and fake images together.

Localization, per image (`map` in [0, 1], higher = more likely forged; `gt`
nonzero = forged pixel):

* border exclusion (`border_masks`): only pixels deep inside the forged
  region (gt1 = 15x15 minimum filter of gt) or well away from it (gt0 = not
  the 11x11 maximum filter of gt) count; the band around the boundary is
  ignored. The filters use scipy.ndimage's default boundary mode, 'reflect',
  as the official code does, so a region touching the frame is not eroded
  from the frame side.
* `f1_best`: the best F1 over every threshold th in the distinct map values
  (prediction = map > th), taking at each threshold the better of the map and
  its inverse (1 - map), whose F1 is 2FN / (2FN + TP + TN). The inversion
  makes a detector that marks the authentic part instead of the forged one
  score as well as one that marks the forged part.
* `f1_fixed`: the same at one threshold, forged = map > 0.5 (the official
  `map > th`; `>=` would move pixels equal to 0.5 to the forged side).
* `mcc`: |TP TN - FP FN| / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) at the same
  threshold, 0 when the denominator is 0 (the official `computeMCC`; the
  absolute value plays the role of the inversion).

Undefined cases follow the official arithmetic, in which a 0/0 ratio counts
as 0 (its denominators are clamped to 1e-32): an image whose valid region
has pixels but no forged one scores 0, not NaN. Only an image with no valid
pixel at all (every pixel in the ignored band) scores NaN, which the dataset
nanmean then skips; the official code reaches NaN there through a caught
exception. `localization_summary` scores forged images only (GT with at
least one forged pixel), as the protocol does, so passing authentic images
along does not pull the means down.

Detection: `auc` is the ROC AUC with ties counted half (Mann-Whitney U, equal
to scikit-learn's `roc_auc_score`), NaN when only one class is present;
`balanced_accuracy` calls score > 0.5 forged and averages the recall of each
class present in `labels`, as scikit-learn's `balanced_accuracy_score` does.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

ERODE_SIZE = 15  # gt1: a forged pixel counts when its 15x15 neighbourhood is all forged
DILATE_SIZE = 11  # gt0: an authentic pixel counts when its 11x11 neighbourhood is all authentic
THRESHOLD = 0.5


# ------------------------------------------------------------ localization ---


def border_masks(gt) -> tuple[np.ndarray, np.ndarray]:
  """(gt1, gt0): the forged and the authentic pixels that count; the rest are ignored.

  Args:
    gt: HxW ground truth, nonzero (True) = forged.

  Returns:
    gt1 = 15x15 minimum filter of gt, gt0 = not the 11x11 maximum filter of
    gt, both HxW bool and disjoint.
  """
  gt = np.asarray(gt).astype(bool)
  gt1 = ndimage.minimum_filter(gt, size=ERODE_SIZE, mode="reflect")
  gt0 = ~ndimage.maximum_filter(gt, size=DILATE_SIZE, mode="reflect")
  return gt1, gt0


def _valid_pixels(score_map, gt) -> tuple[np.ndarray, np.ndarray]:
  """(map values, forged flags) of the pixels outside the ignored band, as 1-D arrays."""
  score_map = np.asarray(score_map, np.float32)  # the official code compares in float32
  if score_map.shape != np.shape(gt):
    raise ValueError(f"map {score_map.shape} and gt {np.shape(gt)} differ in shape")
  gt1, gt0 = border_masks(gt)
  valid = gt1 | gt0
  return score_map[valid], gt1[valid]


def _f1(tp, fn, fp):
  """2TP / (2TP + FN + FP), 0 where the denominator is 0 (counts are integers)."""
  return 2 * tp / np.maximum(2 * tp + fn + fp, 1)


def _best_of_both(tp, fn, fp, tn):
  """max(F1 of the map, F1 of the inverted map); the inverse swaps TP<->FN and FP<->TN."""
  return np.maximum(_f1(tp, fn, fp), _f1(fn, tp, tn))


def _counts(values: np.ndarray, forged: np.ndarray, threshold: float):
  """(TP, FN, FP, TN) of the prediction values > threshold."""
  predicted = values > np.float32(threshold)
  tp = int(np.count_nonzero(predicted & forged))
  fp = int(np.count_nonzero(predicted & ~forged))
  fn = int(np.count_nonzero(forged)) - tp
  tn = int(forged.size) - tp - fp - fn
  return tp, fn, fp, tn


def f1_best(score_map, gt) -> float:
  """Best-threshold F1 of one image (with inversion and border exclusion); NaN if nothing counts.

  Sorting the valid values once gives the counts at every threshold as
  cumulative sums: at the last pixel of each run of equal values, the pixels
  up to it are the ones predicted authentic (map <= th).
  """
  values, forged = _valid_pixels(score_map, gt)
  if values.size == 0:
    return float("nan")
  order = np.argsort(values, kind="stable")
  values, forged = values[order], forged[order]
  fn = np.cumsum(forged, dtype=np.int64)  # forged pixels at or below each threshold
  tn = np.arange(1, values.size + 1, dtype=np.int64) - fn
  last_of_run = np.append(values[1:] > values[:-1], True)
  fn, tn = fn[last_of_run], tn[last_of_run]
  tp, fp = fn[-1] - fn, tn[-1] - tn
  return float(np.max(_best_of_both(tp, fn, fp, tn)))


def f1_fixed(score_map, gt, threshold: float = THRESHOLD) -> float:
  """F1 of one image at map > threshold (inversion, border exclusion); NaN if nothing counts."""
  values, forged = _valid_pixels(score_map, gt)
  if values.size == 0:
    return float("nan")
  return float(_best_of_both(*_counts(values, forged, threshold)))


def mcc(score_map, gt, threshold: float = THRESHOLD) -> float:
  """|Matthews correlation| at map > threshold (border exclusion); NaN if nothing counts."""
  values, forged = _valid_pixels(score_map, gt)
  if values.size == 0:
    return float("nan")
  tp, fn, fp, tn = (float(c) for c in _counts(values, forged, threshold))
  denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
  return float(abs(tp * tn - fp * fn) / denominator) if denominator > 0 else 0.0


def localization_summary(maps, gts, threshold: float = THRESHOLD) -> dict:
  """Dataset localization scores: nanmeans over the forged images.

  Args:
    maps: per-image HxW maps in [0, 1] (sizes may differ between images).
    gts: the matching HxW ground truths, nonzero = forged. Images whose GT
      has no forged pixel (authentic images) are left out, as the protocol
      scores fake images only.
    threshold: of f1_fixed and mcc.

  Returns:
    {"f1_best", "f1_fixed", "mcc": nanmeans (NaN when no image counts),
     "count": the number of images in the means}.
  """
  rows = []
  for score_map, gt in zip(maps, gts, strict=True):
    if np.any(gt):
      rows.append(
          (
              f1_best(score_map, gt),
              f1_fixed(score_map, gt, threshold),
              mcc(score_map, gt, threshold),
          )
      )
  table = np.asarray(rows, np.float64).reshape(-1, 3)
  scored = ~np.isnan(table[:, 0])  # all three are NaN together: no valid pixel
  means = table[scored].mean(axis=0) if scored.any() else np.full(3, np.nan)
  return {
      "f1_best": float(means[0]),
      "f1_fixed": float(means[1]),
      "mcc": float(means[2]),
      "count": int(scored.sum()),
  }


# --------------------------------------------------------------- detection ---


def _scores_and_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
  scores = np.asarray(scores, np.float64).ravel()
  labels = np.asarray(labels).ravel()
  if scores.shape != labels.shape:
    raise ValueError(f"{scores.size} scores but {labels.size} labels")
  return scores, labels.astype(bool)


def auc(scores, labels) -> float:
  """ROC AUC of image scores (higher = forged) against labels (1 = forged); ties count half.

  This is the Mann-Whitney statistic: the fraction of (forged, authentic)
  pairs ordered correctly, a tie counting 1/2, which equals the area under
  the ROC curve through every distinct threshold (scikit-learn's value).
  NaN when either class is absent.
  """
  scores, labels = _scores_and_labels(scores, labels)
  positive, negative = scores[labels], np.sort(scores[~labels])
  if positive.size == 0 or negative.size == 0:
    return float("nan")
  below = np.searchsorted(negative, positive, side="left")
  not_above = np.searchsorted(negative, positive, side="right")
  wins = below.sum(dtype=np.float64) + 0.5 * (not_above - below).sum(dtype=np.float64)
  return float(wins / (positive.size * negative.size))


def balanced_accuracy(scores, labels, threshold: float = THRESHOLD) -> float:
  """Mean per-class recall of the decision score > threshold = forged; NaN with no images."""
  scores, labels = _scores_and_labels(scores, labels)
  predicted = scores > threshold
  recalls = [
      np.mean(predicted[labels == cls] == cls) for cls in (True, False) if np.any(labels == cls)
  ]
  return float(np.mean(recalls)) if recalls else float("nan")


def detection_summary(scores, labels, threshold: float = THRESHOLD) -> dict:
  """{"auc", "bacc"} over real and fake images (labels 1 = forged)."""
  return {"auc": auc(scores, labels), "bacc": balanced_accuracy(scores, labels, threshold)}
