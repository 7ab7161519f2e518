"""The Attribution88 builder (provjax.data.attribution88) on a tiny fake release."""

from __future__ import annotations

import numpy as np
from PIL import Image
import pytest

from provjax.data import attribution88

HEADER = "path,label,dlabel\n"


def _save(path, seed: int, fmt: str) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 256, (10, 14, 3), dtype=np.uint8)
  Image.fromarray(pixels).save(path, format=fmt)


def _release(root):
  """Images in per-source folders; train and test_unseen CSVs, the latter with two bad rows."""
  _save(root / "real" / "cat" / "0.png", 0, "PNG")
  _save(root / "stylegan" / "cat" / "1.jpg", 1, "JPEG")
  _save(root / "biggan" / "dog" / "2.png", 2, "PNG")
  _save(root / "real" / "bird" / "3.jpg", 3, "JPEG")
  (root / "biggan" / "dog" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
  (root / "train.csv").write_text(
      HEADER + "real/cat/0.png,0,0\nstylegan/cat/1.jpg,1,0\nbiggan/dog/2.png,2,1\n"
  )
  (root / "test_unseen.csv").write_text(
      HEADER
      + "real/bird/3.jpg,0,3\n"
      + "gone/missing.png,4,3\n"  # line 3
      + "biggan/dog/bad.png,2,3\n"  # line 4
      + "biggan/dog/2.png,2,1\n"
  )
  return root


def _rows(source):
  return [
      (bytes(r["path"]).decode(), int(r["label"]), int(r["dlabel"]), bytes(r["image"]))
      for r in (source[i] for i in range(len(source)))
  ]


def test_splits_records_and_skipped_rows(tmp_path, capfd):
  root = _release(tmp_path / "Attribution88")
  data_dir = tmp_path / "tfds"
  test = attribution88.load(root, data_dir=data_dir, split="test_unseen")
  train = attribution88.load(root, data_dir=data_dir, split="train")
  assert set(attribution88.builder(root, data_dir=data_dir).info.splits) == {"train", "test_unseen"}
  expected_train = [
      ("real/cat/0.png", 0, 0),
      ("stylegan/cat/1.jpg", 1, 0),
      ("biggan/dog/2.png", 2, 1),
  ]
  expected_test = [("real/bird/3.jpg", 0, 3), ("biggan/dog/2.png", 2, 1)]
  for rows, expected in ((_rows(train), expected_train), (_rows(test), expected_test)):
    assert [row[:3] for row in rows] == expected  # CSV order
    for path, _, _, image in rows:
      assert image == (root / path).read_bytes()  # the file's bytes, never re-encoded
  err = capfd.readouterr().err.splitlines()
  assert sum("test_unseen.csv:3" in line and "missing.png" in line for line in err) == 1
  assert sum("test_unseen.csv:4" in line and "bad.png" in line for line in err) == 1


def test_prepared_dataset_is_reused_until_a_csv_changes(tmp_path):
  root = _release(tmp_path / "release")
  first = attribution88.builder(root, data_dir=tmp_path / "tfds")
  again = attribution88.builder(root, data_dir=tmp_path / "tfds")
  assert first.builder_config.name == again.builder_config.name
  (root / "val.csv").write_text(HEADER + "real/cat/0.png,0,0\n")
  changed = attribution88.builder(root, data_dir=tmp_path / "tfds")
  assert changed.builder_config.name != first.builder_config.name


def test_bad_header_names_the_csv(tmp_path):
  root = _release(tmp_path / "release")
  (root / "test.csv").write_text("file,label\nreal/cat/0.png,0\n")
  with pytest.raises(ValueError, match=r"test\.csv.*path, dlabel"):
    attribution88.load(root, data_dir=tmp_path / "tfds", split="train")


def test_images_without_csvs(tmp_path):
  _save(tmp_path / "release" / "real" / "0.png", 0, "PNG")
  with pytest.raises(ValueError, match="no split CSVs"):
    attribution88.load(tmp_path / "release", data_dir=tmp_path / "tfds")
