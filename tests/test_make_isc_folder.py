"""scripts/make_isc_folder.py: an ISC-style benchmark folder from a folder of photographs."""

from __future__ import annotations

import csv

import numpy as np
from PIL import Image
import skimage.data

from conftest import script


def test_blank_files_are_left_out_and_every_query_is_listed(tmp_path, capsys):
  photos = tmp_path / "photos"
  photos.mkdir()
  for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry"):
    image = Image.fromarray(getattr(skimage.data, name)()).resize((160, 120))
    image.save(photos / f"{name}.png")
  # A wallpaper pattern kept in the alpha channel: white over white once decoded.
  pattern = np.zeros((120, 160, 4), np.uint8)
  pattern[..., :3] = 255
  pattern[::8, :, 3] = 200
  Image.fromarray(pattern, "RGBA").save(photos / "stripes.png")
  make = script("make_isc_folder").make
  counts = make(str(photos), str(tmp_path / "isc"), seed=0, copies=2)
  assert "stripes.png: blank" in capsys.readouterr().out
  assert counts == {"references": 2, "queries": 8, "background": 2}  # 6 photos: 2 / 2 / 2
  with open(tmp_path / "isc/gt.csv") as f:
    gt = list(csv.DictReader(f))
  assert len(gt) == 8 and sum(1 for row in gt if row["reference_id"]) == 4
  assert sorted(p.stem for p in (tmp_path / "isc/queries").iterdir()) == sorted(
      row["query_id"] for row in gt
  )
