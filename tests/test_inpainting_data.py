"""Inpainting datasets: `provjax_inpainting` (honest splits, planned masks) and `provjax_places2`."""

from __future__ import annotations

import collections
import contextlib
import io
import itertools

import numpy as np
from PIL import Image
import pytest

from provjax.data import inpainting, places2, splits
from provjax.transforms import masks

TINY = {"resolution": 64, "num_train": 6, "num_val": 12, "num_test": 24, "seed": 1}


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict[str, list[dict]]:
  """Every split of the TINY config, prepared once."""
  data_dir = tmp_path_factory.mktemp("inpainting_tfds")
  out = {}
  for split in inpainting.SPLITS:
    source = inpainting.load(split, data_dir=data_dir, **TINY)
    out[split] = [source[i] for i in range(len(source))]
  return out


def test_counts_names_and_decoding(records):
  for split in inpainting.SPLITS:
    assert len(records[split]) == TINY[f"num_{split}"]
    for i, record in enumerate(records[split]):
      assert inpainting.text(record["name"]) == f"{split}-{i:06d}"
      image, hole = inpainting.decode(record)
      assert image.shape == (64, 64, 3) and image.dtype == np.uint8
      assert hole.shape == (64, 64) and hole.dtype == bool
      assert image.std() > 0  # not a blank image


def test_splits_share_no_source(records):
  sources = {s: {inpainting.text(r["source"]) for r in records[s]} for s in inpainting.SPLITS}
  for a, b in itertools.combinations(inpainting.SPLITS, 2):
    assert not sources[a] & sources[b], (a, b)
  for split, found in sources.items():
    namespace = inpainting.SOURCE_SPLITS[split]
    photos = {
        splits.photo_source(splits.bundled_group(n)) for n in splits.BUNDLED_SPLITS[namespace]
    }
    prefix = f"procedural:{TINY['seed']}/{splits.SPLIT_ID[namespace]}/"
    assert all(s in photos or s.startswith(prefix) for s in found), (split, found)
    assert any(s in photos for s in found) and any(s.startswith(prefix) for s in found)


def test_masks_follow_the_plan_and_decode_to_their_bins(records):
  for split in inpainting.SPLITS:
    for i, record in enumerate(records[split]):
      _, hole = inpainting.decode(record)
      ratio_bin, kind = inpainting.mask_plan(i)
      assert masks.ratio_bin(hole) == int(record["ratio_bin"]) == ratio_bin
      assert inpainting.text(record["mask_source"]) == kind
      remade, _ = inpainting.planned_mask(split, i, TINY["resolution"], TINY["seed"])
      np.testing.assert_array_equal(hole, remade)


def test_test_split_holds_every_bin_and_kind_equally(records):
  cells = collections.Counter()
  for record in records["test"]:
    photo = inpainting.text(record["source"]).startswith("photo:")
    cells[photo, int(record["ratio_bin"]), inpainting.text(record["mask_source"])] += 1
  assert len(cells) == 2 * len(masks.RATIO_BINS) * len(masks.KINDS)  # 24 records, 24 cells
  assert set(cells.values()) == {1}


def test_held_out_masks_are_not_training_masks(records):
  for i in range(TINY["num_train"]):
    train_hole = inpainting.decode(records["train"][i])[1]
    for split in ("val", "test"):
      assert not np.array_equal(train_hole, inpainting.decode(records[split][i])[1])


# -------------------------------------------------------------- Places2 ---


def _save(path, array, **kw):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path, **kw)


def _thirds(height: int, width: int) -> np.ndarray:
  """Red | green | blue vertical thirds: a center square crop of a wide image is green."""
  image = np.zeros((height, width, 3), np.uint8)
  for c in range(3):
    image[:, c * width // 3 : (c + 1) * width // 3, c] = 255
  return image


@pytest.fixture(scope="module")
def places_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("places2")
  _save(root / "val/a.jpg", _thirds(64, 192), quality=95)
  (root / "val/b_bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
  _save(root / "val/c.png", _thirds(40, 40))
  _save(root / "val/e.jpg", np.transpose(_thirds(40, 120), (1, 0, 2)), quality=95)  # tall
  _save(root / "val/sub/d.jpg", _thirds(50, 150), quality=95)
  left, top = np.zeros((128, 128), np.uint8), np.zeros((128, 128), np.uint8)
  left[:, :64], top[:64] = 200, 1  # any nonzero value is a hole
  _save(root / "masks/0.png", left)
  _save(root / "masks/1.png", top)
  (root / "masks/2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
  _save(root / "test/x.jpg", _thirds(80, 80), quality=95)
  return root


def _all(source) -> list[dict]:
  return [source[i] for i in range(len(source))]


def test_places2_pairs_masks_by_index_and_skips_bad_files(places_dir, tmp_path):
  stderr = io.StringIO()
  with contextlib.redirect_stderr(stderr):
    val = _all(places2.load(places_dir, split="val", data_dir=tmp_path, resolution=32))
  warnings = [line for line in stderr.getvalue().splitlines() if line.startswith("warning:")]
  assert len(warnings) == 2
  assert "b_bad.jpg" in warnings[0] and warnings[0].endswith("skipped")
  assert "c.png" in warnings[1] and "2.png" in warnings[1]  # the image and its bad mask
  # Sorted files: a (mask 0), b_bad (1), c (2, bad), e (0), sub/d (1).
  names = [inpainting.text(r["name"]) for r in val]
  assert names == ["a.jpg", "e.jpg", "sub/d.jpg"]
  assert [inpainting.text(r["mask_source"]) for r in val] == ["masks/0.png"] * 2 + ["masks/1.png"]
  assert [inpainting.text(r["source"]) for r in val] == [f"val/{n}" for n in names]
  left, top = np.zeros((32, 32), bool), np.zeros((32, 32), bool)
  left[:, :16], top[:16] = True, True
  for record, expected in zip(val, (left, left, top)):
    image, hole = inpainting.decode(record)
    np.testing.assert_array_equal(hole, expected)
    assert int(record["ratio_bin"]) == 4  # a half: (40 %, 50 %]
    # The center square of each (wide or tall) image is its green middle third.
    centre = image[8:24, 8:24].astype(float)
    assert centre[..., 1].mean() > 200 and centre[..., [0, 2]].mean() < 50


def test_places2_without_masks_draws_planned_free_form_masks(places_dir, tmp_path):
  root = tmp_path / "no_masks"
  (root / "test").mkdir(parents=True)
  for k in range(3):
    _save(root / f"test/{k}.png", _thirds(48, 48 + 8 * k))
  test = _all(places2.load(root, split="test", data_dir=tmp_path / "tfds", resolution=32))
  assert len(test) == 3
  for k, record in enumerate(test):
    _, hole = inpainting.decode(record)
    remade, kind = inpainting.planned_mask("test", k, 32, places2.DEFAULTS["seed"])
    np.testing.assert_array_equal(hole, remade)
    assert int(record["ratio_bin"]) == inpainting.mask_plan(k)[0] == masks.ratio_bin(hole)
    assert inpainting.text(record["mask_source"]) == kind
  _save(tmp_path / "elsewhere/images/0.png", _thirds(48, 48))  # no train/, val/ or test/
  with pytest.raises(ValueError, match="none of the folders"):
    places2.load(tmp_path / "elsewhere", split="test", data_dir=tmp_path / "tfds")
