"""Honest splits: no photo or procedural seed is in two splits (bundled photos and folders)."""

from __future__ import annotations

import itertools

import numpy as np
from PIL import Image
import pytest

from provjax.data import folder, pairs, photos, splits, synthetic

_PER_SPLIT = 200
_RES = 16


def _sources(split, photo_dir=None, count=_PER_SPLIT, seed=0):
  records = synthetic.generate_records(split, count, _RES, seed, photo_dir=photo_dir)
  return {source for _, source, _ in records}


def _assert_disjoint(by_split):
  for a, b in itertools.combinations(by_split, 2):
    assert not by_split[a] & by_split[b], (a, b, sorted(by_split[a] & by_split[b])[:5])


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
  """~12 small photos with grouped names, in two sub-folders."""
  root = tmp_path_factory.mktemp("photos")
  (root / "sub").mkdir()
  names = [
      "left01.png",
      "left02.png",
      "right01.png",
      "aloeL.png",
      "aloeR.png",
      "adwaita-d.png",
      "adwaita-l.png",
      "graf1.png",
      "graf3.png",
      "sub/basketball1.png",
      "sub/basketball2.png",
      "sub/fruits.png",
      "sub/baboon.png",
      "sub/sudoku.png",
      "sub/starry.png",
  ]
  rng = np.random.default_rng(0)
  for i, name in enumerate(names):
    image = photos.procedural_image(rng, 80 + 4 * i)
    Image.fromarray(image).save(root / name)
  (root / "tiny.png").write_bytes(b"")  # not counted: skipped below
  Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "icon.png")  # under MIN_SIDE
  return str(root)


def test_every_bundled_photo_has_exactly_one_split():
  assigned = [name for names in splits.BUNDLED_SPLITS.values() for name in names]
  assert len(assigned) == len(set(assigned)) == 22
  assert {name for name, _ in photos.sample_photos()} <= set(assigned)
  assert all(splits.BUNDLED_SPLITS[s] for s in splits.SPLITS)


def test_stereo_pair_is_one_source_in_one_split():
  assert splits.bundled_split("motorcycle_left") == splits.bundled_split("motorcycle_right")
  assert splits.bundled_group("motorcycle_left") == splits.bundled_group("motorcycle_right")
  pool = splits.photo_pool(splits.bundled_split("motorcycle_left"))
  assert sum(group == "motorcycle" for group, _ in pool) == 2


def test_bundled_splits_are_disjoint():
  by_split = {s: _sources(s) for s in splits.SPLITS}
  _assert_disjoint(by_split)
  for s, sources in by_split.items():
    photo = {x for x in sources if x.startswith("photo:")}
    assert {x.removeprefix("photo:") for x in photo} <= {
        splits.bundled_group(n) for n in splits.BUNDLED_SPLITS[s]
    }
    assert len(sources) > len(photo) > 0  # both kinds in every split


@pytest.mark.parametrize(
    "stem, key",
    [
        ("left01", "left"),
        ("left", "left"),
        ("right14", "left"),
        ("aloeL", "aloe"),
        ("aloeR", "aloe"),
        ("aloeGT", "aloe"),
        ("adwaita-d", "adwaita"),
        ("adwaita-l", "adwaita"),
        ("graf1", "graf"),
        ("basketball2", "basketball"),
        ("leuvenA", "leuven"),
        ("Blender_Suzanne1", "blender_suzanne"),
        ("motorcycle_left", "motorcycle"),
        ("ela_original", "ela"),
        ("ela_modified", "ela"),
        ("HappyFish", "happyfish"),
        ("box_in_scene", "box_in_scene"),
        ("chicky_512", "chicky"),
        ("42", "42"),
    ],
)
def test_folder_grouping_rule(stem, key):
  assert folder.group_key(stem) == key


def test_group_assignment_is_stable_and_fills_every_split():
  keys = [f"photo{c}" for c in "abcdefgh"]
  first = splits.assign_groups(keys)
  assert set(first.values()) == set(splits.SPLITS)
  assert splits.assign_groups(reversed(keys)) == first
  many = splits.assign_groups(f"k{i}" for i in range(2000))
  share = np.mean([s == "train" for s in many.values()])
  assert 0.75 < share < 0.85


def test_folder_splits_are_disjoint(photo_dir, capsys):
  folder._load_split.cache_clear()  # pylint: disable=protected-access  # warn again
  groups = folder.groups(photo_dir)
  assert {"left", "aloe", "adwaita", "graf", "basketball"} <= set(groups)
  assert len(groups["left"]) == 3
  by_split = {s: _sources(s, photo_dir) for s in splits.SPLITS}
  _assert_disjoint(by_split)
  assignment = folder.split_groups(photo_dir)
  for s, sources in by_split.items():
    photo = {x.removeprefix("photo:") for x in sources if x.startswith("photo:")}
    assert photo and all(assignment[g] == s for g in photo)
  # Bundled photos are not used when a folder is given.
  bundled = {f"photo:{splits.bundled_group(n)}" for n, _ in photos.sample_photos()}
  assert not set().union(*by_split.values()) & bundled
  # The empty file is skipped with a one-line warning naming it; the icon silently.
  err = capsys.readouterr().err
  lines = [line for line in err.splitlines() if "tiny.png" in line]
  assert len(lines) == 1 and "skipping" in lines[0]
  assert "icon.png" not in err
  loaded = [img for s in splits.SPLITS for _, img in folder.load_split(photo_dir, s)]
  assert len(loaded) == 15 and all(min(img.shape[:2]) >= folder.MIN_SIDE for img in loaded)


def test_large_photos_are_downscaled(tmp_path):
  Image.fromarray(np.full((300, 1500, 3), 90, np.uint8)).save(tmp_path / "wide.png")
  (image,) = [img for s in splits.SPLITS for _, img in folder.load_split(tmp_path, s)]
  assert image.shape == (205, 1024, 3)


@pytest.mark.parametrize("use_folder", [False, True])
def test_tfds_builder_records_name_disjoint_sources(tmp_path, photo_dir, use_folder):
  kw = dict(
      data_dir=tmp_path, resolution=_RES, count=60, photo_dir=photo_dir if use_folder else None
  )
  found = {}
  for split in ("train", "test"):
    source = synthetic.load_source(split, **kw)
    found[split] = {bytes(source[i]["source"]).decode() for i in range(len(source))}
  found["gallery"], found["distractors"] = _sources("gallery", kw["photo_dir"]), _sources(
      "distractors", kw["photo_dir"]
  )
  _assert_disjoint(found)
  assert found["train"] == _sources("train", kw["photo_dir"], count=60)


def test_folder_names_its_own_prepared_dataset(tmp_path, photo_dir):
  plain = synthetic.builder(tmp_path, resolution=_RES, count=8)
  other = synthetic.builder(tmp_path, resolution=_RES, count=8, photo_dir=photo_dir)
  assert plain.builder_config.name != other.builder_config.name
  assert folder.fingerprint(photo_dir) in other.builder_config.name


def test_procedural_seeds_are_namespaced_by_split():
  a = photos.procedural_image(splits.procedural_rng(0, "train", 5), 24)
  b = photos.procedural_image(splits.procedural_rng(0, "test", 5), 24)
  assert not np.array_equal(a, b)
  with pytest.raises(ValueError, match="unknown split"):
    splits.procedural_rng(0, "validation", 0)


def test_pair_distractors_come_from_their_split(monkeypatch):
  seen = []
  real = photos.photo_crop

  def spy(rng, size, *, pool=None):
    seen.append({group for group, _ in pool})
    return real(rng, size, pool=pool)

  monkeypatch.setattr(photos, "photo_crop", spy)
  rng = np.random.default_rng(0)
  original = np.zeros((32, 32, 3), np.uint8)
  for i in range(12):
    pairs.make_pair(original, rng, size=16, label=i % 3, split="test")
  test_groups = {splits.bundled_group(n) for n in splits.BUNDLED_SPLITS["test"]}
  assert seen and all(groups <= test_groups for groups in seen)
