"""provjax's default retrieval Index (ScaNN) beside the best-tuned FAISS IVF-PQ, in one run.

The PERFORMANCE.md recipe (1M x 256 clustered, 1,000 queries, inner product,
seed 0). FAISS is `IVF4000,PQ128x4fs,RFlat` (fast-scan PQ with an exact
re-rank), swept over nprobe {16, 32, 64} x k_factor_rf {10, 20, 40}; its
figure is the best QPS at recall@10 >= 0.99. Both get the same threads (all
cores). Exact search (JAX) is the ground truth. faiss-cpu is a benchmark-only
peer, never a dependency (`pip install faiss-cpu`):

    python scripts/bench_faiss.py                  # 1M
    python scripts/bench_faiss.py --n 100000       # a quick look
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from provjax.metrics.retrieval import recall_at_k
from provjax.provenance.bench_retrieval import clustered_data
from provjax.retrieval import exact
from provjax.retrieval.index import Index
from provjax.timing import median_seconds

K, TARGET = 10, 0.99


def _dir_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def provjax_row(db, queries, truth, repeats: int) -> dict:
  start = time.perf_counter()
  index = Index(db.shape[1])  # the default backend and parameters, as `index build` makes it
  index.add(np.arange(len(db)), db)
  index.search(queries[:1], K)  # builds the ScaNN searcher
  build_s = time.perf_counter() - start
  _, ids = index.search(queries, K)
  qps = len(queries) / median_seconds(lambda: index.search(queries, K), repeats)
  with tempfile.TemporaryDirectory() as tmp:
    index.save(tmp)
    saved = _dir_bytes(tmp) / len(db)
  return {
      "method": "provjax Index (ScaNN, default)",
      "qps": round(qps),
      "recall@10": round(recall_at_k(ids, truth, K), 4),
      "build_s": round(build_s, 1),
      "bytes/vector (saved index)": round(saved),
  }


def faiss_rows(db, queries, truth, repeats: int) -> list[dict]:
  import faiss  # pylint: disable=g-import-not-at-top

  faiss.omp_set_num_threads(os.cpu_count() or 1)
  start = time.perf_counter()
  index = faiss.index_factory(db.shape[1], "IVF4000,PQ128x4fs,RFlat", faiss.METRIC_INNER_PRODUCT)
  index.train(db)
  index.add(db)
  build_s = time.perf_counter() - start
  with tempfile.TemporaryDirectory() as tmp:
    faiss.write_index(index, os.path.join(tmp, "faiss.index"))
    saved = _dir_bytes(tmp) / len(db)
  ivf = faiss.extract_index_ivf(index)
  rows = []
  for nprobe in (16, 32, 64):
    for k_factor in (10, 20, 40):
      ivf.nprobe, index.k_factor = nprobe, k_factor
      _, ids = index.search(queries, K)
      qps = len(queries) / median_seconds(lambda: index.search(queries, K), repeats)
      rows.append(
          {
              "method": f"FAISS IVF4000,PQ128x4fs,RFlat nprobe {nprobe} k_factor {k_factor}",
              "qps": round(qps),
              "recall@10": round(recall_at_k(ids, truth, K), 4),
              "build_s": round(build_s, 1),
              "bytes/vector (saved index)": round(saved),
          }
      )
      print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
  return rows


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--n", type=int, default=1_000_000)
  p.add_argument("--queries", type=int, default=1000)
  p.add_argument("--repeats", type=int, default=5)
  args = p.parse_args()
  try:
    import faiss  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise SystemExit("needs faiss-cpu (a benchmark-only peer): pip install faiss-cpu") from None
  db, queries = clustered_data(args.n, 256, args.queries, seed=0)
  _, truth = exact.topk(exact.to_device(db), queries, K)
  ours = provjax_row(db, queries, truth, args.repeats)
  print(json.dumps(ours), file=sys.stderr, flush=True)
  theirs = faiss_rows(db, queries, truth, args.repeats)
  good = [r for r in theirs if r["recall@10"] >= TARGET]
  best = max(good, key=lambda r: r["qps"]) if good else None
  summary = {
      "n": args.n,
      "queries": args.queries,
      "cores": os.cpu_count(),
      "provjax": ours,
      "faiss best at recall@10 >= 0.99": best,
      "qps ratio (provjax / faiss)": round(ours["qps"] / best["qps"], 2) if best else None,
      "faiss sweep": theirs,
  }
  print(json.dumps(summary, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
