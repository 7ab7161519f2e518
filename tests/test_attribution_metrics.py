"""Attribution metrics (provjax.metrics.attribution) against scikit-learn, scipy and hand counts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg
from sklearn import metrics as skm

from provjax.metrics import attribution


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Random labelings of random size and label counts; every 5th has a single-cluster side."""
  rng = np.random.default_rng(seed)
  n = int(rng.integers(1, 200))
  k_true, k_pred = (int(k) for k in rng.integers(1, 10, 2))
  if seed % 5 == 0:
    k_true = 1
  if seed % 10 == 0:
    k_pred = 1
  labels = rng.integers(0, k_true, n)
  preds = rng.integers(0, k_pred, n)
  if seed % 7 == 0:  # a labeling that is a relabeling of the truth: NMI 1
    preds = (labels * 3 + 1) % 11
  return labels, preds


@pytest.mark.filterwarnings("ignore:A single label was found")  # sklearn, on one-class cases
@pytest.mark.parametrize("seed", range(50))
def test_matches_sklearn(seed):
  labels, preds = _random_case(seed)
  expected = skm.normalized_mutual_info_score(labels, preds)
  assert attribution.nmi(labels, preds) == pytest.approx(expected, rel=1e-9, abs=1e-12)
  assert attribution.attribution_accuracy(labels, preds) == pytest.approx(
      skm.accuracy_score(labels, preds)
  )
  k = int(max(labels.max(), preds.max())) + 1
  np.testing.assert_array_equal(
      attribution.confusion(labels, preds, k), skm.confusion_matrix(labels, preds, labels=range(k))
  )


def test_nmi_limit_cases():
  assert attribution.nmi([], []) == skm.normalized_mutual_info_score([], []) == 1.0
  assert attribution.nmi([3, 3, 3], [5, 5, 5]) == 1.0  # both single clusters
  assert attribution.nmi([0, 0, 0, 0], [0, 1, 2, 3]) == 0.0  # one side a single cluster
  assert attribution.nmi([0, 0, 1, 1], [0, 1, 0, 1]) == 0.0  # independent
  assert attribution.nmi([0, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(1.0)


def test_detection_accuracy_by_hand():
  labels = [0, 0, 1, 2, 3, 0]
  preds = [0, 2, 3, 2, 0, 0]  # right: real, -, fake, fake, -, real
  assert attribution.detection_accuracy(labels, preds) == pytest.approx(4 / 6)
  assert attribution.attribution_accuracy(labels, preds) == pytest.approx(3 / 6)


def test_purity_by_hand():
  labels = [0, 0, 0, 1, 1, 2, 2, 2]
  preds = [5, 5, 7, 7, 7, 7, 9, 9]  # cluster 5: {0,0}, 7: {0,1,1,2}, 9: {2,2}
  assert attribution.purity(labels, preds) == pytest.approx((2 + 2 + 2) / 8)
  assert attribution.purity(labels, labels) == 1.0


def test_semantic_split_by_hand():
  labels = [0, 1, 2, 0, 1, 2]
  preds = [0, 1, 1, 1, 0, 2]
  semantics = [0, 0, 1, 2, 2, 3]  # nseen = 2: the first three samples are seen
  scores = attribution.semantic_split(labels, preds, semantics, nseen=2)
  assert scores == pytest.approx(
      {
          "det_acc": 4 / 6,
          "attr_acc": 3 / 6,
          "nmi": skm.normalized_mutual_info_score(labels, preds),
          "seen/det_acc": 3 / 3,
          "seen/attr_acc": 2 / 3,
          "unseen/det_acc": 1 / 3,
          "unseen/attr_acc": 1 / 3,
      }
  )
  assert attribution.summary(labels, preds, semantics, nseen=2) == scores


def test_semantic_split_skips_an_empty_part():
  scores = attribution.semantic_split([0, 1], [0, 1], [0, 1], nseen=5)
  assert "unseen/attr_acc" not in scores and "unseen/det_acc" not in scores
  assert scores["seen/attr_acc"] == 1.0


def test_summary_without_semantics():
  assert set(attribution.summary([0, 1, 2], [0, 2, 2])) == {"det_acc", "attr_acc", "nmi"}
  with pytest.raises(ValueError, match="nseen"):
    attribution.summary([0, 1], [0, 1], [0, 0])


def test_validation():
  with pytest.raises(ValueError, match="3 labels but 2 preds"):
    attribution.attribution_accuracy([0, 1, 2], [0, 1])
  with pytest.raises(ValueError, match="2 labels but 1 semantics"):
    attribution.semantic_split([0, 1], [0, 1], [0], nseen=1)
  with pytest.raises(ValueError, match="integers"):
    attribution.nmi([0.5, 1.0], [0, 1])
  with pytest.raises(ValueError, match="0..2"):
    attribution.confusion([0, 3], [0, 1], 3)


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
  a = rng.normal(size=(d, d))
  return a @ a.T + 0.1 * np.eye(d)


def _scipy_frechet(mu1, s1, mu2, s2) -> float:
  root = linalg.sqrtm(s1 @ s2)
  return float(np.real(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root)))


@pytest.mark.parametrize("seed", range(10))
def test_frechet_matches_scipy_sqrtm(seed):
  rng = np.random.default_rng(seed)
  d = int(rng.integers(1, 12))
  mu1, mu2, s1, s2 = rng.normal(size=d), rng.normal(size=d), _spd(rng, d), _spd(rng, d)
  expected = _scipy_frechet(mu1, s1, mu2, s2)
  assert attribution.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7)
  assert attribution.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8 * d)


def test_fd_ratio_separates_classes():
  rng = np.random.default_rng(0)
  centres = 20.0 * rng.normal(size=(4, 8))
  labels = np.repeat(np.arange(4), 200)
  features = centres[labels] + rng.normal(size=(labels.size, 8))
  assert attribution.fd_ratio(features, labels, rng=1) < 0.1


def test_fd_ratio_of_identical_classes_is_the_sampling_noise_ratio():
  # Between samples of one distribution both distances are pure estimation noise, which grows
  # as 1/n1 + 1/n2: halves (n/2 each) against whole classes (n each) give a ratio near 2.
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(4), 400)
  features = rng.normal(size=(labels.size, 8))
  assert 1.5 < attribution.fd_ratio(features, labels, rng=1, splits=3) < 2.7


def test_fd_ratio_needs_classes_with_samples():
  features = np.zeros((6, 2))
  with pytest.raises(ValueError, match="two classes"):
    attribution.fd_ratio(features, np.zeros(6, int), rng=0)
  with pytest.raises(ValueError, match="class 1 has 2 samples"):
    attribution.fd_ratio(features, [0, 0, 0, 0, 1, 1], rng=0)
