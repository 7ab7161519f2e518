"""Merging partial top-k lists (ScaNN + exact delta, or one list per shard) into one."""

from __future__ import annotations

import numpy as np


def merge_topk(
    scores: list[np.ndarray], ids: list[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
  """Merges per-source top-k lists into a global top-k.

  Args:
      scores: float ``[Q, k_i]`` arrays, one per source.
      ids: int ``[Q, k_i]`` arrays (``-1`` marks an empty slot), aligned with ``scores``.
      k: number of results to keep.

  Returns:
      ``(scores float32 [Q, k], ids int64 [Q, k])`` by decreasing score, ties broken by the
      lower id, empty slots (``-inf`` / ``-1``) last.
  """
  s = np.concatenate([np.asarray(x, np.float32) for x in scores], axis=1)
  i = np.concatenate([np.asarray(x, np.int64) for x in ids], axis=1)
  if s.shape[1] < k:  # fewer candidates than k in total: pad with empty slots
    pad = k - s.shape[1]
    s = np.concatenate([s, np.full((s.shape[0], pad), -np.inf, np.float32)], axis=1)
    i = np.concatenate([i, np.full((i.shape[0], pad), -1, np.int64)], axis=1)
  empty = i < 0
  # lexsort sorts by the last key first: primary = empty slots last, then score descending,
  # then id ascending.
  order = np.lexsort((i, -s, empty), axis=1)[:, :k]
  out_s = np.take_along_axis(s, order, axis=1)
  out_i = np.take_along_axis(i, order, axis=1)
  out_s[out_i < 0] = -np.inf
  return out_s, out_i
