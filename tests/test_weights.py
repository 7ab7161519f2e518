"""Released weights: atomic export, sha256 manifest, loads that refuse corrupted files."""

from __future__ import annotations

import json

from flax import nnx
import jax
import numpy as np
import pytest

import provjax
from provjax import cards, weights


@pytest.fixture()
def ckpt_root(tmp_path, monkeypatch):
  monkeypatch.setenv("PROVJAX_CHECKPOINTS", str(tmp_path))
  return tmp_path


def _export(seed: int = 0):
  model = provjax.create_model("simprov.tiny", seed=seed)
  card = cards.Card(
      name="simprov.t",
      summary="A test export.",
      arch="simprov.tiny",
      config_spec="-",
      config={},
      steps=0,
      data="none",
      metrics={"held-back": {"x": 0.5}},
  )
  folder = weights.export(model, "simprov.t", arch="simprov.tiny", card=card)
  return model, folder


def _leaves(model) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model))]


def test_round_trip_is_bit_exact_and_manifest_lists_every_file(ckpt_root):
  model, folder = _export()
  loaded = weights.load("simprov.t")
  for a, b in zip(_leaves(model), _leaves(loaded), strict=True):
    np.testing.assert_array_equal(a, b)

  listed = json.loads((folder / weights.MANIFEST).read_text())["files"]
  on_disk = {
      p.relative_to(folder).as_posix()
      for p in folder.rglob("*")
      if p.is_file() and p.name != weights.MANIFEST
  }
  assert set(listed) == on_disk and any(name.startswith("weights/") for name in on_disk)
  card = (folder / "model_card.md").read_bytes()
  assert listed["model_card.md"]["size"] == len(card) and b"A test export." in card
  assert "metrics.json" in listed


def test_a_flipped_byte_names_the_corrupted_file(ckpt_root):
  _, folder = _export()
  # The largest file holds the parameter values: corrupting it is the case
  # Orbax itself might not notice.
  victim = max(
      (p for p in (folder / "weights").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
  )
  data = bytearray(victim.read_bytes())
  data[len(data) // 2] ^= 0xFF
  victim.write_bytes(bytes(data))
  with pytest.raises(weights.CorruptWeightsError, match="sha256 mismatch") as e:
    weights.load("simprov.t")
  assert str(victim) in str(e.value)


def test_a_missing_file_or_manifest_is_named(ckpt_root):
  _, folder = _export()
  (folder / "model_card.md").unlink()
  with pytest.raises(weights.CorruptWeightsError, match="model_card.md: missing"):
    weights.load("simprov.t")
  (folder / weights.MANIFEST).unlink()
  with pytest.raises(ValueError, match="manifest.json: missing"):
    weights.load("simprov.t")


def test_reexport_replaces_the_folder_whole(ckpt_root):
  _export(seed=0)
  model, folder = _export(seed=1)
  assert sorted(p.name for p in ckpt_root.iterdir()) == ["simprov.t"]  # no staging or backup
  weights.verify(folder)
  for a, b in zip(_leaves(model), _leaves(weights.load("simprov.t")), strict=True):
    np.testing.assert_array_equal(a, b)
  assert weights.released() == ["simprov.t"]


def test_a_failed_export_keeps_the_old_release(ckpt_root, monkeypatch):
  _, folder = _export(seed=0)
  before = (folder / weights.MANIFEST).read_text()

  def broken(_):
    raise OSError("disk full")

  monkeypatch.setattr(weights, "write_manifest", broken)
  with pytest.raises(OSError, match="disk full"):
    _export(seed=1)
  assert sorted(p.name for p in ckpt_root.iterdir()) == ["simprov.t"]
  assert (folder / weights.MANIFEST).read_text() == before
  weights.load("simprov.t")
