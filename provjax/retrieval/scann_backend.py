"""ScaNN searcher construction, parameter choice, search and (de)serialisation.

ScaNN (``scann.scann_ops_pybind``, no TensorFlow) does approximate maximum-inner-product search
in three stages: a k-means *tree* picks the ``leaves_to_search`` partitions nearest the query,
*asymmetric hashing* (4-bit product quantisation, anisotropic loss) scores every point in them
cheaply, and the best ``reorder`` candidates are *re-scored exactly* in float32. Recall and
speed are traded through those three numbers, so :func:`scann_params` chooses them from the
database size.

Searchers are immutable once built; :class:`provjax.retrieval.index.Index` keeps the float32
vectors as the source of truth and rebuilds the searcher when the database changes.
"""

from __future__ import annotations

import math
import os

import numpy as np
from scann import scann_ops_pybind

# Below this many vectors a tree costs more than it saves: brute force over a few thousand
# float32 rows takes microseconds and is exact.
BRUTE_FORCE_MAX = 20_000
# AH-scored points per query that the default leaves_to_search starts from.
POINTS_SCANNED = 1_250
# `calibrate_leaves`: the recall@10 a default searcher must reach on probes among its rows, and
# how many probes.
TARGET_RECALL = 0.99
CALIBRATION_PROBES = 256
_CALIBRATION_K = 10
# The most AH candidates calibration lets a default searcher re-score exactly per query.
MAX_REORDER = 640


def scann_params(n: int) -> dict:
  """Chooses ScaNN parameters from the database size.

  * ``n < 20,000``: brute force (exact float32 scoring); a tree does not pay off.
  * otherwise tree + asymmetric hashing (AH) + exact float32 reordering:

    - ``num_leaves = 4 sqrt(n)``, at most ``n / 250`` and at most 20,000. A leaf count ~ sqrt(n)
      balances scoring the centroids against scanning leaves. Small leaves also help AH: it
      quantises each point's *residual* from its leaf centre, and smaller residuals quantise
      more accurately, so fewer candidates need re-scoring. At 1M, 4,000 leaves reached
      recall@10 0.9999 where 2,000 leaves plateaued at 0.996 and 1,000 leaves at 0.94 with the
      same reorder budget. Leaves much smaller than the neighbourhoods that queries look into
      scatter each neighbourhood over many of them: at 100,000 vectors 1,000 leaves (100 points
      each) reached recall@10 0.970 with 100 searched, where 400 leaves (250 each) reached
      0.993 with 20 searched at 1.7x the queries per second; hence the 250 points per leaf.
    - ``leaves_to_search``: enough leaves to AH-score about 1,250 points per query
      (``1250 * num_leaves / n``, at least 4): 5 of 4,000 at 1M. This is where
      :func:`calibrate_leaves` starts: how many leaves a query needs depends on how the data
      fall into them, so :func:`build_default` measures it on the database itself;
    - k-means trained on ``100 * num_leaves`` sampled points (at least 100k, at most n).
      Fewer is false economy: at 1M with 4,000 leaves a 40-per-leaf sample made recall@10
      collapse to 0.71 at any search setting (likely because partitions under ScaNN's minimum
      size of 50 sampled points get degenerate centres);
    - spherical k-means (unit-length centres): a query picks leaves by the angle to their
      centres, not by a dot product that favours the centres that happen to be longer. At
      100,000 vectors with 400 leaves, 8 leaves searched reached recall@10 0.998 against 0.969
      with plain k-means; at 1M the two were within 0.001;
    - AH with 2 dimensions per 4-bit block and anisotropic threshold 0.2;
    - the best ``reorder = 80`` AH candidates re-scored exactly.

  On the PERFORMANCE.md recipe (``provjax.provenance.bench_retrieval``, 2 cores) the calibrated
  defaults search 5 of 4,000 leaves at 1M (recall@10 0.996, ~22k queries/s) and 5 of 400 at
  100,000 (0.995, ~56k queries/s).

  Args:
      n: number of database vectors.

  Returns:
      A dict of parameters for :func:`build_searcher`; ``{"mode": "brute_force"}`` or
      ``{"mode": "tree_ah", "num_leaves", "leaves_to_search", "training_sample_size",
      "spherical", "dims_per_block", "anisotropic_threshold", "reorder"}`` (parameters saved
      without "spherical" build plain k-means, as they were built).
  """
  if n < BRUTE_FORCE_MAX:
    return {"mode": "brute_force"}
  num_leaves = int(max(100, min(20_000, n // 250, round(4 * math.sqrt(n)))))
  return {
      "mode": "tree_ah",
      "num_leaves": num_leaves,
      "leaves_to_search": max(4, math.ceil(POINTS_SCANNED * num_leaves / n)),
      # ~100 sampled points per centre keeps every partition above ScaNN's minimum size;
      # training on the whole of a large database would only slow the build.
      "training_sample_size": int(min(n, max(100_000, 100 * num_leaves))),
      "spherical": True,
      "dims_per_block": 2,
      "anisotropic_threshold": 0.2,
      "reorder": 80,
  }


def build_searcher(db: np.ndarray, k: int, params: dict, threads: int | None = None):
  """Builds a ScaNN searcher for inner-product search.

  Args:
      db: float32 ``[N, d]`` database (``N >= 1``).
      k: default number of neighbours.
      params: output of :func:`scann_params` (possibly edited).
      threads: training and search threads (default: all cores).

  Returns:
      A ``scann_ops_pybind.ScannSearcher``.
  """
  db = np.ascontiguousarray(db, dtype=np.float32)
  threads = threads or os.cpu_count() or 1
  builder = scann_ops_pybind.builder(db, k, "dot_product").set_n_training_threads(threads)
  if params["mode"] == "brute_force":
    builder = builder.score_brute_force()
  else:
    num_leaves = min(params["num_leaves"], db.shape[0])
    builder = (
        builder.tree(
            num_leaves=num_leaves,
            num_leaves_to_search=min(params["leaves_to_search"], num_leaves),
            training_sample_size=min(params["training_sample_size"], db.shape[0]),
            spherical=params.get("spherical", False),
        )
        .score_ah(
            params["dims_per_block"],
            anisotropic_quantization_threshold=params["anisotropic_threshold"],
        )
        .reorder(params["reorder"])
    )
  searcher = builder.build()
  searcher.set_num_threads(threads)
  return searcher


def _exact_neighbours(
    db: np.ndarray, queries: np.ndarray, k: int, own: np.ndarray | None = None, chunk: int = 65_536
):
  """The k nearest rows of each query by inner product, [P, k]; `own[i]`, when given, is a row
  that query i must not count (its own row).

  The database is scored a chunk of rows at a time, so memory stays at P x chunk.
  """
  queries = np.ascontiguousarray(queries, np.float32)
  best_sims, best_ids = [], []
  for start in range(0, db.shape[0], chunk):
    sims = queries @ db[start : start + chunk].T
    if own is not None:
      inside = (own >= start) & (own < start + sims.shape[1])
      sims[inside, own[inside] - start] = -np.inf
    top = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, : k + 1]
    best_sims.append(np.take_along_axis(sims, top, axis=1))
    best_ids.append(top + start)
  sims, ids = np.concatenate(best_sims, axis=1), np.concatenate(best_ids, axis=1)
  order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
  return np.take_along_axis(ids, order, axis=1)


def calibration_probes(db: np.ndarray, probes: int, seed: int, k: int = _CALIBRATION_K):
  """`probes` points among the stored rows, and their k nearest rows exactly: ([P, d], [P, k]).

  A real query is never a stored row: it lies among rows, with neighbours on every side. So
  each probe is a random row moved, in a random direction, as far as that row's k-th nearest
  other row lies. Stored rows themselves overstate recall: on the PERFORMANCE.md recipe at
  100,000 vectors (400 leaves), 10 leaves searched find the rows' own neighbours at recall@10
  1.0 but the recipe's queries at 0.978; these probes give 0.984 there, and 0.992 against the
  queries' 0.993 at 20 leaves.
  """
  rng = np.random.default_rng(seed)
  rows = np.sort(rng.choice(db.shape[0], min(probes, db.shape[0] - 1), replace=False))
  kth = db[_exact_neighbours(db, db[rows], k, own=rows)[:, -1]]
  direction = rng.standard_normal(kth.shape).astype(np.float32)
  direction /= np.linalg.norm(direction, axis=1, keepdims=True)
  points = db[rows] + np.linalg.norm(db[rows] - kth, axis=1, keepdims=True) * direction
  return points, _exact_neighbours(db, points, k)


def calibrate_leaves(
    searcher,
    db: np.ndarray,
    params: dict,
    *,
    target: float = TARGET_RECALL,
    probes: int = CALIBRATION_PROBES,
    seed: int = 0,
) -> dict:
  """`params` with the fewest leaves_to_search (from its own up) that reach `target`.

  Recall@10 is measured on :func:`calibration_probes` (points among the stored rows, drawn
  with `seed`, and their exact 10 nearest rows). Leaves searched grow by half each time up to
  every leaf; if every leaf is not enough (few dimensions quantise coarsely), the exactly
  re-scored candidates double up to MAX_REORDER. The chosen values and the recall reached are
  kept (``"calibration"``).

  Args:
      searcher: a tree searcher built from `db` with `params`.
      db: its float32 database [N, d].
      params: a ``"tree_ah"`` parameter dict (:func:`scann_params`).
      target: the recall@10 to reach.
      probes: how many probes (at most N - 1).
      seed: which rows they start from, and their directions.

  Returns:
      A copy of `params` with ``leaves_to_search``, ``reorder`` and ``calibration`` set.
  """
  k = _CALIBRATION_K
  points, truth = calibration_probes(db, probes, seed, k)
  leaves, top, reorder = params["leaves_to_search"], params["num_leaves"], params["reorder"]
  while True:
    _, found = search(searcher, points, k, leaves_to_search=leaves, reorder=reorder)
    recall = float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth)]))
    if recall >= target:
      break
    if leaves < top:
      leaves = min(top, math.ceil(leaves * 1.5))
    elif reorder < MAX_REORDER:  # every leaf searched: what is left is AH's ranking
      reorder = min(MAX_REORDER, reorder * 2)
    else:
      break
  calibration = {"probes": len(points), "target": target, "recall_at_10": round(recall, 4)}
  return {**params, "leaves_to_search": leaves, "reorder": reorder, "calibration": calibration}


def build_default(db: np.ndarray, k: int, threads: int | None = None):
  """The searcher the project uses when nobody fixes parameters: :func:`scann_params`,
  with leaves_to_search calibrated on `db` (tree mode). Returns (searcher, params)."""
  params = scann_params(db.shape[0])
  searcher = build_searcher(db, k, params, threads)
  if params["mode"] == "tree_ah":
    params = calibrate_leaves(searcher, db, params)
  return searcher, params


def search_with(searcher, params: dict, queries: np.ndarray, k: int):
  """:func:`search` at the leaves and re-scoring that `params` hold (re-scoring at least k:
  ScaNN cannot return more neighbours than it re-scores)."""
  if params["mode"] != "tree_ah":
    return search(searcher, queries, k)
  reorder = max(k, params["reorder"])
  return search(searcher, queries, k, leaves_to_search=params["leaves_to_search"], reorder=reorder)


def search(
    searcher,
    queries: np.ndarray,
    k: int,
    leaves_to_search: int | None = None,
    reorder: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Searches a batch of queries.

  Args:
      searcher: a ScaNN searcher from :func:`build_searcher` or :func:`load`.
      queries: float ``[Q, d]``.
      k: neighbours per query.
      leaves_to_search: override the built-in number of leaves searched (tree only).
      reorder: override the number of candidates re-scored exactly (tree only).

  Returns:
      ``(scores float32 [Q, k], row indices int64 [Q, k])``, best first, padded with
      ``-inf`` / ``-1`` when fewer than ``k`` neighbours exist.
  """
  queries = np.ascontiguousarray(queries, dtype=np.float32)
  q = queries.shape[0]
  scores = np.full((q, k), -np.inf, np.float32)
  idx = np.full((q, k), -1, np.int64)
  if q == 0:
    return scores, idx
  pre = None if reorder is None else max(reorder, k)
  rows, dists = searcher.search_batched_parallel(
      queries,
      final_num_neighbors=k,
      pre_reorder_num_neighbors=pre,
      leaves_to_search=leaves_to_search,
  )
  rows, dists = np.asarray(rows).astype(np.int64), np.asarray(dists)  # ScaNN gives uint32
  if rows.ndim == 2 and rows.shape[1]:
    m = min(k, rows.shape[1])
    # ScaNN fills the slots it has no neighbour for with NaN scores (and row 0).
    found = ~np.isnan(dists[:, :m])
    idx[:, :m] = np.where(found, rows[:, :m], -1)
    scores[:, :m] = np.where(found, dists[:, :m], -np.inf)
  return scores, idx


def save(searcher, directory: str) -> None:
  """Serialises a searcher into ``directory`` (created if needed) with relative paths, so
  the directory can be moved or renamed (the index saves atomically by renaming)."""
  os.makedirs(directory, exist_ok=True)
  searcher.serialize(directory, relative_path=True)


def load(directory: str):
  """Loads a searcher written by :func:`save`."""
  return scann_ops_pybind.load_searcher(directory)
