"""Tests for provjax.copydetect.protocols (ISC search protocols) and isc_io (file formats)."""

import os

import h5py
import numpy as np
import pytest

from provjax.copydetect import isc_io, protocols
from provjax.metrics.retrieval import recall_at_k


def _scores(q, r, metric):
  q, r = q.astype(np.float64), r.astype(np.float64)
  if metric == "ip":
    return q @ r.T
  return -((q[:, None] - r[None]) ** 2).sum(-1)


def _brute_global(scores, budget):
  """All (q, r) pairs sorted by score desc, then q, then r; the first `budget`."""
  nq, nr = scores.shape
  q, r = np.divmod(np.arange(nq * nr), nr)
  order = np.lexsort((r, q, -scores.ravel()))[:budget]
  return set(zip(q[order].tolist(), r[order].tolist()))


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_knn_equals_brute_force(metric):
  rng = np.random.default_rng(0)
  q = rng.standard_normal((9, 6)).astype(np.float32)
  r = rng.standard_normal((50, 6)).astype(np.float32) * 2  # L2 on vectors of any norm
  s = _scores(q, r, metric)
  qi, ri, sc = protocols.knn(q, r, 5, metric=metric)
  np.testing.assert_array_equal(qi, np.repeat(np.arange(9), 5))
  expected = np.argsort(-s, axis=1)[:, :5]
  np.testing.assert_array_equal(ri.reshape(9, 5), expected)
  np.testing.assert_allclose(sc.reshape(9, 5), np.take_along_axis(s, expected, 1), atol=1e-4)
  assert sc.dtype == np.float32 and qi.dtype == ri.dtype == np.int64
  # k above nr is capped.
  assert len(protocols.knn(q, r[:3], 5, metric=metric)[0]) == 9 * 3


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("budget", [1, 45, 449, 1000])
def test_global_budget_equals_brute_force(metric, budget):
  rng = np.random.default_rng(budget)
  q = rng.standard_normal((9, 4)).astype(np.float32)
  r = rng.standard_normal((50, 4)).astype(np.float32)
  qi, ri, sc = protocols.global_budget(q, r, budget, metric=metric)
  s = _scores(q, r, metric)
  assert len(qi) == min(budget, 450)
  assert set(zip(qi.tolist(), ri.tolist())) == _brute_global(s, budget)
  np.testing.assert_allclose(sc, s[qi, ri], atol=1e-4)


def test_global_budget_one_query_owns_most_winners_and_ties():
  rng = np.random.default_rng(1)
  # Small integer vectors: scores are exact integers with many ties at the cut.
  q = rng.integers(-2, 3, (6, 3)).astype(np.float32)
  q[2] *= 8  # query 2's inner products dwarf the others'
  r = rng.integers(-2, 3, (200, 3)).astype(np.float32)
  s = _scores(q, r, "ip")
  qi, ri, _ = protocols.global_budget(q, r, 60, metric="ip")  # default K0 = 10
  assert np.bincount(qi, minlength=6)[2] > 40
  assert set(zip(qi.tolist(), ri.tolist())) == _brute_global(s, 60)
  for metric in ("ip", "l2"):
    qi, ri, _ = protocols.global_budget(q, r, None, metric=metric)  # default nq * 10
    assert set(zip(qi.tolist(), ri.tolist())) == _brute_global(_scores(q, r, metric), 60)


def test_knn_scann_recall():
  rng = np.random.default_rng(0)
  r = rng.standard_normal((3000, 16)).astype(np.float32)
  r /= np.linalg.norm(r, axis=1, keepdims=True)
  q = r[:40] + 0.3 * rng.standard_normal((40, 16)).astype(np.float32)
  params = {
      "mode": "tree_ah",
      "num_leaves": 30,
      "leaves_to_search": 10,
      "training_sample_size": 3000,
      "dims_per_block": 2,
      "anisotropic_threshold": 0.2,
      "reorder": 80,
  }
  _, exact_r, _ = protocols.knn(q, r, 10)
  _, scann_r, _ = protocols.knn(q, r, 10, backend="scann", scann_params=params)
  assert recall_at_k(scann_r.reshape(40, 10), exact_r.reshape(40, 10), 10) >= 0.9


def _sn_case():
  """One query [1, 0]; background cosines c = q.t listed below (shuffled)."""
  cos = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1])
  cos = np.random.default_rng(0).permutation(cos)
  background = np.stack([cos, np.sqrt(1 - cos**2)], 1).astype(np.float32)
  return np.array([[1.0, 0.0]], np.float32), background


@pytest.mark.parametrize(
    "variant,params,expected",
    [
        ("isc2021", {}, 2 * 0.1),  # beta 2 x the 10th neighbour (1-based)
        ("isc2021", {"n": 1, "beta": 1.0}, 0.95),
        ("sscd", {}, (0.95 + 0.9 + 0.8) / 3),  # mean of neighbours 0..2 inclusive
        ("sscd", {"beta": 0.5, "first": 1, "last": 1}, 0.5 * 0.9),
        ("copynce", {}, (0.9 + 0.8 + 0.7 + 0.6) / 4),  # sorted indices [1, 5)
    ],
)
def test_score_normalization_bias_by_hand(variant, params, expected):
  q, background = _sn_case()
  bias = protocols.score_normalization_bias(q, background, variant, **params)
  np.testing.assert_allclose(bias, [expected], atol=1e-6)


def test_score_normalization_errors():
  q, background = _sn_case()
  with pytest.raises(ValueError, match="13 background"):
    protocols.score_normalization_bias(q, background, "isc2021", n=13)
  with pytest.raises(ValueError, match="takes"):
    protocols.score_normalization_bias(q, background, "sscd", n=3)


def test_normalized_search_reorders_across_queries():
  # Query 0 sits in a dense background region (high bias), query 1 in an empty one.
  q = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  background = np.array([[1.0, 0.0]] * 4 + [[-1.0, 0.0]] * 4, np.float32)
  refs = np.array([[0.8, 0.6], [0.6, 0.8], [-0.8, -0.6]], np.float32)
  # sscd bias (beta 1, top-3 mean): query 0 -> 1.0, query 1 -> 0.0.
  qi, ri, sc = protocols.normalized_knn(q, refs, background, 2, "sscd")
  np.testing.assert_array_equal(qi, [0, 0, 1, 1])
  np.testing.assert_array_equal(ri, [0, 1, 1, 0])
  np.testing.assert_allclose(sc, [0.8 - 1, 0.6 - 1, 0.8, 0.6], atol=1e-6)
  # Globally the two best are both query 1's, though query 0's raw 0.8 ties query 1's.
  qi, ri, sc = protocols.normalized_global(q, refs, background, 2, "sscd")
  np.testing.assert_array_equal(qi, [1, 1])
  np.testing.assert_array_equal(ri, [1, 0])
  np.testing.assert_allclose(sc, [0.8, 0.6], atol=1e-6)
  _, _, raw = protocols.global_budget(q, refs, 2, metric="ip")
  np.testing.assert_allclose(raw, [0.8, 0.8], atol=1e-6)


def test_pca_whitening():
  rng = np.random.default_rng(0)
  mix = rng.standard_normal((12, 12)) * np.logspace(0, -2, 12)  # anisotropic
  bg = (rng.standard_normal((2000, 12)) @ mix.T + 3.0).astype(np.float32)
  pcaw = protocols.PCAWhitening.fit(bg, 6)
  w = pcaw.whiten(bg).astype(np.float64)
  np.testing.assert_allclose(w.mean(0), 0, atol=1e-4)
  np.testing.assert_allclose(np.cov(w, rowvar=False, bias=True), np.eye(6), atol=1e-3)
  out = pcaw.apply(bg)
  assert out.shape == (2000, 6) and out.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
  again = protocols.PCAWhitening.from_dict({k: v.copy() for k, v in pcaw.to_dict().items()})
  np.testing.assert_array_equal(again.apply(bg[:5]), out[:5])
  with pytest.raises(ValueError, match="dim"):
    protocols.PCAWhitening.fit(bg, 13)


# ----------------------------------------------------------------------------- isc_io ---


def test_csv_round_trip_and_evaluate_files(tmp_path):
  gt = tmp_path / "gt.csv"
  gt.write_text("query_id,reference_id\nQ1,R1\nQ2,\nQ3,R3\n")
  pairs, queries = isc_io.read_ground_truth(gt)
  assert pairs == [("Q1", "R1"), ("Q3", "R3")]
  assert queries == ["Q1", "Q2", "Q3"]
  preds = [("Q1", "R1", 0.30000001192092896), ("Q2", "R7", 0.3), ("Q9", "R3", 1.0)]
  path = tmp_path / "preds.csv"
  isc_io.write_predictions(path, preds)
  assert isc_io.read_predictions(path) == preds  # scores round-trip exactly
  assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []
  m = isc_io.evaluate_files(gt, path)
  # Q9 is not in the GT file; Q2 (non-matching) counts: T(.30000001) F(.3) -> AP 0.5 * 1.
  assert m["num_predictions"] == 2
  assert m["micro_ap"] == pytest.approx(0.5)
  with pytest.raises(ValueError, match="too many"):
    isc_io.evaluate_files(gt, path, max_results=2)


@pytest.mark.parametrize(
    "name,text,line",
    [
        ("preds.csv", "query_id,reference_id,score\nQ1,R1,0.5\nQ2,R2,abc\n", 3),
        ("preds.csv", "query_id,reference_id,score\nQ1,R1\n", 2),
        ("preds.csv", "query,ref,score\nQ1,R1,0.5\n", 1),
        ("preds.csv", "query_id,reference_id,score\nQ1,R1,0.5\n\nQ2,,0.1\n", 4),
        ("gt.csv", "query_id,reference_id\nQ1,R1\nQ1,R1,R2\n", 3),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path, name, text, line):
  path = tmp_path / name
  path.write_text(text)
  read = isc_io.read_ground_truth if name == "gt.csv" else isc_io.read_predictions
  with pytest.raises(ValueError, match=f"{name}:{line}:"):
    read(path)


def test_failed_prediction_write_keeps_the_old_file(tmp_path):
  path = tmp_path / "preds.csv"
  isc_io.write_predictions(path, [("Q1", "R1", 0.5)])

  def rows():
    yield ("Q1", "R2", 0.25)
    raise RuntimeError("interrupted")

  with pytest.raises(RuntimeError):
    isc_io.write_predictions(path, rows())
  assert isc_io.read_predictions(path) == [("Q1", "R1", 0.5)]
  assert os.listdir(tmp_path) == ["preds.csv"]


def test_hdf5_round_trip_and_atomic_write(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  names = ["R000000", "R000001", "Rü-2"]
  vecs = rng.standard_normal((3, 8))
  path = tmp_path / "refs.h5"
  isc_io.write_descriptors(path, names, vecs)
  got_names, got = isc_io.read_descriptors(path)
  assert got_names == names
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, vecs.astype(np.float32))
  with h5py.File(path, "r") as f:
    assert f["vectors"].dtype == np.float32 and f["vectors"].shape == (3, 8)
  # A failing write leaves the existing file intact and no temporary behind.
  with pytest.raises(ValueError):
    isc_io.write_descriptors(path, names[:2], vecs)

  def fail(*args, **kwargs):
    raise RuntimeError("disk full")

  with monkeypatch.context() as m:
    m.setattr(h5py, "string_dtype", fail)  # after `vectors` is written: a mid-write failure
    with pytest.raises(RuntimeError):
      isc_io.write_descriptors(path, names, vecs * 2)
  assert isc_io.read_descriptors(path)[0] == names
  assert sorted(os.listdir(tmp_path)) == ["refs.h5"]
  # The official writer's layout: fixed-length ASCII byte strings.
  official = tmp_path / "official.h5"
  with h5py.File(official, "w") as f:
    f.create_dataset("vectors", data=vecs.astype(np.float32))
    f.create_dataset("image_names", data=np.array([b"Q1", b"Q2", b"Q3"]))
  assert isc_io.read_descriptors(official)[0] == ["Q1", "Q2", "Q3"]


@pytest.mark.parametrize("weight", [0.0, 0.25, 0.75])
def test_thumbnail_share_mixes_the_two_cosines(weight):
  from provjax.retrieval.thumbnail import with_thumbnail

  rng = np.random.default_rng(0)
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  d, t = unit(rng.normal(size=(5, 8))), unit(rng.normal(size=(5, 3)))
  mixed = with_thumbnail(d, t, weight)
  np.testing.assert_allclose(np.linalg.norm(mixed, axis=1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(mixed @ mixed.T, (1 - weight) * d @ d.T + weight * t @ t.T, atol=1e-6)


def test_detector_describes_with_the_protocols_thumbnail_share():
  from provjax.copydetect.detector import CopyDetector, Protocol
  from provjax.retrieval.thumbnail import thumbnail

  det = CopyDetector.load("copynce.synth-v1", matcher="")
  images = [np.random.default_rng(i).integers(0, 255, (40, 56, 3), np.uint8) for i in range(3)]
  alone = det.describe(images)
  det.protocol = Protocol(thumbnail_weight=0.5)
  mixed = det.describe(images)
  assert mixed.shape == (3, alone.shape[1] + 256)
  np.testing.assert_allclose(mixed[:, : alone.shape[1]], np.sqrt(0.5) * alone, atol=1e-6)
  np.testing.assert_allclose(
      mixed[:, alone.shape[1] :], np.sqrt(0.5) * thumbnail(images), atol=1e-6
  )
