"""Benchmark builders (provjax.data.forensics) on tiny generated folders in each layout."""

from __future__ import annotations

import numpy as np
from PIL import Image
import pytest

from provjax.data import forensics
from provjax.data.images import read_image

H, W = 12, 16


def _image(seed: int, size=(H, W)) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _mask(seed: int, size=(H, W)) -> np.ndarray:
  mask = np.zeros(size, bool)
  y, x = np.random.default_rng(seed).integers(0, 6, 2)
  mask[y : y + 5, x : x + 7] = True
  return mask


def _save(path, array, fmt=None, **kwargs):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path, format=fmt, **kwargs)


def _save_mask(path, mask, *, inverted=False):
  # Grey levels near the threshold check the binarisation at 128, not at 0 or 255.
  values = np.where(mask != inverted, 200, 60).astype(np.uint8)
  _save(path, values)


def _load(tmp_path, name, root):
  source = forensics.load_benchmark(name, root, data_dir=tmp_path / "tfds")
  return {bytes(source[i]["name"]).decode(): source[i] for i in range(len(source))}


def _check(record, path, mask, label, kind):
  """The record holds the file's bytes unchanged, the exact mask, the label and kind."""
  assert bytes(record["image"]) == path.read_bytes()
  image, decoded_mask, decoded_label = forensics.decode_record(record)
  np.testing.assert_array_equal(image, read_image(path))
  np.testing.assert_array_equal(decoded_mask, mask)
  assert decoded_mask.dtype == bool and image.dtype == np.uint8
  assert decoded_label == label == int(record["label"])
  assert bytes(record["kind"]) == kind


def test_generic_layout_round_trips_and_skips_bad_fakes(tmp_path, capfd):
  root = tmp_path / "generic"
  m0, m1 = _mask(0), _mask(1)
  _save(root / "fake" / "a.png", _image(0))
  _save_mask(root / "masks" / "a.png", m0)
  _save(root / "fake" / "b.jpg", _image(1), quality=70)
  _save_mask(root / "masks" / "b.bmp", m1)  # any image extension
  _save(root / "fake" / "orphan.png", _image(2))  # no mask
  _save(root / "fake" / "wrong.png", _image(3))
  _save_mask(root / "masks" / "wrong.png", _mask(3, (W, H)))  # transposed size
  _save(root / "real" / "c.tif", _image(4))
  records = _load(tmp_path, "columbia", root)  # any builder reads the generic layout
  assert sorted(records) == ["a.png", "b.jpg", "c.tif"]
  _check(records["a.png"], root / "fake" / "a.png", m0, 1, b"forged")
  _check(records["b.jpg"], root / "fake" / "b.jpg", m1, 1, b"forged")
  _check(records["c.tif"], root / "real" / "c.tif", np.zeros((H, W), bool), 0, b"authentic")
  err = capfd.readouterr().err.splitlines()
  assert sum("orphan.png" in line and "no mask" in line for line in err) == 1
  assert sum("wrong.png" in line and "12x16" in line for line in err) == 1


def test_casia_layout(tmp_path):
  root = tmp_path / "CASIA1"
  splice, copy_move = "Sp_D_CNN_A_ani0049_ani0084_0266", "Sp_S_NRN_A_cha0011_cha0011_0004"
  m0, m1 = _mask(5), _mask(6)
  _save(root / "Tp" / "Sp" / f"{splice}.jpg", _image(5), quality=90)
  _save(root / "Tp" / "CM" / f"{copy_move}.jpg", _image(6), quality=90)
  _save_mask(root / "Gt" / f"{splice}_gt.png", m0)  # folder names in any case
  _save_mask(root / "Gt" / f"{copy_move}_gt.png", m1)
  _save(root / "Au" / "Au_ani_0001.jpg", _image(7), quality=95)
  records = _load(tmp_path, "casia1", root)
  assert len(records) == 3
  _check(records[f"{splice}.jpg"], root / "Tp" / "Sp" / f"{splice}.jpg", m0, 1, b"splice")
  _check(records[f"{copy_move}.jpg"], root / "Tp" / "CM" / f"{copy_move}.jpg", m1, 1, b"copy_move")
  _check(
      records["Au_ani_0001.jpg"],
      root / "Au" / "Au_ani_0001.jpg",
      np.zeros((H, W), bool),
      0,
      b"authentic",
  )


def test_dso1_masks_are_inverted(tmp_path):
  root = tmp_path / "DSO1"
  m0 = _mask(8)
  _save(root / "images" / "splicing-01.png", _image(8))
  _save_mask(root / "masks" / "splicing-01.png", m0, inverted=True)  # black = spliced
  _save(root / "images" / "normal-01.png", _image(9))
  records = _load(tmp_path, "dso1", root)
  assert sorted(records) == ["normal-01.png", "splicing-01.png"]
  _check(records["splicing-01.png"], root / "images" / "splicing-01.png", m0, 1, b"splice")
  assert not forensics.decode_record(records["normal-01.png"])[1].any()


def test_own_layouts_pair_masks_by_their_naming_rules(tmp_path):
  columbia, coverage, cocoglide = tmp_path / "col", tmp_path / "cov", tmp_path / "glide"
  _save(columbia / "4cam_splc" / "canong3_nikond70_sub_01.tif", _image(10))
  edge = np.zeros((H, W, 3), np.uint8)
  edge[..., 0] = 255  # red: authentic part
  edge[_mask(10)] = (0, 255, 0)  # green: spliced part
  edge_path = columbia / "4cam_splc" / "edgemask" / "canong3_nikond70_sub_01_edgemask.jpg"
  _save(edge_path, edge, quality=100, subsampling=0)
  _save(columbia / "4cam_auth" / "canong3_02_sub_01.tif", _image(11))
  _save(coverage / "image" / "1t.tif", _image(12))
  _save_mask(coverage / "mask" / "1forged.tif", _mask(12))
  _save_mask(coverage / "mask" / "1copy.tif", _mask(13))
  _save(coverage / "image" / "1.tif", _image(13))
  _save(cocoglide / "fake" / "glide_inpainting_val2017_139871_up.png", _image(14))
  _save_mask(cocoglide / "mask" / "airplane_139871_mask.png", _mask(14))
  _save(cocoglide / "real" / "airplane_139871.png", _image(15))
  for name, root, fake, kind, seed in [
      ("columbia", columbia, "canong3_nikond70_sub_01.tif", b"splice", 10),
      ("coverage", coverage, "1t.tif", b"copy_move", 12),
      ("cocoglide", cocoglide, "glide_inpainting_val2017_139871_up.png", b"inpainting", 14),
  ]:
    # The layouts alone, without preparing: one fake (mask paired) and one real each.
    b = forensics.builder(name, root, data_dir=tmp_path / "tfds")
    entries = b.entries(root)
    assert len(entries) == 2 and sum(e.label for e in entries) == 1
    record = forensics.make_record(next(e for e in entries if e.label))
    assert bytes(record["name"]) == fake.encode() and bytes(record["kind"]) == kind
    np.testing.assert_array_equal(forensics.decode_record(record)[1], _mask(seed))


def test_unknown_name_and_empty_folder(tmp_path):
  with pytest.raises(ValueError, match="unknown benchmark"):
    forensics.load_benchmark("casia3", tmp_path, data_dir=tmp_path / "tfds")
  (tmp_path / "empty" / "other").mkdir(parents=True)
  with pytest.raises(ValueError, match="no images"):
    forensics.load_benchmark("nist16", tmp_path / "empty", data_dir=tmp_path / "tfds")


def test_mask_rules():
  rgb = np.array([[[127, 127, 127], [128, 128, 128], [255, 0, 0], [0, 200, 0]]], np.uint8)
  assert forensics.MASK_RULES["white"](rgb).tolist() == [[False, True, False, False]]
  assert forensics.MASK_RULES["black"](rgb).tolist() == [[True, False, True, True]]
  assert forensics.MASK_RULES["green"](rgb).tolist() == [[False, True, False, True]]
