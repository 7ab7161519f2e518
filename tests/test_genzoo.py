"""The generator zoo: its builder (classes, semantics, honest splits, one storage path for every
class, corrupted test copies) and one real training step of a generator task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from provjax.data import genzoo
from provjax.data.images import read_image
from provjax.data.synthetic import prepared_source
from provjax.transforms import corruptions

from conftest import quick_zoo

ROOT = Path(__file__).resolve().parents[1]


def _records(data_dir, split):
  source = prepared_source(genzoo.builder(data_dir, per_class=quick_zoo()), split)
  return [source[i] for i in range(len(source))]


def test_every_cell_of_the_grid_is_there(genzoo_data):
  classes = len(genzoo.GENERATORS) + 1
  for split, semantics in (("train", 4), ("val", 4), ("test", 6)):
    records = _records(genzoo_data, split)
    cells = {(int(r["label"]), int(r["dlabel"])) for r in records}
    assert cells == {(c, s) for c in range(classes) for s in range(semantics)}
    assert len(records) == classes * semantics * quick_zoo()[split]


def test_every_class_is_stored_the_same_way(genzoo_data):
  """PNG at 64 px for real and fake alike: the format carries no label (DIRE #11)."""
  for r in _records(genzoo_data, "train"):
    assert bytes(r["image"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_image(bytes(r["image"])).shape == (64, 64, 3)


def test_splits_share_no_photograph(genzoo_data):
  photos = {}
  for split in ("train", "val", "test"):
    sources = {bytes(r["source"]).decode() for r in _records(genzoo_data, split)}
    photos[split] = {s for s in sources if s.startswith("photo:")}
    assert photos[split], split
  assert not photos["train"] & photos["val"]
  assert not photos["train"] & photos["test"]
  assert not photos["val"] & photos["test"]


def test_corrupted_test_copies_use_their_own_corruption_sets(genzoo_data):
  clean = _records(genzoo_data, "test")
  for split, ids in (("test_seen", corruptions.TRAIN_IDS), ("test_unseen", corruptions.UNSEEN_IDS)):
    copy = _records(genzoo_data, split)
    names = {bytes(r["corruption"]).decode() for r in copy}
    assert names <= {corruptions.NAMES[i] for i in ids}
    by_index = {int(r["index"]): r for r in clean}
    assert sorted(by_index) == sorted(int(r["index"]) for r in copy)
    pairs = [(by_index[int(r["index"])], r) for r in copy]
    assert all(int(a["label"]) == int(b["label"]) for a, b in pairs)
    assert all(int(a["dlabel"]) == int(b["dlabel"]) for a, b in pairs)
    changed = [
        not np.array_equal(read_image(bytes(a["image"])), read_image(bytes(b["image"])))
        for a, b in pairs
    ]
    assert np.mean(changed) > 0.9
  assert {bytes(r["corruption"]) for r in clean} == {b""}


def test_fakes_are_reconstructions_not_copies():
  """A released generator changes its input, but keeps the content (PSNR well above noise)."""
  from provjax import weights

  rng = genzoo.content_rng(0, "test", 1, 1, 0)
  image = genzoo.draw_content(1, rng, 64, "test")[1]
  out = genzoo.generate(weights.load(genzoo.GENERATORS[0]), image[None], seed=0)[0]
  mse = np.mean((out.astype(float) - image) ** 2)
  assert 0 < mse and 10 * np.log10(255**2 / mse) > 15


@pytest.mark.slow  # about 20 s; the released generators were trained this way
def test_a_generator_trains_through_the_trainer(tmp_path):
  from provjax.config import load_config
  from provjax.train.trainer import train

  result = train(
      load_config(f"{ROOT}/configs/repmix/generator.py:vae,quick"), tmp_path / "w", progress=False
  )
  assert result.step == 2 and np.isfinite(result.metrics["loss"]) and result.metrics["kl"] > 0
