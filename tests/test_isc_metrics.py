"""Tests for provjax.metrics.isc: the official ISC2021 / DrivenData metrics."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from provjax.metrics import isc

GT = [("Q1", "R1"), ("Q2", "R2")]


def test_tie_counts_the_false_match_first():
  # Q1's true and false match share score 0.5: the false one is ranked first.
  # Worst-case order: F(0.5) T(0.5) T(0.4) -> precisions 0, 1/2, 2/3 at recalls 0, .5, 1.
  preds = [("Q1", "R9", 0.5), ("Q1", "R1", 0.5), ("Q2", "R2", 0.4)]
  m = isc.evaluate(GT, preds)
  assert m["micro_ap"] == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
  # The optimistic order T F T would give 0.5 * 1 + 0.5 * 2/3: the tie rule costs 0.25.
  assert m["micro_ap"] != pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
  p, r, t = isc.precision_recall(np.array([True, False, True]), np.array([0.5, 0.5, 0.4]), 2)
  np.testing.assert_allclose(p, [0, 1 / 2, 2 / 3])
  np.testing.assert_allclose(r, [0, 0.5, 1])
  np.testing.assert_array_equal(t, [0.5, 0.5, 0.4])
  # Rank of (Q1, R1): two predictions of Q1 score >= 0.5, so rank 1: not a hit at rank 1.
  assert m["recall_at_rank1"] == 0.5
  assert m["recall_at_rank10"] == 1.0


def test_non_matching_query_counts_and_unknown_query_is_dropped():
  gt_queries = ["Q1", "Q2", "Q3"]  # Q3 is in the GT file but matches nothing
  preds = [("Q1", "R1", 0.9), ("Q3", "R5", 0.8), ("Q4", "R7", 0.85), ("Q2", "R2", 0.7)]
  m = isc.evaluate(GT, preds, gt_queries=gt_queries)
  # Q4 is not in the GT file: dropped. Order T(.9) F(.8, Q3) T(.7): AP = .5*1 + .5*2/3.
  assert m["num_predictions"] == 3
  assert m["num_gt"] == 2
  assert m["micro_ap"] == pytest.approx(0.5 + 0.5 * 2 / 3)
  # Precision >= 0.9 holds only at the first prefix: recall 0.5 at score 0.9.
  assert m["recall_at_p90"] == 0.5
  assert m["threshold_at_p90"] == 0.9
  # Without gt_queries only the GT pairs' queries count: Q3 is dropped too.
  m2 = isc.evaluate(GT, preds)
  assert m2["num_predictions"] == 2
  assert m2["micro_ap"] == 1.0


def test_duplicates_and_limits_raise():
  with pytest.raises(ValueError, match="'Q1'.*'R3'"):
    isc.evaluate(GT, [("Q1", "R3", 0.2), ("Q2", "R2", 0.1), ("Q1", "R3", 0.9)])
  with pytest.raises(ValueError, match="too many"):
    isc.evaluate(GT, [("Q1", "R1", 0.2), ("Q2", "R2", 0.1)], max_results=1)
  with pytest.raises(ValueError, match="empty reference"):
    isc.evaluate([("Q1", "")], [])
  with pytest.raises(ValueError, match="NaN"):
    isc.evaluate(GT, [("Q1", "R1", float("nan"))])
  with pytest.raises(ValueError, match="sorted"):
    isc.average_precision(np.array([0.5, 0.2]), np.array([1.0, 1.0]))


def test_no_p90_returns_zero():
  preds = [("Q1", "R5", 0.9), ("Q1", "R1", 0.8), ("Q2", "R6", 0.7), ("Q2", "R2", 0.6)]
  m = isc.evaluate(GT, preds)
  assert m["recall_at_p90"] == 0.0
  assert m["threshold_at_p90"] is None
  assert m["micro_ap"] == pytest.approx(0.5 * 0.5 + 0.5 * 0.5)


def test_rank_recalls_with_absent_pair():
  gt = [("Q1", "R1"), ("Q2", "R2"), ("Q3", "R3")]
  # Q1: true match second of 11 -> rank 1; Q2: true match after 10 better ones -> rank 10;
  # Q3: its true pair is never predicted -> rank 2**35.
  preds = [("Q1", "R1", 0.8), ("Q1", "R0", 0.9)] + [("Q1", f"X{i}", 0.1) for i in range(9)]
  preds += [("Q2", f"Y{i}", 1.0 + i) for i in range(10)] + [("Q2", "R2", 0.5)]
  preds += [("Q3", "R4", 0.99)]
  m = isc.evaluate(gt, preds)
  assert m["recall_at_rank1"] == 0.0
  assert m["recall_at_rank10"] == pytest.approx(1 / 3)
  m = isc.evaluate(gt, preds + [("Q3", "R3", 0.99)])  # ties Q3's false match: rank 1
  assert m["recall_at_rank1"] == 0.0
  assert m["recall_at_rank10"] == pytest.approx(2 / 3)


def _brute_force(gt, preds):
  """Straight from the definitions: worst-case order, precision at each prefix, ranks."""
  gt_set = set(gt)
  # Sort by score descending; among equal scores, false matches first.
  ranked = sorted(preds, key=lambda p: (-p[2], (p[0], p[1]) in gt_set))
  ap, best_recall, tp = 0.0, 0.0, 0
  for k in range(1, len(ranked) + 1):
    prefix = ranked[:k]
    tp = sum((q, r) in gt_set for q, r, _ in prefix)
    precision, recall = tp / k, tp / len(gt)
    if (ranked[k - 1][0], ranked[k - 1][1]) in gt_set:
      ap += precision / len(gt)
    if precision >= 0.9:
      best_recall = max(best_recall, recall)
  ranks = []
  for q, r in gt:
    mine = [s for pq, pr, s in preds if (pq, pr) == (q, r)]
    if mine:
      ranks.append(sum(1 for pq, _, s in preds if pq == q and s >= mine[0]) - 1)
    else:
      ranks.append(1 << 35)
  ranks = np.array(ranks)
  return ap, best_recall, np.mean(ranks == 0), np.mean(ranks < 10)


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_with_many_ties(seed):
  rng = np.random.default_rng(seed)
  nq, nr = 12, 15
  gt = [(f"Q{q}", f"R{rng.integers(nr)}") for q in range(nq) if rng.random() < 0.6]
  pairs = {(f"Q{rng.integers(nq)}", f"R{rng.integers(nr)}") for _ in range(80)}
  pairs |= set(gt[: len(gt) // 2])  # make sure some true matches are predicted
  # Integer scores in [0, 4]: nearly every score is tied with many others.
  preds = [(q, r, float(rng.integers(0, 5))) for q, r in sorted(pairs)]
  m = isc.evaluate(gt, preds, gt_queries=[f"Q{q}" for q in range(nq)])
  ap, rp90, r1, r10 = _brute_force(gt, preds)
  assert m["micro_ap"] == pytest.approx(ap, abs=1e-12)
  assert m["recall_at_p90"] == pytest.approx(rp90, abs=1e-12)
  assert m["recall_at_rank1"] == pytest.approx(r1)
  assert m["recall_at_rank10"] == pytest.approx(r10)


def test_equals_sklearn_without_ties_at_full_recall():
  rng = np.random.default_rng(0)
  n = 300
  y = rng.random(n) < 0.3
  scores = rng.permutation(n).astype(np.float64) + rng.random(n) * 0.5  # distinct
  p, r, _ = isc.precision_recall(y, scores, int(y.sum()))  # every GT pair is predicted
  assert isc.average_precision(r, p) == pytest.approx(average_precision_score(y, scores))
  gt = [(f"Q{i}", "R") for i in np.flatnonzero(y)]
  preds = [(f"Q{i}", "R" if y[i] else "X", scores[i]) for i in range(n)]
  m = isc.evaluate(gt, preds, gt_queries=[f"Q{i}" for i in range(n)])
  assert m["micro_ap"] == pytest.approx(average_precision_score(y, scores))
