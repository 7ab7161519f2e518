"""The synthetic copy-detection benchmark (provjax.data.copydetect): splits, ground truth, honest
sources, families, determinism."""

from __future__ import annotations

import collections
import itertools

import numpy as np
from PIL import Image
import pytest

from provjax.data import copydetect, photos, splits
from provjax.data.images import read_image
from provjax.transforms import copy_recipe

FAMILIES = copy_recipe.QUERY_FAMILIES
TINY = {
    "resolution": 64,
    "num_train": 6,
    "num_background": 4,
    "num_refs": 10,
    "num_matched": len(FAMILIES),
    "num_unmatched": len(FAMILIES) + 1,
    "seed": 3,
}
PARTS = ("val", "test")


def _read(data_dir) -> dict[str, list[dict]]:
  out = {}
  for split in copydetect.SPLITS:
    source = copydetect.load(split, data_dir=data_dir, **TINY)
    out[split] = [
        {k: v if k == "image" else copydetect.text(v) for k, v in source[i].items()}
        for i in range(len(source))
    ]
  return out


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  """Every split of the TINY config, prepared once, with string fields decoded."""
  return _read(tmp_path_factory.mktemp("copydetect_tfds"))


def _boxes_overlap(a: str, b: str) -> bool:
  (ta, la, ha, wa), (tb, lb, hb, wb) = (map(int, box.split(",")) for box in (a, b))
  return ta < tb + hb and tb < ta + ha and la < lb + wb and lb < la + wa


def test_splits_ids_and_counts(records):
  expected = {
      "train": ("T", TINY["num_train"]),
      "background": ("B", TINY["num_background"]),
      "val_refs": ("R", TINY["num_refs"]),
      "test_refs": ("R", TINY["num_refs"]),
      "val_queries": ("Q", TINY["num_matched"] + TINY["num_unmatched"]),
      "test_queries": ("Q", TINY["num_matched"] + TINY["num_unmatched"]),
  }
  assert set(records) == set(expected)
  for split, (prefix, count) in expected.items():
    assert [r["id"] for r in records[split]] == [f"{prefix}{i:06d}" for i in range(count)], split
    assert all(bytes(r["image"])[:8] == b"\x89PNG\r\n\x1a\n" for r in records[split])


def test_queries_point_at_their_own_references(records):
  for part in PARTS:
    refs = {r["id"]: r for r in records[f"{part}_refs"]}
    queries = records[f"{part}_queries"]
    matched = [q for q in queries if q["reference_id"]]
    assert len(matched) == TINY["num_matched"]
    assert len({q["reference_id"] for q in matched}) == len(matched)  # distinct references
    for q in matched:
      ref = refs[q["reference_id"]]
      assert (q["source"], q["region"]) == (ref["source"], ref["region"])  # a copy of that image
    pairs, query_ids = copydetect.ground_truth(queries)
    assert pairs == [(q["id"], q["reference_id"]) for q in matched]
    assert query_ids == [q["id"] for q in queries]
    # Matched and non-matching queries are interleaved: the id order tells nothing.
    kinds = [bool(q["reference_id"]) for q in queries]
    assert kinds != sorted(kinds) and kinds != sorted(kinds, reverse=True)


def test_non_matching_queries_hold_no_reference_content(records):
  for part in PARTS:
    refs = records[f"{part}_refs"]
    unmatched = [q for q in records[f"{part}_queries"] if not q["reference_id"]]
    assert len(unmatched) == TINY["num_unmatched"]
    held = refs + unmatched
    for a, b in itertools.combinations(held, 2):
      if a["region"] and b["region"] and a["source"] == b["source"]:
        assert not _boxes_overlap(a["region"], b["region"]), (a["id"], b["id"])
      elif not a["region"] and not b["region"]:
        assert a["source"] != b["source"]  # distinct procedural seeds
    # Photos and procedural images in the same proportion among references and non-matching
    # queries: what a query shows says nothing about whether it matches.
    share = lambda rs: np.mean([bool(r["region"]) for r in rs])
    assert 0 < share(unmatched) < 1 and 0 < share(refs) < 1
    assert abs(share(refs) - share(unmatched)) <= 1 / len(unmatched)


def test_parts_share_no_photograph_or_seed(records):
  parts = {
      "train": records["train"],
      "background": records["background"],
      "val": records["val_refs"] + records["val_queries"],
      "test": records["test_refs"] + records["test_queries"],
  }
  sources = {name: {r["source"] for r in rs} for name, rs in parts.items()}
  for name, found in sources.items():
    assert any(s.startswith("photo:") for s in found), name
    assert any(s.startswith("procedural:") for s in found), name
  for a, b in itertools.combinations(sources, 2):
    assert not sources[a] & sources[b], (a, b, sorted(sources[a] & sources[b]))
  # The seed namespaces are those of splits.py, so other builders' tests cover them too.
  for name, found in sources.items():
    split_id = splits.SPLIT_ID[copydetect.SOURCE_SPLITS[name]]
    seeds = {s.split(":")[1] for s in found if s.startswith("procedural:")}
    assert {s.split("/")[1] for s in seeds} == {str(split_id)}, name


def test_every_family_about_equally_often(records):
  for part in PARTS:
    queries = records[f"{part}_queries"]
    for kind in (True, False):
      counts = collections.Counter(q["family"] for q in queries if bool(q["reference_id"]) == kind)
      assert set(counts) == set(FAMILIES), (part, kind)
      assert max(counts.values()) - min(counts.values()) <= 1
    assert {r["family"] for r in records[f"{part}_refs"]} == {""}


def test_sizes(records):
  for split in ("train", "background"):
    assert {read_image(r["image"]).shape for r in records[split]} == {(64, 64, 3)}
  refs = [read_image(r["image"]) for p in PARTS for r in records[f"{p}_refs"]]
  assert {min(x.shape[:2]) for x in refs} == {64}
  assert any(x.shape[0] != x.shape[1] for x in refs)  # photo crops keep their aspect
  queries = [read_image(r["image"]) for p in PARTS for r in records[f"{p}_queries"]]
  assert any(x.shape[0] != x.shape[1] for x in queries)


def test_same_config_same_dataset(records, tmp_path):
  again = _read(tmp_path)
  for split in copydetect.SPLITS:
    assert [(r["id"], r["image"]) for r in again[split]] == [
        (r["id"], r["image"]) for r in records[split]
    ], split
  other_seed = copydetect.load("val_refs", data_dir=tmp_path, **{**TINY, "seed": 4})
  assert bytes(other_seed[1]["image"]) != records["val_refs"][1]["image"]


def test_cells_tile_a_photo_without_overlap():
  """A 300 x 451 photo at resolution 128: side max(96, 300 // 4) = 96, a 3 x 4 grid centred."""
  photo = np.zeros((300, 451, 3), np.uint8)
  grid = copydetect.cells([("a", photo), ("a", photo)], 128, np.random.default_rng(0))
  boxes = sorted(cell for _, _, cell in grid)  # the group's second photo is not tiled
  assert boxes == [(6 + 96 * r, 33 + 96 * c, 96) for r in range(3) for c in range(4)]
  box, crop = copydetect.cell_crop(photo, (6, 33, 96), np.random.default_rng(1), 128)
  top, left, height, width = box
  assert 6 <= top and top + height <= 102 and 33 <= left and left + width <= 129
  assert 67 <= min(height, width) and min(crop.shape[:2]) == 128


def test_a_photo_folder_adds_its_photos(tmp_path):
  rng = np.random.default_rng(0)
  for name in ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"):
    Image.fromarray(photos.procedural_image(rng, 200)).save(tmp_path / f"{name}.png")
  config = copydetect.CopydetectConfig(
      resolution=64, num_refs=184, num_matched=0, num_unmatched=0, photo_dir=str(tmp_path)
  )
  held = list(copydetect.held_back_sources("test", range(copydetect.num_sources(config)), config))
  groups = {r["source"] for r in held if r["region"]}
  bundled = {splits.photo_source(name) for name in splits.BUNDLED_SPLITS["test"]}
  assert bundled < groups  # the folder adds to the bundled photos
  test_folder = {
      k
      for k, v in splits.assign_groups(
          ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
      ).items()
      if v == "test"
  }
  assert groups - bundled == {splits.photo_source(k) for k in test_folder}
  name = copydetect.builder(tmp_path / "tfds", photo_dir=str(tmp_path), **TINY).builder_config.name
  assert name != copydetect.builder(tmp_path / "tfds", **TINY).builder_config.name


def test_ground_truth_by_hand_and_bad_counts():
  records = [
      {"id": b"Q2", "reference_id": b"R7"},
      {"id": "Q0", "reference_id": ""},
      {"id": b"Q1", "reference_id": "R3"},
  ]
  assert copydetect.ground_truth(records) == ([("Q2", "R7"), ("Q1", "R3")], ["Q2", "Q0", "Q1"])
  with pytest.raises(ValueError, match="num_matched"):
    copydetect.CopydetectConfig(num_refs=3, num_matched=4)
