"""Fused re-ranking (search similarity + comparator P(related)) and its calibration."""

from __future__ import annotations

import numpy as np
import pytest

from provjax.provenance import benchmark
from provjax.provenance.engine import Fusion


def _cand(id_, score, p_distinct):
  return {"id": id_, "score": score, "p_distinct": p_distinct}


def test_old_configs_keep_their_verdicts():
  fusion = Fusion.from_config({"distinct_threshold": 0.2})
  assert fusion.weight == 0.0
  p = np.array([0.05, 0.19, 0.21, 0.9])
  distinct = fusion.scores(np.zeros(4), p) < fusion.threshold
  np.testing.assert_array_equal(distinct, p >= 0.2)
  assert Fusion.from_config({"fusion_weight": 0.3, "fused_threshold": -2.0}) == Fusion(0.3, -2.0)


def test_weights_interpolate_between_comparator_and_search():
  sim, p = np.array([0.9, 0.5]), np.array([0.4, 0.1])
  assert np.argmax(Fusion(0.0).scores(sim, p)) == 1  # the comparator's choice
  assert np.argmax(Fusion(1.0).scores(sim, p)) == 0  # the search order
  np.testing.assert_allclose(Fusion(0.0).scores(sim, np.array([1.0, 0.0])), [np.log(1e-6), 0.0])


def test_calibration_keeps_a_correct_rank1_the_comparator_alone_loses():
  # The original (id 0) is the search's clear first; the comparator slightly
  # prefers a look-alike (id 1). Unrelated queries have low similarity and a
  # high P(distinct) everywhere.
  rng = np.random.default_rng(0)
  candidates, truth = [], []
  for _ in range(20):
    candidates.append([_cand(0, 0.95, rng.uniform(0.2, 0.3)), _cand(1, 0.6, rng.uniform(0.1, 0.2))])
    truth.append(0)
  for _ in range(10):
    candidates.append([_cand(5, 0.3, rng.uniform(0.9, 0.99)), _cand(6, 0.2, 0.995)])
    truth.append(None)
  chosen = benchmark.choose_fusion(candidates, truth)
  assert chosen["weight"] > 0.0
  assert chosen["recall_at_1"] == 1.0
  assert chosen["balanced_accuracy"] == 1.0
  fusion = Fusion(chosen["weight"], chosen["threshold"])
  for cands, t in zip(candidates, truth):
    fused = fusion.scores([c["score"] for c in cands], [c["p_distinct"] for c in cands])
    assert (fused.max() >= fusion.threshold) == (t is not None)
    if t is not None:
      assert cands[int(np.argmax(fused))]["id"] == t


def test_calibration_is_never_below_search_recall():
  rng = np.random.default_rng(1)
  candidates, truth = [], []
  for _ in range(50):
    # Random comparator probabilities: no use for ranking.
    cands = [_cand(i, s, rng.uniform()) for i, s in enumerate(np.sort(rng.uniform(size=5))[::-1])]
    candidates.append(cands)
    truth.append(int(rng.integers(0, 2)))
  search = np.mean([t == 0 for t in truth])
  assert benchmark.choose_fusion(candidates, truth)["recall_at_1"] >= search


def test_empty_slots_are_never_chosen():
  chosen = benchmark.choose_fusion([[_cand(-1, 0.99, 0.0), _cand(3, 0.5, 0.1)]], [3])
  assert chosen["recall_at_1"] == 1.0


@pytest.mark.parametrize("related, unrelated", [([0.0, -1.0], [-3.0, -5.0]), ([-1.0], [-1.0])])
def test_threshold_separates_when_it_can(related, unrelated):
  t, acc = benchmark._best_threshold(np.array(related), np.array(unrelated))
  expect = 1.0 if min(related) > max(unrelated) else 0.5
  assert acc == expect
  assert np.mean(np.array(related) >= t) >= 0.5


def test_the_default_operating_point_was_chosen_for_the_default_descriptor():
  """The fused score adds the search cosine: the default comparator's stored operating point
  must be the one chosen with the default descriptor."""
  from provjax import weights
  from provjax.provenance.cli import DEFAULT_COMPARATOR, DEFAULT_DESCRIPTOR

  stored = weights.read_config(DEFAULT_COMPARATOR)
  assert stored["calibrated_with"] == DEFAULT_DESCRIPTOR
  assert Fusion.from_config(stored) == Fusion(stored["fusion_weight"], stored["fused_threshold"])


@pytest.mark.parametrize("name", ["simprov_comparator.synth-v2-mix"])
def test_an_operating_point_released_again_keeps_the_weights(name):
  from provjax import weights

  stored = weights.read_config(name)
  source = weights.read_config(stored["weights_of"])
  assert (stored["arch"], stored["steps"]) == (source["arch"], source["steps"])
  same = weights.params_sha256(weights.load(name))
  assert same == weights.params_sha256(weights.load(stored["weights_of"]))
