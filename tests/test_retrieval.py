"""Tests for provjax.retrieval (exact/ScaNN search, persistence, metadata, sharding)."""

import json
import os

import numpy as np
import pytest

from provjax.metrics.retrieval import recall_at_k
from provjax.provenance import bench_retrieval
from provjax.retrieval import (
    Index,
    IndexCorruptError,
    ShardedIndex,
    build_shard_index,
    files_for_process,
    read_vector_shard,
    scann_params,
    sha256_file,
    write_vector_shard,
)
from provjax.retrieval import exact
from provjax.retrieval import index as index_module
from provjax.retrieval.merge import merge_topk


def _unit(rng, n, d):
  x = rng.standard_normal((n, d)).astype(np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def clustered():
  """Small version of the benchmark recipe: big enough for ScaNN's tree mode (>= 20k)."""
  db, queries = bench_retrieval.clustered_data(30_000, 32, 100, num_clusters=300)
  return db, queries


@pytest.fixture(scope="module")
def scann_index(clustered):
  db, _ = clustered
  index = Index(32)
  index.add(np.arange(len(db)) * 3 + 7, db)  # ids differ from rows on purpose
  return index


# ------------------------------------------------------------------------------------ exact
def test_exact_topk_equals_numpy_argsort():
  rng = np.random.default_rng(1)
  db, q = _unit(rng, 3000, 16), _unit(rng, 20, 16)
  scores, idx = exact.topk(db, q, 7, block=512)  # 3000 is not a multiple of the block
  ref = np.argsort(-(q @ db.T), axis=1, kind="stable")[:, :7]
  assert idx.dtype == np.int64 and scores.dtype == np.float32
  np.testing.assert_array_equal(idx, ref)
  np.testing.assert_allclose(scores, np.take_along_axis(q @ db.T, ref, 1), rtol=1e-5)


def test_exact_ties_by_lower_index_and_padding():
  db = np.repeat(np.eye(4, dtype=np.float32), 3, axis=0)  # rows 0-2 equal, 3-5 equal, ...
  _, idx = exact.topk(db, db[3:4], 4, block=4)
  np.testing.assert_array_equal(idx[0, :3], [3, 4, 5])
  scores, idx = exact.topk(db[:2], db[:1], 4)
  np.testing.assert_array_equal(idx, [[0, 1, -1, -1]])
  assert np.isneginf(scores[0, 2:]).all()


def test_merge_topk_orders_by_score_then_id_with_padding_last():
  s, i = merge_topk(
      [np.array([[0.5, -np.inf]]), np.array([[0.9, 0.5]])],
      [np.array([[8, -1]]), np.array([[3, 2]])],
      5,
  )
  np.testing.assert_array_equal(i, [[3, 2, 8, -1, -1]])
  np.testing.assert_array_equal(s[0, :3], np.float32([0.9, 0.5, 0.5]))


# ------------------------------------------------------------------------------------ scann
def test_scann_params_follow_database_size():
  assert scann_params(5_000)["mode"] == "brute_force"
  small, large = scann_params(100_000), scann_params(1_000_000)
  assert small["mode"] == large["mode"] == "tree_ah"
  assert small["num_leaves"] < large["num_leaves"]
  assert large["dims_per_block"] == 2 and large["anisotropic_threshold"] == 0.2


def test_scann_recall_on_clustered_data(clustered, scann_index):
  db, queries = clustered
  _, found = scann_index.search(queries, 10)
  assert scann_index.params["mode"] == "tree_ah"
  assert scann_index.params["calibration"]["recall_at_10"] >= 0.99  # the default is calibrated
  ref = Index(32, backend="exact")
  ref.add(scann_index.ids, db)
  _, true = ref.search(queries, 10)
  assert recall_at_k(found, true, 10) >= 0.95


def test_calibration_searches_enough_leaves(clustered):
  """Too few leaves searched: calibration raises the count until its probes find their 10
  nearest rows at recall 0.99; fresh noisy queries then agree with exact search."""
  from provjax.retrieval import scann_backend

  db, queries = clustered
  params = dict(scann_params(len(db)), num_leaves=200, leaves_to_search=1)
  searcher = scann_backend.build_searcher(db, 10, params)
  calibrated = scann_backend.calibrate_leaves(searcher, db, params)
  assert 1 < calibrated["leaves_to_search"] <= 200
  assert calibrated["calibration"]["recall_at_10"] >= scann_backend.TARGET_RECALL
  _, true = exact.topk(db, queries, 10)
  _, before = scann_backend.search_with(searcher, params, queries, 10)
  _, after = scann_backend.search_with(searcher, calibrated, queries, 10)
  assert recall_at_k(before, true, 10) < 0.95 and recall_at_k(after, true, 10) >= 0.98
  # Already enough: nothing changes but the record of what was measured.
  again = scann_backend.calibrate_leaves(searcher, db, calibrated)
  assert again["leaves_to_search"] == calibrated["leaves_to_search"]


def test_exact_neighbours_in_chunks_leave_the_row_out():
  from provjax.retrieval import scann_backend

  rng = np.random.default_rng(4)
  db, rows = _unit(rng, 500, 8), np.array([0, 63, 64, 499])
  sims = db[rows] @ db.T
  sims[np.arange(len(rows)), rows] = -np.inf
  expected = np.argsort(-sims, axis=1, kind="stable")[:, :10]
  np.testing.assert_array_equal(
      scann_backend._exact_neighbours(db, db[rows], 10, own=rows, chunk=64), expected
  )


def test_calibration_re_scores_more_when_every_leaf_is_searched(clustered):
  """Every leaf already searched and too few candidates re-scored: calibration doubles reorder."""
  from provjax.retrieval import scann_backend

  db, _ = clustered
  params = dict(scann_params(len(db)), num_leaves=50, leaves_to_search=50, reorder=10)
  searcher = scann_backend.build_searcher(db, 10, params)
  calibrated = scann_backend.calibrate_leaves(searcher, db, params)
  assert calibrated["leaves_to_search"] == 50
  assert 10 < calibrated["reorder"] <= scann_backend.MAX_REORDER
  assert calibrated["calibration"]["recall_at_10"] >= scann_backend.TARGET_RECALL


def test_calibration_probes_lie_among_the_rows():
  """Each probe sits as far from a stored row as that row's 10th nearest other row, and its
  truth is the exact top-10 of the probe itself."""
  from provjax.retrieval import scann_backend

  rng = np.random.default_rng(5)
  db = _unit(rng, 400, 8)
  points, truth = scann_backend.calibration_probes(db, probes=20, seed=1)
  assert points.shape == (20, 8) and truth.shape == (20, 10)
  np.testing.assert_array_equal(truth, np.argsort(-(points @ db.T), axis=1, kind="stable")[:, :10])
  gaps = np.linalg.norm(points[:, None] - db[None], axis=-1).min(axis=1)
  assert (gaps > 1e-3).all()  # no probe is a stored row


def test_recall_at_k_hand_case():
  assert recall_at_k([[1, 2, 3], [4, 5, 6]], [[3, 2, 9], [4, 7, 8]], 3) == 0.5


# ------------------------------------------------------------------------------ persistence
def _assert_same_index(a, b, queries):
  assert len(a) == len(b) and a.dim == b.dim and a.backend == b.backend
  assert a.vectors.dtype == b.vectors.dtype == np.float32
  assert a.vectors.tobytes() == b.vectors.tobytes()
  np.testing.assert_array_equal(a.ids, b.ids)
  assert a._meta.rows() == b._meta.rows()
  sa, ia = a.search(queries, 10)
  sb, ib = b.search(queries, 10)
  np.testing.assert_array_equal(ia, ib)
  assert sa.tobytes() == sb.tobytes()


def test_save_load_round_trip_is_bit_exact(tmp_path, clustered, scann_index):
  _, queries = clustered
  scann_index.save(tmp_path / "idx")
  loaded = Index.load(tmp_path / "idx")
  assert loaded.params == scann_index.params
  _assert_same_index(scann_index, loaded, queries)
  assert loaded.lookup(7)["added_at"] == scann_index.lookup(7)["added_at"]


@pytest.mark.parametrize("backend", ["exact", "scann"])  # scann: brute-force mode (3 rows)
def test_small_round_trip_with_metadata(tmp_path, backend):
  rng = np.random.default_rng(2)
  index = Index(8, backend=backend)
  index.add([5, 6, 9], _unit(rng, 3, 8), paths=["a.png", "b.png", None], sha256s=["aa", None, "cc"])
  index.save(tmp_path / "e")
  loaded = Index.load(tmp_path / "e")
  _assert_same_index(index, loaded, _unit(rng, 4, 8))
  assert loaded.lookup(5)["path"] == "a.png" and loaded.lookup(6)["sha256"] is None


def test_corrupted_file_is_detected_by_checksum(tmp_path):
  rng = np.random.default_rng(3)
  index = Index(8, backend="exact")
  index.add(np.arange(50), _unit(rng, 50, 8))
  index.save(tmp_path / "c")
  path = tmp_path / "c" / "segments" / "000000.vectors.npy"
  data = bytearray(path.read_bytes())
  data[-5] ^= 0x01  # one flipped bit in the float payload; the size is unchanged
  path.write_bytes(bytes(data))
  with pytest.raises(IndexCorruptError, match="000000.vectors.npy.*checksum"):
    Index.load(tmp_path / "c")
  Index.load(tmp_path / "c", verify=False)  # sizes still match: loads when asked not to check
  os.remove(tmp_path / "c" / "segments" / "000000.ids.npy")
  with pytest.raises(IndexCorruptError, match="000000.ids.npy: missing"):
    Index.load(tmp_path / "c")


def test_saves_append_segments_and_never_rewrite_or_rehash_saved_rows(tmp_path, monkeypatch):
  rng = np.random.default_rng(13)
  index = Index(8, backend="exact")
  index.add(np.arange(30), _unit(rng, 30, 8))
  index.save(tmp_path / "s")
  first = tmp_path / "s" / "segments" / "000000.vectors.npy"
  inode = first.stat().st_ino
  loaded = Index.load(tmp_path / "s", verify=False)
  hashed = []
  real = index_module._sha256_of
  monkeypatch.setattr(index_module, "_sha256_of", lambda p: hashed.append(p) or real(p))
  loaded.add(np.arange(30, 35), _unit(rng, 5, 8))
  loaded.remove([3])
  loaded.save(tmp_path / "s")
  monkeypatch.undo()
  assert first.stat().st_ino == inode  # the same file, linked into the new directory
  assert sorted(os.path.basename(p) for p in hashed) == [
      "000001.ids.npy",
      "000001.vectors.npy",
      "metadata.sqlite",
  ]
  again = Index.load(tmp_path / "s")  # every checksum (old and new segments) still holds
  assert [
      s["rows"] for s in json.loads((tmp_path / "s" / "manifest.json").read_text())["segments"]
  ] == [30, 5]
  _assert_same_index(loaded, again, _unit(rng, 4, 8))
  compacted = again.compact()
  compacted.save(tmp_path / "s")
  assert sorted(os.listdir(tmp_path / "s" / "segments")) == ["000000.ids.npy", "000000.vectors.npy"]
  assert first.stat().st_ino != inode and len(Index.load(tmp_path / "s")) == 34


def test_a_save_never_links_files_another_save_replaced(tmp_path):
  rng = np.random.default_rng(14)
  first, second = Index(8, backend="exact"), Index(8, backend="exact")
  first.add(np.arange(10), _unit(rng, 10, 8))
  first.save(tmp_path / "a")
  second.add(np.arange(100, 120), _unit(rng, 20, 8))
  second.save(tmp_path / "a")  # same segment name, other rows
  first.add([10], _unit(rng, 1, 8))
  first.save(tmp_path / "a")  # must write its own rows again, not link second's
  loaded = Index.load(tmp_path / "a")
  np.testing.assert_array_equal(loaded.ids, np.arange(11))


def test_format_2_index_is_read_and_resaved_as_segments(tmp_path):
  rng = np.random.default_rng(15)
  index = Index(8, backend="exact")
  index.add([4, 7], _unit(rng, 2, 8), paths=["a", "b"])
  index.save(tmp_path / "v2")
  root = tmp_path / "v2"  # rewrite it in the one-file layout of format 2
  manifest = json.loads((root / "manifest.json").read_text())
  for rel, name in (
      ("segments/000000.vectors.npy", "vectors.npy"),
      ("segments/000000.ids.npy", "ids.npy"),
  ):
    os.rename(root / rel, root / name)
    manifest["files"][name] = manifest["files"].pop(rel)
  manifest["format_version"] = 2
  del manifest["segments"]
  (root / "manifest.json").write_text(json.dumps(manifest))
  old = Index.load(root)
  _assert_same_index(index, old, _unit(rng, 3, 8))
  old.save(root)
  assert sorted(os.listdir(root / "segments")) == ["000000.ids.npy", "000000.vectors.npy"]
  _assert_same_index(index, Index.load(root), _unit(rng, 3, 8))


def test_atomic_save_over_existing_index(tmp_path):
  rng = np.random.default_rng(4)
  first, second = Index(8, backend="exact"), Index(8, backend="exact")
  first.add(np.arange(10), _unit(rng, 10, 8))
  second.add(np.arange(100, 125), _unit(rng, 25, 8))
  first.save(tmp_path / "a")
  second.save(tmp_path / "a")
  loaded = Index.load(tmp_path / "a")
  assert len(loaded) == 25 and loaded.ids[0] == 100
  assert sorted(os.listdir(tmp_path)) == ["a"]  # no temp or old directories left behind
  (tmp_path / "notanindex").mkdir()
  (tmp_path / "notanindex" / "precious.txt").write_text("keep me")
  with pytest.raises(FileExistsError):
    first.save(tmp_path / "notanindex")
  assert (tmp_path / "notanindex" / "precious.txt").read_text() == "keep me"


# ---------------------------------------------------------------------- incremental / dedupe
def test_incremental_add_is_searchable_and_survives_save(tmp_path, clustered):
  db, _ = clustered
  index = Index(32)
  index.add(np.arange(25_000), db[:25_000])
  index.search(db[:1], 10)  # builds the ScaNN searcher over the first 25k rows
  new = _unit(np.random.default_rng(5), 40, 32)
  result = index.add(np.arange(10**6, 10**6 + 40), new)
  np.testing.assert_array_equal(result.added, np.arange(10**6, 10**6 + 40))
  assert index._searcher_rows == 25_000  # searched through the exact delta, no rebuild
  _, ids = index.search(new, 5)
  np.testing.assert_array_equal(ids[:, 0], np.arange(10**6, 10**6 + 40))
  index.save(tmp_path / "inc")
  _assert_same_index(index, Index.load(tmp_path / "inc"), new)
  index.add(np.arange(25_000, 30_000), db[25_000:])  # delta > limit: rebuilt on next search
  _, ids = index.search(db[29_990:], 1)
  assert index._searcher_rows == len(index) == 30_040
  np.testing.assert_array_equal(ids[:, 0], np.arange(29_990, 30_000))


def test_readding_identical_file_is_recognised_by_sha256(tmp_path):
  rng = np.random.default_rng(6)
  files = []
  for name, payload in [("a.jpg", b"alpha"), ("b.jpg", b"beta"), ("a_copy.jpg", b"alpha")]:
    (tmp_path / name).write_bytes(payload)
    files.append(str(tmp_path / name))
  shas = [sha256_file(f) for f in files]
  index = Index(8, backend="exact")
  res = index.add([1, 2], _unit(rng, 2, 8), paths=files[:2], sha256s=shas[:2])
  np.testing.assert_array_equal(res.added, [1, 2])
  assert res.duplicates == {}
  res = index.add([3, 4], _unit(rng, 2, 8), paths=[files[2], files[2]], sha256s=[shas[2], shas[2]])
  assert res.added.size == 0 and res.duplicates == {3: 1, 4: 1}
  assert len(index) == 2 and index.find_sha256(shas[0]) == 1
  assert index.find_sha256("0" * 64) is None
  assert index.lookup(2)["path"] == files[1]
  with pytest.raises(ValueError, match="already in the index"):
    index.add([2], _unit(rng, 1, 8))
  assert len(index) == 2


# ---------------------------------------------------------------------------------- sharding
def test_sharded_exact_equals_union(tmp_path):
  rng = np.random.default_rng(7)
  db, queries = _unit(rng, 3000, 16), _unit(rng, 25, 16)
  db[1500] = db[10]  # an exact tie across shards: broken by the lower id in both
  ids = rng.permutation(10_000)[:3000]
  order = np.argsort(ids)  # union rows in id order so row ties and id ties agree
  union = Index(16, backend="exact")
  union.add(ids[order], db[order])
  parts = np.array_split(rng.permutation(3000), 3)
  shards = []
  for part in parts:
    shard = Index(16, backend="exact")
    shard.add(ids[part], db[part])
    shards.append(shard)
  sharded = ShardedIndex(shards)
  for k in (1, 10):
    s1, i1 = union.search(queries, k)
    s2, i2 = sharded.search(queries, k)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)
  sharded.save(tmp_path / "sh")
  assert sorted(os.listdir(tmp_path / "sh"))[0] == "shard-00000-of-00003"
  np.testing.assert_array_equal(ShardedIndex.load(tmp_path / "sh").search(queries, 10)[1], i2)


def test_multi_host_vector_shards_to_sharded_index(tmp_path):
  rng = np.random.default_rng(8)
  paths = [f"img{i:03d}.png" for i in range(60)]
  vecs = _unit(rng, 60, 8)
  n = 2
  for host in range(n):
    mine = files_for_process(paths, host, n)
    rows = [paths.index(p) for p in mine]
    write_vector_shard(tmp_path / "vec", host, n, rows, vecs[rows], mine, [f"sha{r}" for r in rows])
  assert (
      read_vector_shard(str(tmp_path / "vec" / "vectors-00001-of-00002.npz"))["paths"][0]
      == "img001.png"
  )
  for host in range(n):
    build_shard_index(str(tmp_path / "vec"), str(tmp_path / "idx"), host, n, backend="exact")
  sharded = ShardedIndex.load(str(tmp_path / "idx"))
  assert len(sharded) == 60
  _, ids = sharded.search(vecs[:5], 1)
  np.testing.assert_array_equal(ids[:, 0], np.arange(5))
  assert sharded.lookup(7)["path"] == "img007.png" and sharded.find_sha256("sha9") == 9
  os.rename(tmp_path / "idx" / "shard-00001-of-00002", tmp_path / "idx" / "moved")
  with pytest.raises(ValueError, match="missing shards"):
    ShardedIndex.load(str(tmp_path / "idx"))


# ------------------------------------------------------------------------------------- bench
def test_clustered_data_recipe_shapes():
  db, q = bench_retrieval.clustered_data(500, 16, 7)
  assert db.shape == (500, 16) and q.shape == (7, 16) and db.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(db, axis=1), 1, rtol=1e-5)
  np.testing.assert_array_equal(db, bench_retrieval.clustered_data(500, 16, 7)[0])


@pytest.mark.slow
def test_bench_runs_at_100k():
  rows = bench_retrieval.run(n=100_000, d=64, n_queries=200, repeats=2)
  default = next(r for r in rows if r["method"] == "scann-default")
  assert default["recall"] >= 0.95 and len(rows) > 3


# ------------------------------------------------------------------------------ tombstones
@pytest.mark.parametrize("backend", ["exact", "scann"])
def test_removed_rows_are_never_returned_and_compaction_keeps_ids(tmp_path, backend):
  rng = np.random.default_rng(7)
  db = _unit(rng, 40, 16)
  index = Index(16, backend=backend)
  index.add(np.arange(40) * 2, db, sha256s=[f"s{i}" for i in range(40)])
  index.remove([0, 10, 78])
  assert len(index) == 37 and index.find_sha256("s5") is None
  _, ids = index.search(db, 40)
  assert (
      not np.isin(ids, [0, 10, 78]).any() and (ids[:, :37] >= 0).all() and (ids[:, 37:] < 0).all()
  )
  assert ids[1, 0] == 2  # live rows still come first for their own vector
  with pytest.raises(KeyError):
    index.remove([0])  # already removed

  index.save(tmp_path / "i")
  loaded = Index.load(tmp_path / "i")
  np.testing.assert_array_equal(loaded.search(db, 40)[1], ids)
  assert loaded.lookup(10)["removed_at"] is not None

  compact = loaded.compact()
  assert len(compact) == 37 and len(compact.ids) == 37 and len(loaded.ids) == 40
  np.testing.assert_array_equal(compact.search(db, 40)[1], ids)
  assert compact.content_id("s5") == 10 and compact.max_id() == 78
  with pytest.raises(KeyError):
    compact.lookup(10)
  compact.add([10], db[5:6], sha256s=["s5"])  # content back under its old id
  assert compact.content_id("s5") == 10 and compact.search(db[5], 1)[1][0, 0] == 10

  loaded.relink([10], ["back.png"])  # tombstoned content back: no new vector needed
  assert loaded.lookup(10)["path"] == "back.png" and loaded.search(db[5], 1)[1][0, 0] == 10


def test_metadata_written_before_tombstones_still_loads(tmp_path):
  import sqlite3

  from provjax.retrieval.metadata import MetadataStore

  old = sqlite3.connect(tmp_path / "m.sqlite")
  old.execute(
      "CREATE TABLE images (id INTEGER PRIMARY KEY, path TEXT, sha256 TEXT UNIQUE,"
      " added_at TEXT NOT NULL)"
  )
  old.execute("INSERT INTO images VALUES (3, 'a.png', 'sa', '2026-01-01')")
  old.commit()
  old.close()
  store = MetadataStore.load(str(tmp_path / "m.sqlite"))
  assert store.live_rows() == [(3, "a.png", "sa")] and store.max_id() == 3
  store.remove([3])
  assert store.removed_ids() == [3] and store.find_sha256("sa") is None


def test_save_killed_between_its_renames_loads_the_previous_index(tmp_path):
  rng = np.random.default_rng(8)
  index = Index(8, backend="exact")
  index.add(np.arange(5), _unit(rng, 5, 8))
  index.save(tmp_path / "a")
  # What a kill between the two renames of a save leaves: the old index aside, a temp copy.
  os.rename(tmp_path / "a", tmp_path / ".a.old-12345678")
  (tmp_path / ".a.tmp-abc").mkdir()
  loaded = Index.load(tmp_path / "a")  # reading changes nothing on disk
  assert len(loaded) == 5 and sorted(os.listdir(tmp_path)) == [".a.old-12345678", ".a.tmp-abc"]
  loaded.add([9], _unit(rng, 1, 8))
  loaded.save(tmp_path / "a")  # the next writer tidies up
  assert sorted(os.listdir(tmp_path)) == ["a"] and len(Index.load(tmp_path / "a")) == 6


def test_unchanged_scann_searcher_is_linked_not_reserialized(tmp_path):
  rng = np.random.default_rng(16)
  index = Index(8)
  index.add(np.arange(200), _unit(rng, 200, 8))
  index.save(tmp_path / "s")
  scann_dir = tmp_path / "s" / "scann"
  before = {p.name: p.stat().st_ino for p in scann_dir.iterdir()}
  loaded = Index.load(tmp_path / "s", verify=False)
  loaded.add(np.arange(200, 210), _unit(rng, 10, 8))  # within the exact delta: no rebuild
  loaded.save(tmp_path / "s")
  assert {p.name: p.stat().st_ino for p in scann_dir.iterdir()} == before
  _assert_same_index(loaded, Index.load(tmp_path / "s"), _unit(rng, 4, 8))
