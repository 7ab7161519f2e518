"""The DISC21 builder (provjax.data.disc21) on a tiny fake release."""

from __future__ import annotations

import numpy as np
from PIL import Image
import pytest

from provjax.data import copydetect, disc21


def _save(path, seed: int, fmt: str = "JPEG") -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 256, (12, 9, 3), dtype=np.uint8)
  Image.fromarray(pixels).save(path, format=fmt)


def _release(root):
  """3 references (R000001 corrupt), 2 training images, 5 queries across dev I / dev II."""
  for i in (0, 2, 3):
    _save(root / "references" / f"R{i:06d}.jpg", i)
  good = (root / "references" / "R000000.jpg").read_bytes()
  (root / "references" / "R000001.jpg").write_bytes(good[: len(good) // 2])  # truncated
  (root / "references" / "notes.txt").write_text("not an image")
  _save(root / "training" / "T000000.jpg", 10)
  _save(root / "training" / "T000001.png", 11, "PNG")
  for q in (0, 7, 24999, 25000, 49999):
    _save(root / "queries" / f"Q{q:05d}.jpg", 100 + q)
  (root / disc21.GROUND_TRUTH).write_text(
      "query_id,reference_id\n"
      "Q00000,R000002\n"
      "Q00007,\n"
      "Q25000,R000003\n"
      "Q49999,R000000\n"
      "Q30000,R000003\n"  # listed, but its file is not there
  )
  return root


def _rows(source):
  return [
      (bytes(r["id"]).decode(), bytes(r["reference_id"]).decode(), bytes(r["image"]))
      for r in (source[i] for i in range(len(source)))
  ]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  return _release(tmp_path_factory.mktemp("disc21"))


def test_splits_records_and_the_corrupt_file(release, tmp_path, capfd):
  refs = disc21.load(release, data_dir=tmp_path, split="references")
  training = disc21.load(release, data_dir=tmp_path, split="training")
  queries = disc21.load(release, data_dir=tmp_path, split="queries")
  info = disc21.builder(release, data_dir=tmp_path).info
  assert set(info.splits) == {"references", "training", "queries"}
  assert [row[:2] for row in _rows(refs)] == [("R000000", ""), ("R000002", ""), ("R000003", "")]
  assert [row[0] for row in _rows(training)] == ["T000000", "T000001"]
  assert [row[:2] for row in _rows(queries)] == [
      ("Q00000", "R000002"),
      ("Q00007", ""),
      ("Q24999", ""),  # not in the CSV: no reference
      ("Q25000", "R000003"),
      ("Q49999", "R000000"),
  ]
  for folder, source in (("references", refs), ("training", training), ("queries", queries)):
    for image_id, _, image in _rows(source):
      (path,) = (release / folder).glob(f"{image_id}.*")
      assert image == path.read_bytes()  # the file's bytes, never re-encoded
  err = capfd.readouterr().err.splitlines()
  assert sum("R000001.jpg" in line for line in err) == 1
  assert not any("notes.txt" in line for line in err)  # not an image name: never read


def test_dev2_keeps_q25000_to_q49999_and_gives_isc_ground_truth(release, tmp_path):
  queries = disc21.load(release, data_dir=tmp_path, split="queries", subset="dev2")
  records = [queries[i] for i in range(len(queries))]
  assert [bytes(r["id"]).decode() for r in records] == ["Q25000", "Q49999"]
  pairs, query_ids = copydetect.ground_truth(records)
  assert pairs == [("Q25000", "R000003"), ("Q49999", "R000000")]
  assert query_ids == ["Q25000", "Q49999"]
  dev1 = disc21.load(release, data_dir=tmp_path, split="queries", subset="dev1")
  assert [bytes(dev1[i]["id"]).decode() for i in range(len(dev1))] == ["Q00000", "Q00007", "Q24999"]


def test_without_ground_truth_every_reference_is_empty(release, tmp_path):
  root = tmp_path / "no_gt"
  _save(root / "queries" / "Q00003.jpg", 3)
  queries = disc21.load(root, data_dir=tmp_path / "tfds", split="queries")
  assert _rows(queries)[0][:2] == ("Q00003", "")
  assert set(disc21.builder(root, data_dir=tmp_path / "tfds").info.splits) == {"queries"}


def test_a_query_with_two_references_names_the_csv_line(tmp_path):
  root = tmp_path / "release"
  _save(root / "queries" / "Q00000.jpg", 0)
  (root / disc21.GROUND_TRUTH).write_text("query_id,reference_id\nQ00000,R1\nQ00000,R2\n")
  with pytest.raises(ValueError, match=r"public_ground_truth\.csv:3: query Q00000"):
    disc21.load(root, data_dir=tmp_path / "tfds")


def test_a_new_file_prepares_again_and_bad_arguments_fail(release, tmp_path):
  root = _release(tmp_path / "copy")
  first = disc21.builder(root, data_dir=tmp_path).builder_config.name
  assert disc21.builder(root, data_dir=tmp_path).builder_config.name == first
  assert disc21.builder(root, data_dir=tmp_path, subset="dev2").builder_config.name != first
  _save(root / "queries" / "Q00001.jpg", 1)
  assert disc21.builder(root, data_dir=tmp_path).builder_config.name != first
  with pytest.raises(ValueError, match="unknown DISC21 subset"):
    disc21.builder(root, data_dir=tmp_path, subset="dev3")
  with pytest.raises(NotADirectoryError):
    disc21.builder(tmp_path / "missing", data_dir=tmp_path)
  (tmp_path / "flat").mkdir()
  _save(tmp_path / "flat" / "R000000.jpg", 0)  # images, but not in the three folders
  with pytest.raises(ValueError, match="none of the folders references, training, queries"):
    disc21.load(tmp_path / "flat", data_dir=tmp_path)
