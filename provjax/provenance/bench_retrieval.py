"""Retrieval benchmark: ScaNN vs exact search on the PERFORMANCE.md data recipe.

The data set is the one every retrieval figure in ``PERFORMANCE.md`` is measured on, so numbers
from here compare with the peer anchors there:

* ``n`` database vectors of dimension ``d`` drawn from a mixture of 2,000 Gaussian clusters
  (centres ``N(0, I)``, points ``centre + 0.7 N(0, I)``), L2-normalised;
* ``n_queries`` queries, each a random database vector plus ``0.05 N(0, I)``, re-normalised;
* inner-product similarity, numpy seed 0.

``run()`` reports, for the exact JAX backend (the ground truth) and for ScaNN with the default
parameters of :func:`provjax.retrieval.scann_backend.scann_params` plus a small sweep around
them: build time, queries per second (median of repeated timings), recall@k against exact
search and bytes per vector of the serialized index.

Measured 2026-11 on the shared 2-core CPU machine (``python -m provjax.provenance.bench_retrieval``,
1M x 256, k = 10, 1,000 queries, medians of 5; other jobs shared the cores, so QPS is noisy at
about +-25 %)::

    method        leaves search reorder build_s    qps  recall@10  B/vec  x_exact
    exact-jax          -      -       -       -    188     1.0000   1024      1.0
    scann-default   4000     10      80   109.0  19456     0.9977   1164    103.5
    scann           4000      5      80   109.0  27933     0.9975   1164    148.7
    scann           4000     10      40   109.0  21483     0.9710   1164    114.3
    scann           4000     10     160   109.0  19946     1.0000   1164    106.2
    scann           4000     20      80   109.0  18796     0.9977   1164    100.0
    scann           4000     20     160   109.0  12605     1.0000   1164     67.1
    scann           2000      5      80    49.3  33425     0.9771   1160    177.9
    scann           2000      5     160    49.3  28088     0.9837   1160    149.5
    scann-peer      1000     50     100    31.9   7947     0.9394   1158     42.3

B/vec is ScaNN's serialized searcher (float32 copy for reordering + 4-bit AH codes + leaf
tokens); a saved ``Index`` adds its float32 vectors and int64 ids (about 2,196 B/vector in
all).
The peer anchor row is the PERFORMANCE.md ScaNN configuration run on the same data.

Usage::

    python -m provjax.provenance.bench_retrieval            # 1M x 256, with sweep
    python -m provjax.provenance.bench_retrieval --n 100000 --no-sweep
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time

import numpy as np

from provjax.metrics.retrieval import recall_at_k
from provjax.retrieval import exact, scann_backend
from provjax.timing import median_seconds

NUM_CLUSTERS = 2000


def _normalise(x: np.ndarray) -> np.ndarray:
  """L2-normalises rows in place (float32) and returns them."""
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  return x


def clustered_data(
    n: int, d: int, n_queries: int, seed: int = 0, num_clusters: int = NUM_CLUSTERS
) -> tuple[np.ndarray, np.ndarray]:
  """Generates the PERFORMANCE.md retrieval data set.

  Args:
      n: number of database vectors.
      d: dimension.
      n_queries: number of queries (random database vectors plus small noise).
      seed: numpy seed.
      num_clusters: number of Gaussian clusters (2,000 in the recipe).

  Returns:
      ``(database float32 [n, d], queries float32 [n_queries, d])``, rows L2-normalised.
  """
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((num_clusters, d), dtype=np.float32)
  assign = rng.integers(0, num_clusters, size=n)
  db = np.empty((n, d), np.float32)
  # Chunked so the float32 noise temporaries stay small at n = 1M.
  chunk = 100_000
  for start in range(0, n, chunk):
    stop = min(start + chunk, n)
    block = rng.standard_normal((stop - start, d), dtype=np.float32)
    block *= 0.7
    block += centres[assign[start:stop]]
    db[start:stop] = _normalise(block)
  picks = rng.choice(n, size=n_queries, replace=n_queries > n)
  queries = db[picks] + 0.05 * rng.standard_normal((n_queries, d), dtype=np.float32)
  return db, _normalise(queries.astype(np.float32))


def _dir_bytes(path: str) -> int:
  return sum(
      os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
  )


_COLUMNS = [
    "method",
    "leaves",
    "search",
    "reorder",
    "build_s",
    "qps",
    "recall@k",
    "B/vec",
    "index_B/v",
    "x_exact",
]


def _print_header() -> None:
  print(" | ".join(f"{c:>9}" for c in _COLUMNS), flush=True)


def _print_row(r: dict) -> None:
  vals = [
      r["method"],
      r.get("num_leaves", "-"),
      r.get("leaves_to_search", "-"),
      r.get("reorder", "-"),
      f"{r.get('build_s', 0.0):.1f}",
      f"{r['qps']:.0f}",
      f"{r['recall']:.4f}",
      r.get("bytes_per_vector", "-"),
      r.get("index_bytes_per_vector", "-"),
      f"{r['speedup_vs_exact']:.1f}",
  ]
  print(" | ".join(f"{str(v):>9}" for v in vals), flush=True)


def _measure_build(
    db,
    queries,
    true_ids,
    k,
    params,
    threads,
    repeats,
    exact_qps,
    overrides: list[tuple[int | None, int | None]],
    label: str = "scann",
) -> list[dict]:
  """Builds one searcher, sizes its artefacts and times it at each (leaves, reorder).

  The "scann-default" searcher is the project's default (`scann_backend.build_default`:
  leaves_to_search calibrated on the database, which its build time includes); its
  (None, None) row searches at the calibrated value, the other rows at their overrides.
  """
  n = db.shape[0]
  t0 = time.perf_counter()
  if label == "scann-default":
    searcher, params = scann_backend.build_default(db, k, threads=threads)
  else:
    searcher = scann_backend.build_searcher(db, k, params, threads=threads)
  build_s = time.perf_counter() - t0
  with tempfile.TemporaryDirectory() as tmp:
    scann_backend.save(searcher, tmp)
    scann_bytes = _dir_bytes(tmp) / n
  rows = []
  for leaves, reorder in overrides:

    def search():
      return scann_backend.search(
          searcher,
          queries,
          k,
          leaves_to_search=leaves or params.get("leaves_to_search"),
          reorder=reorder or params.get("reorder"),
      )

    _, ids = search()
    qps = queries.shape[0] / median_seconds(search, repeats)
    rows.append(
        row := dict(
            method=label if leaves is None and reorder is None else "scann",
            qps=qps,
            recall=recall_at_k(ids, true_ids, k),
            speedup_vs_exact=qps / exact_qps,
            build_s=build_s,
            bytes_per_vector=round(scann_bytes, 1),
            # An Index also keeps its float32 vectors (the source of truth) and int64 ids.
            index_bytes_per_vector=round(scann_bytes + 4 * db.shape[1] + 8, 1),
            num_leaves=params.get("num_leaves", "-"),
            leaves_to_search=leaves or params.get("leaves_to_search", "-"),
            reorder=reorder or params.get("reorder", "-"),
        )
    )
    _print_row(row)
  return rows


def run(
    n: int = 1_000_000,
    d: int = 256,
    k: int = 10,
    sweep: bool = True,
    n_queries: int = 1000,
    repeats: int = 5,
    threads: int | None = None,
) -> list[dict]:
  """Runs the retrieval benchmark and prints a table.

  Args:
      n: database size.
      d: dimension.
      k: neighbours per query (recall@k is reported).
      sweep: also time (leaves_to_search, reorder) settings around the defaults (search-time
          overrides on the default searcher), a searcher with half the default number of
          leaves, and the PERFORMANCE.md peer configuration on the same data.
      n_queries: number of queries.
      repeats: timed repetitions per setting (the median is reported).
      threads: ScaNN build and search threads (default: all cores).

  Returns:
      One dict per measured configuration (``method``, ``qps``, ``recall``,
      ``speedup_vs_exact`` and, for ScaNN, ``build_s``, ``bytes_per_vector`` (ScaNN's
      serialized artefacts), ``index_bytes_per_vector`` and the parameters).
  """
  t0 = time.perf_counter()
  db, queries = clustered_data(n, d, n_queries)
  print(f"data: {n} x {d}, {n_queries} queries ({time.perf_counter() - t0:.1f} s)", flush=True)

  # Exact JAX search is the ground truth and the speed baseline.
  db_dev = exact.to_device(db)
  _, true_ids = exact.topk(db_dev, queries, k)
  exact_s = median_seconds(lambda: exact.topk(db_dev, queries, k), max(1, repeats // 2))
  exact_qps = n_queries / exact_s
  rows = [
      dict(
          method="exact-jax",
          qps=exact_qps,
          recall=1.0,
          speedup_vs_exact=1.0,
          bytes_per_vector=4 * d,
      )
  ]
  del db_dev
  _print_header()
  _print_row(rows[0])

  params = scann_backend.scann_params(n)
  measure = functools.partial(
      _measure_build,
      db,
      queries,
      true_ids,
      k,
      threads=threads,
      repeats=repeats,
      exact_qps=exact_qps,
  )
  sweep = sweep and params["mode"] == "tree_ah"
  grid = []
  if sweep:  # search-time overrides on the default searcher: no rebuild needed
    base_l, base_r = params["leaves_to_search"], params["reorder"]
    grid = sorted(
        {
            (max(1, base_l // 2), base_r),
            (base_l, max(k, base_r // 2)),
            (2 * base_l, base_r),
            (base_l, 2 * base_r),
            (2 * base_l, 2 * base_r),
        }
    )
  rows += measure(params, overrides=[(None, None)] + grid, label="scann-default")
  if sweep:
    # Half the leaves (the same fraction searched), then the peer anchor of PERFORMANCE.md
    # (tree 1000 leaves / 50 searched, AH(2, 0.2), reorder 100) on this data.
    half = dict(
        params,
        num_leaves=params["num_leaves"] // 2,
        leaves_to_search=max(1, base_l // 2),
        training_sample_size=params["training_sample_size"] // 2,
    )
    rows += measure(half, overrides=[(None, None), (None, 2 * base_r)])
    peer = dict(
        params,
        num_leaves=1000,
        leaves_to_search=50,
        reorder=100,
        training_sample_size=min(n, 100_000),
    )
    rows += measure(peer, overrides=[(None, None)], label="scann-peer")
  return rows


def main(argv: list[str] | None = None) -> None:
  """Command-line entry point (``python -m provjax.provenance.bench_retrieval``)."""
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--n", type=int, default=1_000_000)
  p.add_argument("--d", type=int, default=256)
  p.add_argument("--k", type=int, default=10)
  p.add_argument("--queries", type=int, default=1000)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--threads", type=int, default=None)
  p.add_argument("--no-sweep", action="store_true")
  a = p.parse_args(argv)
  run(
      n=a.n,
      d=a.d,
      k=a.k,
      sweep=not a.no_sweep,
      n_queries=a.queries,
      repeats=a.repeats,
      threads=a.threads,
  )


if __name__ == "__main__":
  main()
