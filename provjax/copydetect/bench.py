"""Copy detection's section of `provjax bench` (printed, not asserted).

  copydetect  descriptors/s of the jitted descriptor forward for copynce.tiny
              (64 px) and copynce.vits16 (ViT-S/16, 224 px), fresh weights (speed
              does not depend on them), batch 64; and kNN throughput (queries/s,
              k = 10) over 1M random unit references of 256 dims, exact (JAX
              matmul top-k, blocked) and ScaNN (the retrieval package's
              defaults for 1M rows), with the setup time (compile / index
              build) and the share of queries (noisy copies of one reference
              each) whose copy is ranked first.

`SECTIONS` maps each name to (title, fn); `fn(quick, peak)` returns table rows.
"""

from __future__ import annotations

import time

import numpy as np

from provjax.timing import median_seconds


def _descriptor_rows(quick: bool, repeats: int) -> list[dict]:
  import jax  # pylint: disable=g-import-not-at-top
  import provjax  # pylint: disable=g-import-not-at-top
  from provjax.tasks import copy_data  # pylint: disable=g-import-not-at-top

  rows = []
  for variant, size in (("tiny", 64), ("vits16", 224)):
    model = provjax.create_model(f"copynce.{variant}")
    model.eval()
    batch = 16 if quick and variant == "vits16" else 64
    images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    run = lambda: jax.block_until_ready(copy_data.embed(model, images, batch))
    run()  # compile
    sec = median_seconds(run, repeats=repeats)
    rows.append(
        {
            "what": f"copynce.{variant} descriptor",
            "input": f"{size}x{size}",
            "batch": batch,
            "per second": batch / sec,
            "ms/batch": 1e3 * sec,
        }
    )
  return rows


def _knn_rows(quick: bool, repeats: int) -> list[dict]:
  from provjax.retrieval import exact, scann_backend  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  n, d, nq, k = (100_000 if quick else 1_000_000), 256, 1000, 10
  refs = rng.standard_normal((n, d), dtype=np.float32)
  refs /= np.linalg.norm(refs, axis=1, keepdims=True)
  planted = rng.choice(n, nq, replace=False)  # each query is a noisy copy of one reference
  queries = refs[planted] + 0.05 * rng.standard_normal((nq, d))
  queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
  db = exact.to_device(refs)
  start = time.perf_counter()
  exact.topk(db, queries[:8], k)  # compile
  setup = {"exact": time.perf_counter() - start}
  start = time.perf_counter()
  searcher, params = scann_backend.build_default(refs, k)
  setup["scann"] = time.perf_counter() - start
  runs = {
      "exact": lambda: exact.topk(db, queries, k),
      "scann": lambda: scann_backend.search_with(searcher, params, queries, k),
  }
  rows = []
  for backend, run in runs.items():
    sec = median_seconds(run, repeats=repeats)
    _, found = run()
    found_copy = np.mean(found[:, 0] == planted)
    rows.append(
        {
            "what": f"kNN k={k}, {backend}",
            "input": f"{n:,} x {d} refs",
            "batch": nq,
            "per second": nq / sec,
            "ms/batch": 1e3 * sec,
            "setup s": setup[backend],
            "copy ranked 1st": found_copy,
        }
    )
  return rows


def bench_copydetect(quick: bool, peak: float) -> list[dict]:
  del peak  # throughput, not a fraction of the matmul ceiling
  repeats = 2 if quick else 5
  return _descriptor_rows(quick, repeats) + _knn_rows(quick, repeats)


SECTIONS = {"copydetect": ("Copy detection (descriptor forward, kNN)", bench_copydetect)}
