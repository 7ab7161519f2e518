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


def scann_params(n: int) -> dict:
    """Chooses ScaNN parameters from the database size.

    * ``n < 20,000``: brute force (exact float32 scoring).
    * otherwise a tree with ``num_leaves ~ 2 sqrt(n)`` (capped at 20,000) so a leaf holds about
      ``sqrt(n) / 2`` points; searching a fixed *fraction* of the leaves would make query cost
      grow like ``n``, while a leaf count ~ sqrt(n) keeps tree + leaf scoring balanced.
      ``leaves_to_search`` is ~1% of the leaves (at least 8) and AH uses 2 dims per 4-bit
      block with anisotropic threshold 0.2; ``reorder`` candidates are re-scored exactly.

    The 1M-vector operating point (``num_leaves=2000``, ``leaves_to_search=20``,
    ``reorder=100``) was picked with ``provjax.eval.bench_retrieval`` to hold recall@10 >= 0.99.

    Args:
        n: number of database vectors.

    Returns:
        A dict of parameters for :func:`build_searcher`; ``{"mode": "brute_force"}`` or
        ``{"mode": "tree_ah", "num_leaves", "leaves_to_search", "training_sample_size",
        "dims_per_block", "anisotropic_threshold", "reorder"}``.
    """
    if n < BRUTE_FORCE_MAX:
        return {"mode": "brute_force"}
    num_leaves = int(min(20_000, max(100, round(2 * math.sqrt(n)))))
    return {
        "mode": "tree_ah",
        "num_leaves": num_leaves,
        "leaves_to_search": max(8, num_leaves // 100),
        # k-means needs a few dozen points per centroid to be stable, but training on the
        # whole of a large database only slows the build.
        "training_sample_size": int(min(n, max(250_000, 50 * num_leaves))),
        "dims_per_block": 2,
        "anisotropic_threshold": 0.2,
        "reorder": 100,
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
        builder = builder.tree(
            num_leaves=num_leaves,
            num_leaves_to_search=min(params["leaves_to_search"], num_leaves),
            training_sample_size=min(params["training_sample_size"], db.shape[0]),
        ).score_ah(
            params["dims_per_block"],
            anisotropic_quantization_threshold=params["anisotropic_threshold"],
        ).reorder(params["reorder"])
    searcher = builder.build()
    searcher.set_num_threads(threads)
    return searcher


def search(searcher, queries: np.ndarray, k: int, leaves_to_search: int | None = None,
           reorder: int | None = None) -> tuple[np.ndarray, np.ndarray]:
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
        queries, final_num_neighbors=k, pre_reorder_num_neighbors=pre,
        leaves_to_search=leaves_to_search)
    rows, dists = np.asarray(rows), np.asarray(dists)
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
