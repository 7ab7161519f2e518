"""Retrieval quality of an approximate search against the exact one."""

from __future__ import annotations

import numpy as np


def recall_at_k(found_ids: np.ndarray, true_ids: np.ndarray, k: int) -> float:
  """Mean fraction of the true top-k found in the first k returned ids.

  Args:
      found_ids: int [Q, >=k] ids returned by the approximate search.
      true_ids: int [Q, >=k] exact top-k ids.
      k: cut-off.

  Returns:
      recall@k averaged over queries, in [0, 1].
  """
  found = np.asarray(found_ids)[:, :k]
  true = np.asarray(true_ids)[:, :k]
  hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, true))
  return hits / (true.shape[0] * k)
