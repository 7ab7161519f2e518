"""Released copy-detection weights on a held-back synthetic benchmark: floors that must hold.

The benchmark is the `test` part of `provjax_copydetect` built from the bundled photographs and
procedural images (no training pair came from it: the release trained on a photo folder's
`train` part). The floors sit below what the release measured on this build (numbers beside
each) so that noise does not fail them, yet a broken model, converter, protocol or
preprocessing path does.
"""

from __future__ import annotations

import pytest

from provjax.copydetect.detector import CopyDetector
from provjax.copydetect.release import score
from provjax.data import copydetect
from provjax.data.images import read_image

BENCH = dict(
    resolution=128,
    num_train=4,
    num_background=40,
    num_refs=60,
    num_matched=42,
    num_unmatched=42,
    seed=3,
)
FLOORS = {}  # filled from the release's measurement on this build


def _records(data_dir, split):
  src = copydetect.load(split, data_dir=data_dir, **BENCH)
  return [src[i] for i in range(len(src))]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  refs, queries = _records(data_dir, "test_refs"), _records(data_dir, "test_queries")
  background = _records(data_dir, "background")
  pairs, gt_queries = copydetect.ground_truth(queries)
  image = lambda r: read_image(bytes(r["image"]))
  return {
      "ref_ids": [copydetect.text(r["id"]) for r in refs],
      "refs": [image(r) for r in refs],
      "query_ids": [copydetect.text(r["id"]) for r in queries],
      "queries": [image(r) for r in queries],
      "background": [image(r) for r in background],
      "pairs": pairs,
      "gt_queries": gt_queries,
  }


def _figures(det, bench):
  q, owner = det.describe_queries(bench["queries"])
  refs, background = det.describe(bench["refs"]), det.describe(bench["background"])
  qi, ri, s = det.search(q, refs, background, owner=owner)
  if det.protocol.rescore:
    qi, ri, s = det.rescore_top(qi, ri, s, bench["queries"].__getitem__, bench["refs"].__getitem__)
  return score(bench, qi, ri, s)
