"""The synthetic forgery builder (provjax.data.forgery): honest splits, exact masks,
post-processing that does not give the label away, determinism, the TFDS builder."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage
import pytest

from provjax.data import folder, forgery, photos, splits
from provjax.data.images import read_image

RES = 48


def _records(split, count, seed=0, photo_dir=None):
  pool = splits.photo_pool(split, photo_dir)
  return [forgery.make_forgery(split, i, RES, seed, pool=pool) for i in range(count)]


@pytest.fixture(scope="module")
def train():
  return _records("train", 60)


def _owner(source: str) -> str:
  """The split a bundled photo group or procedural seed belongs to."""
  kind, _, rest = source.partition(":")
  if kind == "procedural":
    split_id = int(rest.split("/")[1])
    return next(s for s, i in splits.SPLIT_ID.items() if i == split_id)
  names = [n for names in splits.BUNDLED_SPLITS.values() for n in names]
  return splits.bundled_split(next(n for n in names if splits.bundled_group(n) == rest))


@pytest.mark.parametrize("split", ["train", "test"])
def test_hosts_and_donors_come_from_the_split_only(split, train):
  records = train if split == "train" else _records("test", 24)
  for f in records:
    assert _owner(f.source) == split, f.source
    if f.kind == "splice":
      assert f.donor and f.donor != f.source
      assert _owner(f.donor) == split, f.donor
    else:
      assert f.donor == ""
  assert any(f.source.startswith("photo:") for f in records)
  assert any(f.donor.startswith("photo:") for f in records)


def test_photo_folder_sources_stay_in_their_split(tmp_path):
  rng = np.random.default_rng(0)
  for name in ("beach", "forest", "city", "harbour", "desert", "field", "garden", "street"):
    Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(
        tmp_path / f"{name}.png"
    )
  assignment = folder.split_groups(tmp_path)
  for f in _records("train", 12, photo_dir=str(tmp_path)):
    for source in filter(None, (f.source, f.donor)):
      if source.startswith("photo:"):
        assert assignment[source.removeprefix("photo:")] == "train"


def test_kinds_cycle_half_authentic(train):
  kinds = [f.kind for f in train]
  assert kinds == [forgery.kind_of(i) for i in range(len(train))]
  assert kinds.count("authentic") == 30
  assert [kinds.count(k) for k in forgery.EDIT_KINDS] == [10, 10, 10]
  for f in train:
    assert int(f.record()["label"]) == (f.kind != "authentic")


def test_masks_are_exactly_the_changed_pixels(train):
  for f in train:
    if f.kind == "authentic":
      assert f.edited is f.host and not f.mask.any()
      continue
    np.testing.assert_array_equal(f.mask, np.any(f.edited != f.host, axis=-1))
    assert forgery.MIN_CHANGED <= f.mask.mean() <= 0.4, (f.name, f.mask.mean())
  # After post-processing the mask follows the image: same size, same pixels when not resized.
  for f in train:
    image = read_image(f.stored.data)
    stored = forgery.decode_mask(f.record()["mask"])
    assert stored.shape == image.shape[:2]
    if f.stored.scale is None:
      np.testing.assert_array_equal(stored, f.mask)


@pytest.mark.parametrize("kind", forgery.EDIT_KINDS)
def test_edit_mask_on_a_photo(kind):
  pool = splits.photo_pool("train")
  rng = np.random.default_rng(3)
  host = photos.photo_crop(rng, 64, pool=pool)[1]
  donor = photos.photo_crop(rng, 64, pool=pool)[1]
  edited, mask = forgery.edit(host, kind, rng, donor)
  np.testing.assert_array_equal(mask, np.any(edited != host, axis=-1))
  assert mask.mean() >= forgery.MIN_CHANGED
  with pytest.raises(ValueError, match="needs a donor"):
    forgery.edit(host, "splice", rng)


def test_colour_matching_takes_the_reference_statistics():
  rng = np.random.default_rng(0)
  donor = rng.normal(60, 10, (32, 32, 3)).clip(0, 255).astype(np.uint8)
  region = np.zeros((32, 32), bool)
  region[8:20, 4:16] = True
  reference = rng.normal([150, 100, 200], [20, 5, 8], (500, 3))
  matched = forgery.match_colour(donor, region, reference)
  np.testing.assert_allclose(matched[region].mean(0), reference.mean(0), atol=1.0)
  np.testing.assert_allclose(matched[region].std(0), reference.std(0), atol=1.0)


def test_exemplar_fill_copies_the_part_that_continues_the_ring():
  # A horizontal ramp: only sources in the same columns (dx = 0) continue it exactly.
  image = np.repeat(np.repeat(np.arange(64, dtype=np.uint8)[None, :, None] * 4, 64, 0), 3, 2)
  region = np.zeros((64, 64), bool)
  region[24:36, 20:32] = True
  dy, dx = forgery.exemplar_offset(image, region, np.random.default_rng(0))
  assert dx == 0 and abs(dy) >= 3  # moved (overlap at most a quarter) along the ramp


def test_rescaled_donor_covers_the_host_and_is_resampled():
  rng = np.random.default_rng(0)
  donor = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
  for factor in (0.6, 1.0, 1.6):
    out = forgery.rescale(rng, donor, factor, 48)
    assert out.shape == (48, 48, 3)
  np.testing.assert_array_equal(forgery.rescale(rng, donor[:48, :48], 1.0, 48), donor[:48, :48])
  upscaled = forgery.rescale(rng, donor, 1.6, 48).astype(float)
  # Bilinear upscaling smooths: neighbours differ less than in the noise it came from.
  assert (
      np.abs(np.diff(upscaled, axis=1)).mean()
      < 0.8 * np.abs(np.diff(donor.astype(float), 1)).mean()
  )


def _interior(mask):
  return ndimage.binary_erosion(mask, iterations=9)  # 3 sigma from a feathered edge


def test_exemplar_removal_copies_host_pixels(monkeypatch):
  rng = np.random.default_rng(5)
  host = photos.photo_crop(rng, 128, pool=splits.photo_pool("train"))[1]
  chosen = []
  original = forgery.exemplar_offset
  monkeypatch.setattr(
      forgery, "exemplar_offset", lambda *a: chosen.append(original(*a)) or chosen[-1]
  )
  monkeypatch.setattr(forgery, "EXEMPLAR_PROBABILITY", 1.0)
  edited, mask = forgery.edit(host, "removal", np.random.default_rng(1))
  (dy, dx), inner = chosen[-1], _interior(mask)
  assert inner.any()
  np.testing.assert_array_equal(edited[inner], np.roll(host, (-dy, -dx), (0, 1))[inner])
  monkeypatch.setattr(forgery, "EXEMPLAR_PROBABILITY", 0.0)
  count = len(chosen)
  forgery.edit(host, "removal", np.random.default_rng(1))
  assert len(chosen) == count  # push-pull fill: no exemplar searched


def test_unmatched_splice_keeps_the_donor_colours(monkeypatch):
  rng = np.random.default_rng(6)
  pool = splits.photo_pool("train")
  host = photos.photo_crop(rng, 128, pool=pool)[1]
  donor = np.full((128, 128, 3), (250, 10, 10), np.uint8)  # a colour the host has nowhere
  monkeypatch.setattr(forgery, "SPLICE_MATCH_PROBABILITY", 0.0)
  edited, mask = forgery.edit(host, "splice", np.random.default_rng(2), donor)
  inner = _interior(mask)
  assert inner.any() and (edited[inner] == (250, 10, 10)).all()
  monkeypatch.setattr(forgery, "SPLICE_MATCH_PROBABILITY", 1.0)
  edited, mask = forgery.edit(host, "splice", np.random.default_rng(2), donor)
  assert not np.all(edited[_interior(mask)] == (250, 10, 10), axis=-1).any()


def test_post_processing_ignores_the_content_and_label():
  a = np.zeros((40, 40, 3), np.uint8)
  b = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
  forged = np.zeros((40, 40), bool)
  forged[5:20, 5:20] = True
  for seed in range(20):
    sa = forgery.postprocess(a, np.zeros((40, 40), bool), np.random.default_rng(seed))
    sb = forgery.postprocess(b, forged, np.random.default_rng(seed))
    assert (sa.format, sa.quality, sa.scale) == (sb.format, sb.quality, sb.scale)


def test_format_distribution_and_qualities(train):
  for f in train:
    assert f.stored.data[:2] == (b"\xff\xd8" if f.stored.format == "jpeg" else b"\x89P")
  for group in (
      [f for f in train if f.kind == "authentic"],
      [f for f in train if f.kind != "authentic"],
  ):
    share = np.mean([f.stored.format == "jpeg" for f in group])
    assert 0.4 <= share <= 0.95, share  # FINAL_JPEG_PROBABILITY = 0.7 for both
  # The final quality is never one the image was compressed at before.
  rng = np.random.default_rng(0)
  image = np.zeros((16, 16, 3), np.uint8)
  earlier = list(range(65, 100))  # only 100 is left
  qualities = {
      forgery.postprocess(image, image[..., 0] > 0, rng, earlier=earlier).quality for _ in range(30)
  }
  assert qualities <= {None, 100} and 100 in qualities


def test_records_are_deterministic(train):
  again = _records("train", 6)
  for a, b in zip(train, again):
    assert a.record().keys() == b.record().keys()
    for key, value in a.record().items():
      assert value == b.record()[key], key
  other = _records("train", 6, seed=1)
  assert any(a.stored.data != b.stored.data for a, b in zip(train, other))


def test_tfds_builder_writes_the_records(tmp_path):
  source = forgery.load_source("test", data_dir=tmp_path, resolution=32, count=4)
  assert len(source) == 48  # the held-back split has at least 48 records
  want = list(forgery.generate_records("test", 3, 32))
  for i, record in enumerate(want):
    got = source[i]
    assert set(got) == set(record)
    for key in ("image", "mask", "name", "kind", "source", "donor"):
      assert bytes(got[key]) == record[key], key
    assert int(got["label"]) == int(record["label"])
  # Stored in order (no TFDS shuffling): record i's kind is known from i alone.
  assert [bytes(source[i]["kind"]).decode() for i in range(len(source))] == [
      forgery.kind_of(i) for i in range(len(source))
  ]


def test_parallel_build_makes_the_same_records():
  serial = list(forgery.generate_records("test", 40, 32))
  parallel = list(forgery.generate_records("test", 40, 32, workers=2))
  assert len(parallel) == 40
  assert all(a == b for a, b in zip(serial, parallel))
