"""Descriptor-track search protocols of ISC2021 (specs/copy_detection.md sections 3 and 7).

Every protocol takes numpy descriptors (queries [nq, d], references [nr, d], background
[nb, d]) and returns predictions as three aligned arrays ``(query_index int64 [P],
reference_index int64 [P], score float32 [P])``, grouped by query (ascending), best first within
a query, ties by lower reference index. Searches go through `provjax.retrieval`: the exact JAX
matmul top-k (``backend="exact"``, the ground truth) or ScaNN (``backend="scann"``).

* `knn`: the k nearest references of each query (SSCD, CopyNCE; isc2021 ``--knn``).
* `global_budget`: the official protocol: exactly the ``budget`` (default nq * 10) best pairs
  over all nq * nr pairs, so a query may get none or many more than 10.
* Score normalisation: s'(q, r) = q.r - bias(q), the bias measured on a background set
  (the DISC21 training images, never the references): isc2021 (beta times the inner product
  with the n-th background neighbour), SSCD (beta times the mean over neighbours [first, last]),
  CopyNCE (alpha times the mean over sorted neighbours [start, end)). As in isc2021 the bias is
  folded into the vectors, [q, -bias] . [r, 1], so one inner-product search ranks by s'.
* `PCAWhitening`: PCA + whitening + L2 normalisation fitted on the background (SSCD's
  "PCAW{d},L2norm,Flat" codec).

Scores: ``metric="ip"`` gives q.r, ``metric="l2"`` gives -|q - r|^2 (the official score for
L2 search). L2 search runs as an inner-product search through the identity
-|q - r|^2 = 2 q.r - |q|^2 - |r|^2, i.e. [2q, 1, -|q|^2] . [r, -|r|^2, 1], so the same
maximum-inner-product backends serve both metrics on vectors of any norm.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from provjax.retrieval import exact, scann_backend

Predictions = tuple[np.ndarray, np.ndarray, np.ndarray]
Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]

BACKENDS = ("exact", "scann")
METRICS = ("ip", "l2")
DEFAULT_K = 10  # the per-query share of the official budget (nq * 10 results)
# Default parameters of each score-normalisation variant (section 3).
SN_DEFAULTS = {
    "isc2021": {"beta": 2.0, "n": 10},
    "sscd": {"beta": 1.0, "first": 0, "last": 2},
    "copynce": {"alpha": 1.0, "start": 1, "end": 5},
}


# ------------------------------------------------------------------------------- search ---


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
  x = np.asarray(x, np.float32)
  if x.ndim != 2:
    raise ValueError(f"{name} must be [n, d], got shape {x.shape}")
  if not np.isfinite(x).all():
    raise ValueError(f"{name} contain NaN or inf")
  return x


def _augment(queries: np.ndarray, refs: np.ndarray, metric: str):
  """Vectors whose inner product is the score of `metric` (see the module docstring)."""
  if metric not in METRICS:
    raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
  if queries.shape[1] != refs.shape[1]:
    raise ValueError(f"queries have d={queries.shape[1]} but references d={refs.shape[1]}")
  if metric == "ip":
    return queries, refs
  # Squared norms in float64: the float32 column then holds the correctly rounded value.
  q_sq = np.einsum("nd,nd->n", queries.astype(np.float64), queries.astype(np.float64))
  r_sq = np.einsum("nd,nd->n", refs.astype(np.float64), refs.astype(np.float64))
  q_aug = np.column_stack([2 * queries, np.ones(len(queries)), -q_sq]).astype(np.float32)
  r_aug = np.column_stack([refs, -r_sq, np.ones(len(refs))]).astype(np.float32)
  return q_aug, r_aug


def _searcher(db: np.ndarray, backend: str, scann_params: dict | None = None) -> Search:
  """A function ``(queries, k) -> (scores [Q, k], indices [Q, k])`` over the rows of `db`,
  padded with -inf / -1 past the rows found; the database is prepared once for many calls."""
  if backend == "exact":
    device_db = exact.to_device(db)
    return lambda queries, k: exact.topk(device_db, queries, k)
  if backend == "scann":
    if scann_params:
      params = scann_params
      searcher = scann_backend.build_searcher(db, DEFAULT_K, params)
    else:
      searcher, params = scann_backend.build_default(db, DEFAULT_K)
    return lambda queries, k: scann_backend.search_with(searcher, params, queries, k)
  raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


def _empty() -> Predictions:
  return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)


def _flatten(scores: np.ndarray, idx: np.ndarray, rows: np.ndarray) -> Predictions:
  """Per-query result lists -> flat predictions, dropping empty (-1) slots."""
  valid = idx >= 0
  q = np.broadcast_to(np.asarray(rows, np.int64)[:, None], idx.shape)[valid]
  return q, idx[valid].astype(np.int64), scores[valid].astype(np.float32)


def _sort_predictions(q: np.ndarray, r: np.ndarray, s: np.ndarray) -> Predictions:
  """By query, then decreasing score, then reference index."""
  order = np.lexsort((r, -s, q))
  return q[order], r[order], s[order]


def knn(
    queries: np.ndarray,
    refs: np.ndarray,
    k: int = DEFAULT_K,
    *,
    backend: str = "exact",
    metric: str = "ip",
    scann_params: dict | None = None,
) -> Predictions:
  """The k best references of every query (k is capped at nr).

  Args:
    queries: [nq, d] query descriptors.
    refs: [nr, d] reference descriptors.
    k: results per query.
    backend: "exact" (JAX matmul top-k) or "scann" (approximate).
    metric: "ip" (score q.r) or "l2" (score -|q - r|^2).
    scann_params: fixed ScaNN parameters (default: chosen from nr by
      `provjax.retrieval.scann_backend.scann_params`).

  Returns:
    (query_index, reference_index, score) of nq * min(k, nr) predictions (fewer where an
    approximate search finds fewer).
  """
  queries, refs = _as_matrix(queries, "queries"), _as_matrix(refs, "references")
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}")
  q_aug, r_aug = _augment(queries, refs, metric)
  if len(queries) == 0 or len(refs) == 0:
    return _empty()
  scores, idx = _searcher(r_aug, backend, scann_params)(q_aug, min(k, len(refs)))
  return _sort_predictions(*_flatten(scores, idx, np.arange(len(queries))))


def _best(q: np.ndarray, r: np.ndarray, s: np.ndarray, budget: int) -> np.ndarray:
  """Indices of the `budget` best candidates: score desc, then query, then reference."""
  order = np.lexsort((r, q, -s))
  return order[:budget]


def global_budget(
    queries: np.ndarray,
    refs: np.ndarray,
    budget: int | None = None,
    *,
    metric: str = "l2",
    backend: str = "exact",
    scann_params: dict | None = None,
) -> Predictions:
  """The official global-budget search: the `budget` best pairs over all queries together.

  Algorithm (exact, memory O(nq * K0 + budget) whatever nr):

  1. Search every query's top K0 = ceil(budget / nq) references; the budget best of these
     candidates form the current selection (ordered by score desc, then query, then
     reference index, which for a fixed query is the order the search returns).
  2. A query whose K-th (worst) candidate is *not* selected is complete: each of its other
     pairs ranks below that candidate, hence below the selection's last pair. A query whose
     K candidates are *all* selected may own more winners: it is searched again with 2K.
  3. Repeat until no query is incomplete (or has K = nr). More candidates can only raise the
     selection's cut, so a complete query stays complete, and candidates outside the
     selection are dropped at each step (they can never re-enter it).

  The result equals sorting all nq * nr pairs and keeping the first `budget`, including when
  one query owns most winners; re-searches cost at most as much again as the last round.
  Exact with ``backend="exact"``; with ScaNN the per-query lists are approximate.

  Args:
    queries: [nq, d] query descriptors.
    refs: [nr, d] reference descriptors.
    budget: total predictions (default nq * 10, the official nq * 10); capped at nq * nr.
    metric: "l2" (score -|q - r|^2, the official protocol) or "ip".
    backend: "exact" or "scann".
    scann_params: fixed ScaNN parameters, as for `knn`.

  Returns:
    (query_index, reference_index, score) of min(budget, nq * nr) predictions.
  """
  queries, refs = _as_matrix(queries, "queries"), _as_matrix(refs, "references")
  nq, nr = len(queries), len(refs)
  budget = DEFAULT_K * nq if budget is None else int(budget)
  if budget < 0:
    raise ValueError(f"budget must be >= 0, got {budget}")
  q_aug, r_aug = _augment(queries, refs, metric)
  budget = min(budget, nq * nr)
  if budget == 0:
    return _empty()
  search = _searcher(r_aug, backend, scann_params)
  k = min(nr, math.ceil(budget / nq))
  rows = np.arange(nq)
  sel_q, sel_r, sel_s = _empty()
  while True:
    scores, idx = search(q_aug[rows], k)
    new_q, new_r, new_s = _flatten(scores, idx, rows)
    # The re-searched queries' new lists supersede their old candidates.
    old = ~np.isin(sel_q, rows)
    cand_q = np.concatenate([sel_q[old], new_q])
    cand_r = np.concatenate([sel_r[old], new_r])
    cand_s = np.concatenate([sel_s[old], new_s])
    keep = _best(cand_q, cand_r, cand_s, budget)
    sel_q, sel_r, sel_s = cand_q[keep], cand_r[keep], cand_s[keep]
    if k == nr:
      break
    # A re-searched query is incomplete when its k-th candidate made the selection (a -1
    # there means the search had no k-th candidate to give).
    last_ref = np.full(nq, -1, np.int64)
    last_ref[rows] = idx[:, k - 1]
    incomplete = np.zeros(nq, bool)
    incomplete[sel_q[sel_r == last_ref[sel_q]]] = True
    rows = np.flatnonzero(incomplete)
    if rows.size == 0:
      break
    k = min(nr, 2 * k)
  return _sort_predictions(sel_q, sel_r, sel_s)


# ---------------------------------------------------------------------- score normalisation ---


def _sn_params(variant: str, params: dict) -> dict:
  if variant not in SN_DEFAULTS:
    raise ValueError(f"unknown variant {variant!r}; expected one of {tuple(SN_DEFAULTS)}")
  unknown = set(params) - set(SN_DEFAULTS[variant])
  if unknown:
    raise ValueError(f"variant {variant!r} takes {sorted(SN_DEFAULTS[variant])}, got {unknown}")
  return {**SN_DEFAULTS[variant], **params}


def _sn_window(variant: str, p: dict) -> tuple[float, int, int]:
  """(weight, start, stop): the bias is weight * mean of sorted neighbour scores [start, stop)."""
  if variant == "isc2021":
    # isc2021 searches n neighbours and takes the last: the n-th, counted from 1.
    return p["beta"], p["n"] - 1, p["n"]
  if variant == "sscd":
    return p["beta"], p["first"], p["last"] + 1  # SSCD's [first, last] is inclusive
  return p["alpha"], p["start"], p["end"]


def score_normalization_bias(
    queries: np.ndarray, background: np.ndarray, variant: str, *, backend: str = "exact", **params
) -> np.ndarray:
  """The per-query bias of score normalisation, from inner products with background vectors.

  Args:
    queries: [nq, d] descriptors (L2-normalised, so inner products are cosines).
    background: [nb, d] descriptors of the background set (e.g. DISC21 training images).
    variant: "isc2021" (beta=2, n=10: beta * s_n, s_n the n-th neighbour's score, n counted
      from 1), "sscd" (beta=1, first=0, last=2: beta * mean of neighbours first..last,
      inclusive, counted from 0) or "copynce" (alpha=1, start=1, end=5: alpha * mean of
      sorted neighbours [start, end), counted from 0).
    backend: search backend for the background neighbours.
    **params: overrides of the variant's defaults (the names above).

  Returns:
    float32 bias [nq]; the normalised score is q.r - bias.
  """
  queries = _as_matrix(queries, "queries")
  background = _as_matrix(background, "background")
  p = _sn_params(variant, params)
  weight, start, stop = _sn_window(variant, p)
  if not 0 <= start < stop:
    raise ValueError(f"{variant}: empty or negative neighbour window [{start}, {stop})")
  if stop > len(background):
    raise ValueError(f"{variant} needs {stop} background neighbours, got {len(background)}")
  scores, _ = _searcher(background, backend)(queries, stop)
  return (weight * scores[:, start:stop].astype(np.float64).mean(axis=1)).astype(np.float32)


def _normalized_vectors(queries, refs, background, variant, backend, params):
  """[q, -bias] and [r, 1]: their inner product is the normalised score q.r - bias(q)."""
  queries = _as_matrix(queries, "queries")
  refs = _as_matrix(refs, "references")
  bias = score_normalization_bias(queries, background, variant, backend=backend, **params)
  return np.column_stack([queries, -bias]), np.column_stack([refs, np.ones(len(refs))])


def normalized_knn(
    queries: np.ndarray,
    refs: np.ndarray,
    background: np.ndarray,
    k: int = DEFAULT_K,
    variant: str = "isc2021",
    *,
    backend: str = "exact",
    **params,
) -> Predictions:
  """`knn` by the normalised score q.r - bias(q) (see `score_normalization_bias`)."""
  q1, r1 = _normalized_vectors(queries, refs, background, variant, backend, params)
  return knn(q1, r1, k, backend=backend, metric="ip")


def normalized_global(
    queries: np.ndarray,
    refs: np.ndarray,
    background: np.ndarray,
    budget: int | None = None,
    variant: str = "isc2021",
    *,
    backend: str = "exact",
    **params,
) -> Predictions:
  """`global_budget` by the normalised score q.r - bias(q), as isc2021's
  score_normalization.py does (there with a 500,000 budget)."""
  q1, r1 = _normalized_vectors(queries, refs, background, variant, backend, params)
  return global_budget(q1, r1, budget, metric="ip", backend=backend)


# -------------------------------------------------------------------------- PCA whitening ---


@dataclasses.dataclass(frozen=True)
class PCAWhitening:
  """PCA to `dim` dimensions, whitening, then L2 normalisation.

  apply(x) = normalise(((x - mean) @ components.T) * scale), with scale = 1 / sqrt(lambda +
  eps * lambda_max) per kept eigenvalue lambda: the projected background has identity
  covariance up to the eps term, which keeps near-zero eigenvalues from blowing noise up.

  Attributes:
    mean: float32 [d] background mean.
    components: float32 [dim, d] principal directions, by decreasing eigenvalue.
    scale: float32 [dim] whitening factors.
  """

  mean: np.ndarray
  components: np.ndarray
  scale: np.ndarray

  @classmethod
  def fit(cls, background: np.ndarray, dim: int, eps: float = 1e-6) -> "PCAWhitening":
    """Fits on background descriptors [nb, d] (the population covariance, 1/nb)."""
    x = _as_matrix(background, "background").astype(np.float64)
    if not 1 <= dim <= x.shape[1]:
      raise ValueError(f"dim must be in [1, {x.shape[1]}], got {dim}")
    if len(x) < 2:
      raise ValueError(f"need at least 2 background vectors, got {len(x)}")
    mean = x.mean(axis=0)
    centred = x - mean
    eigvals, eigvecs = np.linalg.eigh(centred.T @ centred / len(x))
    top = np.argsort(eigvals)[::-1][:dim]
    eigvals = np.maximum(eigvals[top], 0.0)
    scale = 1.0 / np.sqrt(eigvals + eps * max(eigvals[0], np.finfo(np.float64).tiny))
    return cls(
        mean=mean.astype(np.float32),
        components=eigvecs[:, top].T.astype(np.float32),
        scale=scale.astype(np.float32),
    )

  @property
  def dim(self) -> int:
    return self.components.shape[0]

  def whiten(self, x: np.ndarray) -> np.ndarray:
    """Centred, projected and whitened float32 [n, dim], before the L2 normalisation."""
    x = np.asarray(x, np.float64)
    return (((x - self.mean) @ self.components.T.astype(np.float64)) * self.scale).astype(
        np.float32
    )

  def apply(self, x: np.ndarray) -> np.ndarray:
    """float32 [n, dim] unit vectors (a zero vector stays zero)."""
    w = self.whiten(x).astype(np.float64)
    norm = np.linalg.norm(w, axis=1, keepdims=True)
    return (w / np.where(norm > 0, norm, 1.0)).astype(np.float32)

  def to_dict(self) -> dict[str, np.ndarray]:
    return {"mean": self.mean, "components": self.components, "scale": self.scale}

  @classmethod
  def from_dict(cls, d: dict) -> "PCAWhitening":
    return cls(
        mean=np.asarray(d["mean"], np.float32),
        components=np.asarray(d["components"], np.float32),
        scale=np.asarray(d["scale"], np.float32),
    )
