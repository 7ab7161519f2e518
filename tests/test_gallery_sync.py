"""Trusted-gallery lifecycle: `index build` as a sync (add, remove, change), stats, compact.

After every sync each file in the folder is found at rank 1 by its own bytes,
no removed content is ever returned, and untouched files keep their ids; a
sync killed at any point leaves the gallery answering exactly as before it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import time

import numpy as np
from PIL import Image
import pytest

import provjax
from provjax import cli
from provjax.data import photos
from provjax.data.images import list_images, read_image
from provjax.provenance import build
from provjax.provenance.build import build_gallery, owner, plan_sync
from provjax.provenance.engine import Describer
from provjax.provenance.gallery import Gallery
from provjax.retrieval import index as index_module
from provjax.retrieval.index import Index
from provjax.retrieval.metadata import sha256_file

MODELS = ["--descriptor", "simprov.test", "--comparator", "simprov_comparator.test"]


def _write(path: Path, seed: int) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  image = photos.procedural_image(np.random.default_rng(seed), 72 + 4 * (seed % 5))
  Image.fromarray(image).save(path)
  return path


def _sync(capsys, folder, index, *extra) -> dict:
  """`provjax index build`, once per shard when --shard is not given but shards are asked."""
  rc = cli.main(
      ["index", "build", str(folder), "--index", str(index), "--no-progress"]
      + ["--backend", "exact", *MODELS, *extra]
  )
  out = capsys.readouterr().out.strip().splitlines()[-1]
  assert rc == 0, out
  return json.loads(out)


def _sync_all(capsys, folder, index, shards) -> dict:
  """Sync every shard (or the single gallery) and add up the summaries."""
  if shards == 1:
    return _sync(capsys, folder, index)
  runs = [_sync(capsys, folder, index, "--shard", f"{i}/{shards}") for i in range(shards)]
  return {key: sum(r[key] for r in runs) for key in runs[0] if key != "index"}


def _ids_by_sha(index_dir) -> dict[str, int]:
  gallery = Gallery.open(index_dir)
  shards = getattr(gallery, "shards", [gallery])
  return {sha: id_ for g in shards for id_, _, sha in g.index.live_entries()}


def _check_gallery(index_dir, folder, describer, gone_shas: set[str]) -> None:
  """Every file is rank 1 by its own bytes; nothing removed ever comes back."""
  gallery = Gallery.open(index_dir)
  files = list_images(folder)
  vectors = describer([read_image(p) for p in files])
  _, ids = gallery.index.search(vectors, 8)
  for path, row in zip(files, ids.tolist()):
    top = gallery.index.lookup(row[0])
    assert top["path"] == str(path.resolve()) and top["sha256"] == sha256_file(path)
    returned = [gallery.index.lookup(i) for i in row if i >= 0]
    assert not {r["sha256"] for r in returned} & gone_shas
    assert all(r["removed_at"] is None for r in returned)


@pytest.fixture(scope="module")
def describer(fresh_weights):
  return Describer(provjax.load("simprov.test"))


@pytest.mark.slow
@pytest.mark.parametrize("shards", [1, 2])
def test_add_remove_change_each_followed_by_a_sync(
    fresh_weights, describer, tmp_path, capsys, shards
):
  folder, index = tmp_path / "db", tmp_path / "gallery"
  for n in range(5):
    _write(folder / f"sub{n % 2}" / f"img{n}.png", n)
  first = _sync_all(capsys, folder, index, shards)
  assert first["added"] == 5 and first["size"] == 5 and first["errors"] == 0
  _check_gallery(index, folder, describer, set())
  ids = _ids_by_sha(index)

  # Add one file: found, nothing else moves (ids are not positions in a listing).
  _write(folder / "sub0" / "aaa-new.png", 10)
  stats = _sync_all(capsys, folder, index, shards)
  assert (stats["added"], stats["unchanged"], stats["removed"], stats["size"]) == (1, 5, 0, 6)
  after_add = _ids_by_sha(index)
  assert {s: after_add[s] for s in ids} == ids
  _check_gallery(index, folder, describer, set())

  # Remove one file: it is never returned again; the others keep their ids.
  gone = {sha256_file(folder / "sub1" / "img1.png")}
  (folder / "sub1" / "img1.png").unlink()
  stats = _sync_all(capsys, folder, index, shards)
  assert (stats["removed"], stats["unchanged"], stats["size"]) == (1, 5, 5)
  after_remove = _ids_by_sha(index)
  assert after_remove == {s: i for s, i in after_add.items() if s not in gone}
  _check_gallery(index, folder, describer, gone)

  # Change one file in place: its new content is found, its old content is gone.
  changed = folder / "sub0" / "img2.png"
  gone.add(sha256_file(changed))
  _write(changed, 20)
  stats = _sync_all(capsys, folder, index, shards)
  assert (stats["changed"], stats["added"], stats["unchanged"], stats["size"]) == (1, 0, 4, 5)
  after_change = _ids_by_sha(index)
  assert {s: after_change[s] for s in after_remove if s not in gone} == {
      s: i for s, i in after_remove.items() if s not in gone
  }
  assert after_change[sha256_file(changed)] not in after_add.values()
  _check_gallery(index, folder, describer, gone)

  # Stats, then compaction: tombstones dropped, answers and ids unchanged.
  report = json.loads(_run(capsys, ["index", "stats", "--index", str(index)]))
  assert report["size"] == 5 and report["tombstones"] == 2 and report["shards"] == shards
  assert report["bytes"] > 0 and report["last_sync"]
  compacted = json.loads(_run(capsys, ["index", "compact", "--index", str(index)]))
  assert compacted["dropped"] == 2 and compacted["size"] == 5
  assert json.loads(_run(capsys, ["index", "stats", "--index", str(index)]))["tombstones"] == 0
  assert _ids_by_sha(index) == after_change
  _check_gallery(index, folder, describer, gone)

  # Content that comes back after compaction gets its old id again.
  back = _write(folder / "sub1" / "img1.png", 1)
  _sync_all(capsys, folder, index, shards)
  assert _ids_by_sha(index)[sha256_file(back)] == after_add[sha256_file(back)]
  _check_gallery(index, folder, describer, gone - {sha256_file(back)})


def _run(capsys, argv) -> str:
  assert cli.main(argv) == 0
  return capsys.readouterr().out.strip().splitlines()[-1]


def test_shard_owner_is_a_stable_hash_of_the_relative_path(tmp_path):
  owners = {f"d/img{n}.png": owner(f"d/img{n}.png", 2) for n in range(40)}
  assert set(owners.values()) == {0, 1}  # both shards get files
  assert owners == {p: owner(p, 2) for p in owners}  # same answer on every host, every run


@pytest.mark.slow  # training fresh weights for the gallery (~60 s)
def test_no_delete_keeps_gone_files_and_query_says_missing(fresh_weights, tmp_path, capsys):
  folder, index = tmp_path / "db", tmp_path / "gallery"
  paths = [_write(folder / f"img{n}.png", n) for n in range(3)]
  _sync(capsys, folder, index)
  copy = shutil.copy(paths[1], tmp_path / "elsewhere.png")
  paths[1].unlink()
  stats = _sync(capsys, folder, index, "--no-delete")
  assert (stats["kept_missing"], stats["removed"], stats["size"]) == (1, 0, 3)

  rc = cli.main(
      ["query", str(copy), "--index", str(index), "--out", str(tmp_path / "out")]
      + ["--k", "3", "--json", *MODELS]
  )
  record = json.loads(capsys.readouterr().out.strip())
  assert rc == 0
  best = max(record["candidates"], key=lambda c: c["score"])
  assert best["path"] == str(paths[1].resolve()) and best["missing"] is True
  assert all(c["missing"] is False for c in record["candidates"] if c is not best)
  assert Path(record["heatmap_png"]).is_file()

  # Without --no-delete the next sync removes it.
  assert _sync(capsys, folder, index)["removed"] == 1


def test_plan_sync_counts_each_kind_of_change():
  entries = [(0, "/a", "A"), (1, "/b", "B"), (2, "/c", "C"), (3, "/d", "D")]
  found = {"/a": "A", "/b2": "B", "/c": "C2", "/e": "E", "/e2": "E", "/a-copy": "A"}
  plan = plan_sync(entries, found)
  assert plan.remove == [2, 3] and plan.relink == [(1, "/b2")] and plan.changed == {"/c"}
  assert plan.add == [("/c", "C2"), ("/e", "E")]
  assert plan.counts == dict(
      added=0, removed=1, changed=1, unchanged=1, moved=1, duplicates=2, kept_missing=0
  )
  kept = plan_sync(entries, found, delete=False)
  assert kept.remove == [2] and kept.counts["kept_missing"] == 1
  unreadable = plan_sync(entries, {"/a": "A"}, unreadable={"/b"})
  assert unreadable.remove == [2, 3] and unreadable.counts["removed"] == 2


def _answers(index_dir, queries) -> list:
  """What a query sees: ids, scores and paths of the top 8 for each query vector."""
  gallery = Gallery.open(index_dir)
  scores, ids = gallery.index.search(queries, 8)
  paths = [[gallery.index.lookup(i)["path"] if i >= 0 else None for i in r] for r in ids.tolist()]
  return [ids.tolist(), np.round(scores, 5).tolist(), paths]


class Killed(BaseException):
  """Stands for SIGKILL: no handler below the test catches it or cleans up."""


def _kill_after_first_pending_part(monkeypatch):
  real = build._save_pending

  def save_then_die(*args):
    real(*args)
    raise Killed

  monkeypatch.setattr(build, "_save_pending", save_then_die)


def _kill_before_index_swap(monkeypatch):
  def die(tmp, target):
    raise Killed

  monkeypatch.setattr(Index, "_swap_into_place", staticmethod(die))


def _kill_between_the_two_renames(monkeypatch):
  def half_swap(tmp, target):
    os.rename(target, os.path.join(os.path.dirname(target), ".index.old-deadbeef"))
    raise Killed

  monkeypatch.setattr(Index, "_swap_into_place", staticmethod(half_swap))


@pytest.mark.parametrize(
    "kill",
    [
        # the default run kills after the first pending part in the append test below
        pytest.param(_kill_after_first_pending_part, marks=pytest.mark.slow),
        _kill_before_index_swap,
        _kill_between_the_two_renames,
    ],
)
def test_killed_sync_answers_as_before_then_resumes(describer, tmp_path, monkeypatch, kill):
  folder, index = tmp_path / "db", tmp_path / "gallery"
  for n in range(4):
    _write(folder / f"img{n}.png", n)
  sync = lambda: build_gallery(
      folder,
      index,
      describer=describer,
      descriptor_name="simprov.test",
      thumb_size=32,
      backend="exact",
      save_every=1,
      progress=False,
  )
  sync()
  gone = {sha256_file(folder / "img0.png"), sha256_file(folder / "img1.png")}
  _write(folder / "img9.png", 9)
  _write(folder / "img8.png", 8)
  (folder / "img0.png").unlink()
  _write(folder / "img1.png", 11)
  queries = describer(
      [
          photos.procedural_image(np.random.default_rng(s), 72 + 4 * (s % 5))
          for s in (0, 1, 2, 3, 8, 9, 11)
      ]
  )
  before = _answers(index, queries)
  reference = shutil.copytree(index, tmp_path / "reference")  # synced without a kill
  build_gallery(
      folder,
      reference,
      describer=describer,
      descriptor_name="simprov.test",
      thumb_size=32,
      backend="exact",
      progress=False,
  )

  with monkeypatch.context() as m:
    kill(m)
    with pytest.raises(Killed):
      sync()
  assert _answers(index, queries) == before

  stats = sync()
  assert (stats["added"], stats["removed"], stats["changed"], stats["size"]) == (2, 1, 1, 5)
  after = _answers(index, queries)
  assert after == _answers(reference, queries) and after != before
  assert not (index / "pending").exists()
  _check_gallery(index, folder, describer, gone)


def test_append_after_a_kill_loses_nothing_and_rehashes_nothing_earlier(
    describer, tmp_path, monkeypatch
):
  """The second sync reads only the new files and writes and hashes only their rows."""
  folder, index = tmp_path / "db", tmp_path / "gallery"
  hour_ago = time.time() - 3600  # older than the racy window: the cache may vouch for them
  for n in range(4):
    os.utime(_write(folder / f"img{n}.png", n), (hour_ago, hour_ago))
  sync = lambda **kw: build_gallery(
      folder,
      index,
      describer=describer,
      descriptor_name="simprov.test",
      thumb_size=32,
      save_every=1,
      progress=False,
      **kw,
  )
  sync()
  stored = sorted(p for p in index.rglob("*") if p.is_file() and "segments" in p.parts)
  stored += sorted((index / "thumbs").iterdir())
  inodes = [p.stat().st_ino for p in stored]
  new = [_write(folder / f"new{n}.png", 10 + n) for n in range(3)]
  with monkeypatch.context() as m:
    _kill_after_first_pending_part(m)
    with pytest.raises(Killed):
      sync()
  read = []
  for module, name in ((build, "sha256_file"), (index_module, "_sha256_of")):
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda p, real=real: read.append(Path(p)) or real(p))
  stats = sync(workers="processes")
  monkeypatch.undo()
  assert (stats["added"], stats["unchanged"], stats["size"]) == (3, 4, 7)
  assert [p.stat().st_ino for p in stored] == inodes  # linked into place, never rewritten
  names = sorted(p.name for p in read)
  assert [n for n in names if n.endswith(".png")] == sorted(p.name for p in new)
  assert not set(names) & {p.name for p in stored}  # nothing stored earlier was read again
  assert Gallery.open(index).verify()["size"] == 7
  _check_gallery(index, folder, describer, set())
