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
# name -> (µAP floor, R@1 floor); measured on this build (2026-12-01) beside each.
FLOORS = {
    "copynce.synth-v1": (0.30, 0.40),  # µAP 0.404, R@1 0.524 (protocol: CopyNCE score norm)
    "sscd.synth-v1": (0.28, 0.35),  # µAP 0.383, R@1 0.452
}
# A random descriptor ranks the true reference among 60 at random: µAP and R@1 near 0.02.


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


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_released_descriptor_finds_copies(bench, name):
  det = CopyDetector.load(name)
  figures = _figures(det, bench)
  ap_floor, r1_floor = FLOORS[name]
  assert figures["micro_ap"] >= ap_floor, figures
  assert figures["recall_at_rank1"] >= r1_floor, figures


def test_released_protocol_is_the_one_chosen_on_val():
  det = CopyDetector.load("copynce.synth-v1")
  # The release chose CopyNCE's score normalisation on val and no matcher re-scoring (the
  # released matcher lowered val µAP; see its card).
  assert (det.protocol.score_norm, det.protocol.rescore, det.matcher) == ("copynce", 0, None)
