"""The official ISC2021 / DrivenData copy-detection metrics (specs/copy_detection.md sections 2, 7).

A submission is a list of predictions (query_id, reference_id, score), higher score = more
likely a copy; the ground truth (GT) is a set of (query_id, reference_id) pairs, at most a few
per query, plus the ids of every query in the GT file (most of them match nothing).

* Input handling: a duplicate (q, r) prediction is an error; predictions for queries absent
  from the GT file are dropped (the DrivenData rule), so predictions for the GT file's
  non-matching queries stay and count as false positives.
* `precision_recall`: predictions sorted by decreasing score, and *at equal score false
  matches first* (the official sort by (score, not y_true), reversed). This is the worst
  case over tie orders, so giving every prediction the same score cannot pay. Precision and
  recall at every prefix k, without interpolation: TP_k / k and TP_k / N_gt.
* `average_precision` (µAP, "Jay Qi's version"): sum_k (recall_k - recall_{k-1}) precision_k
  with recall_0 = 0, i.e. the mean over GT pairs of the precision at the rank where each is
  found (0 when never found). Not the legacy left-point rule.
* `recall_at_precision` (RP90): the largest recall over prefixes with precision >= 0.9, and
  the score there; (0.0, None) when no prefix reaches it (DrivenData reports 0.0).
* `rank_recalls` (R@1, R@10, isc2021): the rank of a GT pair is the number of predictions for
  its query scoring >= the pair's score, minus one (2**35 when the pair is not predicted).

The arithmetic is the official one (integer cumulative counts divided in float64, the µAP as
one numpy sum of the same products), so the values agree bit for bit with isc2021.
"""

from __future__ import annotations

from typing import Hashable, Iterable

import numpy as np

NOT_FOUND_RANK = 1 << 35  # isc2021's rank for a GT pair that has no prediction
P90 = 0.9


def precision_recall(
    y_true: np.ndarray, scores: np.ndarray, num_gt: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Precision and recall at every prefix of the predictions ranked by decreasing score.

  Args:
    y_true: bool [P], whether each prediction is a GT pair.
    scores: float [P], higher = more similar.
    num_gt: number of GT pairs (the recall denominator, > 0).

  Returns:
    (precision float64 [P], recall float64 [P], thresholds [P] = the sorted scores), by
    increasing prefix length; at equal score the false predictions come first.
  """
  y_true = np.asarray(y_true, bool).reshape(-1)
  scores = np.asarray(scores, np.float64).reshape(-1)
  if y_true.shape != scores.shape:
    raise ValueError(f"y_true has {y_true.size} entries but scores {scores.size}")
  if num_gt < 1:
    raise ValueError(f"num_gt must be >= 1, got {num_gt}")
  # lexsort's last key is the primary one: score descending, then false (0) before true (1).
  order = np.lexsort((y_true, -scores))
  y_sorted = y_true[order]
  ntp = np.cumsum(y_sorted)
  nres = np.arange(1, y_sorted.size + 1)
  return ntp / nres, ntp / num_gt, scores[order]


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
  """µAP = sum_k (recall_k - recall_{k-1}) * precision_k with recall_0 = 0.

  Args:
    recall: float [P], non-decreasing (as `precision_recall` returns it).
    precision: float [P].

  Raises:
    ValueError: if the recalls are not sorted (the official code refuses them too).
  """
  recall = np.asarray(recall, np.float64)
  precision = np.asarray(precision, np.float64)
  if np.any(recall[1:] < recall[:-1]):
    raise ValueError("recall must be sorted by increasing value")
  steps = recall - np.concatenate([[0.0], recall[:-1]])
  return float((steps * precision).sum())


def recall_at_precision(
    precision: np.ndarray, recall: np.ndarray, thresholds: np.ndarray, min_precision: float = P90
) -> tuple[float, float | None]:
  """The highest recall over prefixes with precision >= `min_precision`, and its score.

  Among prefixes with that recall the first one (the TP that reached it) gives the threshold,
  as the official argmax does.

  Returns:
    (recall, threshold); (0.0, None) when no prefix reaches `min_precision`.
  """
  valid = np.flatnonzero(np.asarray(precision) >= min_precision)
  if valid.size == 0:
    return 0.0, None
  best = valid[np.argmax(np.asarray(recall)[valid])]
  return float(recall[best]), float(thresholds[best])


def rank_recalls(
    gt_query: np.ndarray,
    gt_pred: np.ndarray,
    pred_query: np.ndarray,
    scores: np.ndarray,
    ranks_at: tuple[int, ...] = (1, 10),
) -> tuple[float, ...]:
  """Recall at ranks (R@1, R@10): the fraction of GT pairs whose rank is below each cut-off.

  Args:
    gt_query: int [G] query code of each GT pair.
    gt_pred: int [G] index into the predictions of that pair, -1 when it is not predicted.
    pred_query: int [P] query code of each prediction.
    scores: float [P] prediction scores.
    ranks_at: cut-offs n; R@n = mean(rank < n).

  Returns:
    One recall per cut-off, in the order of `ranks_at`.
  """
  gt_query = np.asarray(gt_query, np.int64)
  gt_pred = np.asarray(gt_pred, np.int64)
  pred_query = np.asarray(pred_query, np.int64)
  scores = np.asarray(scores, np.float64)
  ranks = np.full(gt_query.shape, NOT_FOUND_RANK, np.int64)
  if scores.size:
    # Group predictions by query, best first; then the number of a query's predictions scoring
    # >= s is the end of s's run of equal (query, score) minus the start of the query's group.
    order = np.lexsort((-scores, pred_query))
    q_sorted, s_sorted = pred_query[order], scores[order]
    n = order.size
    new_group = np.concatenate([[True], q_sorted[1:] != q_sorted[:-1]])
    new_run = new_group | np.concatenate([[True], s_sorted[1:] != s_sorted[:-1]])
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    run_starts = np.flatnonzero(new_run)
    run_end = np.append(run_starts[1:], n)[np.cumsum(new_run) - 1]
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    found = gt_pred >= 0
    p = position[gt_pred[found]]
    ranks[found] = run_end[p] - group_start[p] - 1
  if ranks.size == 0:
    return tuple(0.0 for _ in ranks_at)
  return tuple(float(np.mean(ranks < n)) for n in ranks_at)


def _codes(values: list, vocab: dict) -> np.ndarray:
  """Integer codes of hashable ids, growing `vocab` with ids not seen before."""
  return np.fromiter((vocab.setdefault(v, len(vocab)) for v in values), np.int64, len(values))


def evaluate(
    gt_pairs: Iterable[tuple[Hashable, Hashable]],
    predictions: Iterable[tuple[Hashable, Hashable, float]],
    *,
    gt_queries: Iterable[Hashable] | None = None,
    max_results: int | None = None,
) -> dict:
  """Scores predictions against the ground truth with the official ISC2021 metrics.

  Args:
    gt_pairs: (query_id, reference_id) of every true copy; references must be non-empty.
    predictions: (query_id, reference_id, score), higher score = more likely a copy.
    gt_queries: every query id of the GT file, non-matching ones included; predictions for
      other queries are dropped. Default: the queries of `gt_pairs`.
    max_results: the most predictions accepted (500,000 in the matching track); checked
      before any is dropped, as the official script does.

  Returns:
    dict with `micro_ap`, `recall_at_p90` (0.0 when precision 0.9 is never reached),
    `threshold_at_p90` (None then), `recall_at_rank1`, `recall_at_rank10`, `num_gt` and
    `num_predictions` (after dropping predictions for queries outside the GT file).

  Raises:
    ValueError: on a duplicate (q, r) prediction or GT pair, an empty GT reference, a NaN
      score, no GT pair, a GT query missing from `gt_queries`, or too many predictions.
  """
  gt_pairs = list(gt_pairs)
  predictions = list(predictions)
  if max_results is not None and len(predictions) > max_results:
    raise ValueError(f"too many predictions ({len(predictions)} > max_results={max_results})")
  if not gt_pairs:
    raise ValueError("the ground truth has no matching pair: µAP is undefined")
  for q, r in gt_pairs:
    if r is None or r == "":
      raise ValueError(f"GT pair for query {q!r} has an empty reference (skip such rows)")

  q_vocab, r_vocab = {}, {}
  gt_q = _codes([q for q, _ in gt_pairs], q_vocab)
  gt_r = _codes([r for _, r in gt_pairs], r_vocab)
  if gt_queries is not None:
    gt_queries = list(gt_queries)
    missing = set(q_vocab).difference(gt_queries)
    if missing:
      raise ValueError(
          f"GT pairs name queries absent from gt_queries, e.g. {sorted(missing, key=repr)[0]!r}"
      )
    _codes(gt_queries, q_vocab)
  # Codes below this are the GT file's queries; a prediction's query coded later is not in it.
  num_known = len(q_vocab)

  pq = _codes([p[0] for p in predictions], q_vocab)
  pr = _codes([p[1] for p in predictions], r_vocab)
  scores = np.fromiter((p[2] for p in predictions), np.float64, len(predictions))
  if np.isnan(scores).any():
    raise ValueError(
        f"prediction {predictions[int(np.argmax(np.isnan(scores)))]!r} has a NaN score"
    )
  # One int64 key per (q, r) pair: vocabularies of a few million ids cannot overflow it.
  gt_key = gt_q * len(r_vocab) + gt_r
  pred_key = pq * len(r_vocab) + pr
  _raise_on_duplicate(gt_key, gt_pairs, "GT pair")
  _raise_on_duplicate(pred_key, predictions, "prediction")

  keep = pq < num_known
  pq, pred_key, scores = pq[keep], pred_key[keep], scores[keep]
  gt_pred = _find(pred_key, gt_key)
  y_true = np.zeros(pred_key.shape, bool)
  y_true[gt_pred[gt_pred >= 0]] = True

  precision, recall, thresholds = precision_recall(y_true, scores, len(gt_pairs))
  rp90, tp90 = recall_at_precision(precision, recall, thresholds)
  r1, r10 = rank_recalls(gt_q, gt_pred, pq, scores)
  return {
      "micro_ap": average_precision(recall, precision),
      "recall_at_p90": rp90,
      "threshold_at_p90": tp90,
      "recall_at_rank1": r1,
      "recall_at_rank10": r10,
      "num_gt": len(gt_pairs),
      "num_predictions": int(scores.size),
  }


def _find(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
  """Position in `keys` (unique) of each of `wanted`, -1 where absent."""
  out = np.full(wanted.shape, -1, np.int64)
  if keys.size == 0:
    return out
  by_key = np.argsort(keys)
  slot = np.minimum(np.searchsorted(keys[by_key], wanted), keys.size - 1)
  found = keys[by_key[slot]] == wanted
  out[found] = by_key[slot[found]]
  return out


def _raise_on_duplicate(keys: np.ndarray, items: list, what: str) -> None:
  """Raises ValueError naming the first repeated (q, r) pair among `keys` (aligned with items)."""
  if keys.size < 2:
    return
  order = np.argsort(keys, kind="stable")
  repeats = np.flatnonzero(keys[order][1:] == keys[order][:-1])
  if repeats.size:
    item = items[order[repeats[0] + 1]]
    raise ValueError(f"duplicate {what} (query {item[0]!r}, reference {item[1]!r})")
