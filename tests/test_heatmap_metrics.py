"""Heatmap IoU / emptiness against hand-computed cases and independent references."""

import numpy as np
import pytest
from sklearn.metrics import jaccard_score

from provjax.metrics import heatmap as hm


def _keys_bicubic_upsample_1d(values, out: int, a: float = -0.5) -> np.ndarray:
  """Independent 1-D bicubic upsampling with PIL's conventions, rounded to uint8.

  PIL samples output pixel i at input position (i + 0.5) * n / out - 0.5
  with the Keys kernel (a = -0.5), edge taps clamped to the image and the
  weights renormalised.
  """

  def kernel(x):
    x = abs(x)
    if x < 1:
      return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
      return (((x - 5) * x + 8) * x - 4) * a
    return 0.0

  n = len(values)
  res = np.empty(out)
  for i in range(out):
    centre = (i + 0.5) * n / out
    taps = range(max(int(np.floor(centre - 2.5)), 0), min(int(np.ceil(centre + 2.5)), n))
    w = np.asarray([kernel(j + 0.5 - centre) for j in taps])
    res[i] = np.dot(w / w.sum(), [values[j] for j in taps])
  return np.clip(np.round(res), 0, 255)


def test_hand_computed_cases():
  gt = np.zeros((7, 7), np.float32)
  gt[2:4, 3:5] = 1.0
  assert hm.heatmap_iou(gt, gt) == 1.0
  assert hm.heatmap_iou(3.0 * gt - 7.0, gt) == 1.0  # min-max normalisation
  assert hm.heatmap_iou(np.zeros((7, 7)), np.zeros((7, 7))) == 0.0  # empty union
  corner_a, corner_b = np.zeros((7, 7)), np.zeros((7, 7))
  corner_a[0, 0], corner_b[6, 6] = 1.0, 1.0
  assert hm.heatmap_iou(corner_a, corner_b) == 0.0
  # A constant positive prediction (test-time "distinct") stays a full map.
  assert hm.heatmap_iou(np.ones((7, 7)), np.ones((7, 7))) == 1.0
  assert hm.heatmap_iou(np.full((7, 7), -2.0), np.ones((7, 7))) == 0.0


def test_quantisation_and_threshold_like_torchvision_and_pil():
  assert hm.emptiness(np.zeros((7, 7))) == 1.0
  assert hm.emptiness(np.ones((7, 7))) == 0.0
  assert hm.emptiness(np.full((7, 7), 0.30)) == 1.0  # 76 <= 80
  assert hm.emptiness(np.full((7, 7), 0.33)) == 0.0  # 84 > 80
  # mul(255).byte() truncates: 80.9 -> 80, which is not > 80.
  assert hm.emptiness(np.full((7, 7), 80.9 / 255)) == 1.0
  assert hm.emptiness(np.full((7, 7), 81.2 / 255)) == 0.0
  assert hm.emptiness(np.full((7, 7), 5.0)) == 0.0  # clipped to 1, not wrapped


def test_half_map_iou_matches_independent_bicubic():
  gt = np.zeros((7, 7), np.float32)
  gt[:3] = 1.0
  profile = _keys_bicubic_upsample_1d(hm.quantize(gt[:, 0]).astype(float), 1024)
  rows_on = int(np.count_nonzero(profile > hm.THRESHOLD))
  # Half-height (0.5) at 3/7 * 1024 = 438.9; the 80/255 level lies ~0.15 cell below.
  assert 445 < rows_on < 475
  binary = hm.binarize(gt)
  assert (binary == binary[:, :1]).all()  # constant along x
  assert abs(int(binary[:, 0].sum()) - rows_on) <= 1  # fixed-point rounding in PIL
  assert hm.heatmap_iou(np.ones((7, 7)), gt) == pytest.approx(binary[:, 0].sum() / 1024)


def test_iou_matches_sklearn_jaccard_on_binarised_maps():
  rng = np.random.default_rng(0)
  for _ in range(4):
    pred, gt = rng.normal(size=(7, 7)), (rng.random((7, 7)) > 0.6).astype(np.float32)
    p, t = hm.binarize(hm.minmax_normalize(pred)), hm.binarize(gt)
    want = jaccard_score(t.ravel(), p.ravel(), zero_division=0.0)
    assert hm.heatmap_iou(pred, gt) == pytest.approx(want, abs=1e-12)
    assert 0.0 < want < 1.0
  preds = rng.normal(size=(3, 7, 7))
  np.testing.assert_allclose(
      hm.batch_emptiness(np.clip(preds, 0, 1)), [hm.emptiness(np.clip(p, 0, 1)) for p in preds]
  )
  np.testing.assert_allclose(
      hm.batch_heatmap_iou(preds, np.ones((3, 7, 7))),
      [hm.heatmap_iou(p, np.ones((7, 7))) for p in preds],
  )


def test_native_resolution_iou_against_an_exact_mask():
  pred = np.zeros((16, 16), np.float32)
  pred[4:12, 4:12] = 1.0
  mask = np.zeros((64, 96), bool)
  mask[16:48, 24:72] = True  # the same square, at the mask's own (non-square) size
  assert hm.mask_iou(pred, mask) > 0.85  # bicubic rounds the corners
  assert hm.mask_iou(pred, ~mask) < 0.1
  assert hm.mask_iou(np.zeros((7, 7)), np.zeros((5, 5), bool)) == 0.0
  rng = np.random.default_rng(3)
  pred, mask = rng.normal(size=(7, 7)), rng.random((40, 30)) > 0.5
  p = hm.binarize(hm.minmax_normalize(pred), (40, 30))
  assert p.shape == (40, 30)
  want = jaccard_score(mask.ravel(), p.ravel(), zero_division=0.0)
  assert hm.mask_iou(pred, mask) == pytest.approx(want, abs=1e-12)
