"""scripts/make_forgery_folder.py: forgeries unlike the training builder's, in the generic layout."""

from __future__ import annotations


import numpy as np
from PIL import Image
import skimage.data

from conftest import script
from provjax.data import forensics


def test_folder_holds_splices_and_removals_that_the_folder_builder_reads(tmp_path, capsys):
  photos = tmp_path / "photos"
  photos.mkdir()
  for name in ("astronaut", "coffee", "chelsea", "rocket"):
    Image.fromarray(getattr(skimage.data, name)()).resize((400, 300)).save(photos / f"{name}.png")
  Image.new("RGB", (400, 300), (255, 255, 255)).save(photos / "blank.png")  # left out
  Image.fromarray(skimage.data.camera()).resize((100, 90)).save(photos / "small.png")  # left out
  (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")  # reported, skipped
  out = tmp_path / "out"
  script("make_forgery_folder").main([str(photos), str(out), "--max-side", "200"])
  printed = capsys.readouterr()
  assert "4 authentic, 2 splices, 2 removals" in printed.out
  assert printed.err.count("\n") == 1 and "skipped" in printed.err and "broken.jpg" in printed.err
  stems = {"astronaut", "coffee", "chelsea", "rocket"}
  for sub, suffix in (("real", ".jpg"), ("fake", ".jpg"), ("masks", ".png")):
    assert {p.stem for p in (out / sub).iterdir()} == stems
    assert all(p.suffix == suffix for p in (out / sub).iterdir())
  for stem in stems:
    mask = np.asarray(Image.open(out / "masks" / f"{stem}.png")) > 127
    assert mask.shape == (150, 200) and 0.005 < mask.mean() < 0.35
    fake = np.asarray(Image.open(out / "fake" / f"{stem}.jpg")).astype(int)
    real = np.asarray(Image.open(out / "real" / f"{stem}.jpg")).astype(int)
    # Both went through one JPEG each: outside the mask they differ by compression only.
    inside = np.abs(fake - real).mean(-1)[mask].mean()
    outside = np.abs(fake - real).mean(-1)[~mask].mean()
    assert inside > 2 * outside, stem
  source = forensics.load_benchmark("folder", out, data_dir=tmp_path / "tfds")
  assert len(source) == 8


def test_exemplar_fill_copies_the_best_matching_shift():
  module = script("make_forgery_folder")
  stripes = np.tile((np.arange(64) // 4 % 2 * 200)[None, :, None], (64, 1, 3)).astype(np.uint8)
  region = np.zeros((64, 64), bool)
  region[20:30, 20:30] = True
  hidden = stripes.copy()
  hidden[region] = 0
  filled = module.exemplar_fill(np.random.default_rng(0), hidden, region)
  # Vertical stripes repeat every 8 columns: the best shift restores them exactly.
  np.testing.assert_array_equal(filled, stripes)
