"""The blue team of SafePaint's red-team loop: fills written as forgeries, TruFor trained on them
(provjax.inpainting.fills, the forensics `folder` builder, `config.data.folder`)."""

from __future__ import annotations

from pathlib import Path

from flax import nnx
import jax
import numpy as np
import pytest

from provjax.config import load_config
from provjax.data import forensics, forgery, photos
from provjax.data.images import encode_png, read_image
from provjax.inpainting import fills
from provjax.tasks import trufor_loc
from provjax.transforms.inpaint import inpaint

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64


def _triples(count: int = 4):
  """(name, procedural image, rectangular hole of its own place and size)."""
  out = []
  for i in range(count):
    rng = np.random.default_rng(i)
    hole = np.zeros((SIZE, SIZE), bool)
    top, left = rng.integers(0, SIZE // 2, 2)
    hole[top : top + 12 + 4 * i, left : left + 20] = True
    out.append((f"fill{i}", photos.procedural_image(rng, SIZE), hole))
  return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("fills")
  counts = fills.write_fill_folder(_triples(), inpaint, root)
  return root, counts


def _config(tmp_path, folder, **data):
  """ph2 `:tiny,quick` on `folder`, whole un-augmented images as crops (64 px, no scale/JPEG)."""
  config = load_config(
      f"{ROOT}/configs/trufor/ph2.py:tiny,quick",
      [f"data.data_dir={tmp_path / 'tfds'}", f"data.folder={folder}"],
  )
  config.data.update(crop=SIZE, num_threads=1, **data)
  config.data.aug.update(scale_p=0.0, jpeg_p=0.0)
  config.train.update(batch_size=4, steps=1, ckpt_every=1)
  return config


def test_fill_folder_holds_fills_holes_and_originals(folder):
  root, counts = folder
  assert counts == {"fake": 4, "masks": 4, "real": 4}
  for name, image, hole in _triples():
    fake = read_image(root / "fake" / f"{name}.png")
    np.testing.assert_array_equal(fake, inpaint(image, hole))
    np.testing.assert_array_equal(fake[~hole], image[~hole])
    assert not np.array_equal(fake[hole], image[hole])
    np.testing.assert_array_equal(read_image(root / "masks" / f"{name}.png")[..., 0], hole * 255)
    np.testing.assert_array_equal(read_image(root / "real" / f"{name}.png"), image)
  assert not list(root.rglob("*.tmp"))


def test_fill_folder_rejects_bad_triples_and_keeps_the_fill_exact(tmp_path):
  name, image, hole = _triples(1)[0]
  with pytest.raises(ValueError, match="empty"):
    fills.write_fill_folder([(name, image, np.zeros_like(hole))], inpaint, tmp_path)
  with pytest.raises(ValueError, match="plain file stem"):
    fills.write_fill_folder([("../x", image, hole)], inpaint, tmp_path)
  with pytest.raises(ValueError, match="two fills"):
    fills.write_fill_folder([(name, image, hole)] * 2, inpaint, tmp_path)
  # A fill that repaints everything still changes only the hole, so the mask stays exact.
  counts = fills.write_fill_folder(
      [(name, image, hole)], lambda im, h: 255 - im, tmp_path / "out", authentic=False
  )
  assert counts == {"fake": 1, "masks": 1, "real": 0} and not (tmp_path / "out" / "real").exists()
  fake = read_image(tmp_path / "out" / "fake" / f"{name}.png")
  np.testing.assert_array_equal(fake, np.where(hole[..., None], 255 - image, image))


def test_folder_builder_reads_only_the_generic_layout(tmp_path, folder):
  source = forensics.load_benchmark("folder", folder[0], data_dir=tmp_path / "tfds")
  labels = trufor_loc.record_labels(source)
  assert labels.tolist() == [1, 1, 1, 1, 0, 0, 0, 0]  # fake/ then real/, sorted
  casia = tmp_path / "casia" / "Tp"
  casia.mkdir(parents=True)
  (casia / "x.png").write_bytes((folder[0] / "fake" / "fill0.png").read_bytes())
  with pytest.raises(ValueError, match="no images"):
    forensics.load_benchmark("folder", casia.parent, data_dir=tmp_path / "tfds")


def _identify(batch, triples):
  """Per crop: ("fake" | "real", its triple's index), or None for a crop not from the folder."""
  out = []
  for image in batch["image"]:
    match = None
    for i, (_, original, hole) in enumerate(triples):
      if np.array_equal(image, original):
        match = ("real", i)
      elif np.array_equal(image, inpaint(original, hole)):
        match = ("fake", i)
    out.append(match)
  return out


def test_training_on_the_folder_alone_is_balanced_exact_and_resumable(tmp_path, folder):
  config = _config(tmp_path, folder[0])
  triples = _triples()
  batches = trufor_loc.train_data(config)
  seen = []
  for _ in range(4):
    batch = next(batches)
    found = _identify(batch, triples)
    assert sorted(kind for kind, _ in found) == ["fake", "fake", "real", "real"]
    for (kind, i), label in zip(found, batch["label"]):
      expected = triples[i][2] if kind == "fake" else np.zeros((SIZE, SIZE), bool)
      np.testing.assert_array_equal(label, expected.astype(np.int32))
    seen += found
  assert {i for _, i in seen} == set(range(4))  # every fill and original comes round
  resumed = next(trufor_loc.train_data(config, start_step=3))
  np.testing.assert_array_equal(resumed["image"], batch["image"])
  np.testing.assert_array_equal(resumed["label"], batch["label"])


def _synthetic_split(count: int = 12) -> list[dict]:
  """A stand-in for the synthetic builder's train split: its record format and index rule."""
  records = []
  for i in range(count):
    mask = np.zeros((SIZE, SIZE), np.uint8)
    if forgery.kind_of(i) != "authentic":
      mask[8:40, 16:48] = 255
    image = photos.procedural_image(np.random.default_rng(100 + i), SIZE)
    records.append({"image": encode_png(image), "mask": encode_png(mask), "name": b"synthetic"})
  return records


def test_folder_fraction_mixes_in_the_synthetic_split(tmp_path, folder, monkeypatch):
  monkeypatch.setattr(forgery, "source_from_config", lambda data, split: _synthetic_split())
  config = _config(tmp_path, folder[0], folder_fraction=0.5)
  batches = trufor_loc.train_data(config)
  for _ in range(3):
    batch = next(batches)
    found = _identify(batch, _triples())
    assert sorted(m[0] for m in found if m) == ["fake", "real"]  # half from the folder
    forged = [bool((label == 1).any()) for label in batch["label"]]
    assert sum(forged) == 2  # and half forged overall


def test_a_class_the_fraction_needs_must_be_in_the_folder(tmp_path):
  fills.write_fill_folder(_triples(2), inpaint, tmp_path / "fakes_only", authentic=False)
  with pytest.raises(ValueError, match="no authentic records"):
    trufor_loc.train_data(_config(tmp_path, tmp_path / "fakes_only"))
  with pytest.raises(ValueError, match="folder_fraction"):
    trufor_loc.train_data(_config(tmp_path, tmp_path / "fakes_only", folder_fraction=0.0))


@pytest.fixture
def quick_compiles():
  """XLA's optimisation passes dominate one step's cost on 2 cores; the check does not need them."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)


def _standin(config):
  """The config's model with random values: its structure traced, no initialiser compiled."""
  graphdef, state = nnx.split(nnx.eval_shape(lambda: trufor_loc.create_model(config, nnx.Rngs(0))))
  rng = np.random.default_rng(0)

  def value(leaf, shape):
    if leaf == "kernel":
      return rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
    return (0.0 if leaf in ("bias", "mean") else 1.0) + 0.1 * rng.standard_normal(shape)

  flat = [
      (path, var.replace(value(path[-1], var.shape).astype(np.float32)))
      for path, var in nnx.to_flat_state(state)
  ]
  return nnx.merge(graphdef, nnx.from_flat_state(flat))


def _pure(module) -> dict:
  return jax.tree.map(np.array, nnx.to_pure_dict(nnx.state(module)))


@pytest.mark.slow  # compiling the phase-2 TruFor step (~15 s on 2 cores)
def test_one_phase2_step_on_the_fills(tmp_path, folder, quick_compiles):
  config = _config(tmp_path, folder[0])
  batch = next(trufor_loc.train_data(config))
  model = _standin(config)
  before = {part: _pure(getattr(model, part)) for part in model.PARTS}
  opts = {name: optim.make(model) for name, optim in trufor_loc.optimizers(config).items()}
  step = nnx.jit(lambda m, o, b, r: trufor_loc.train_step({"model": m}, o, b, r, config))
  metrics = jax.device_get(step(model, opts, batch, jax.random.key(0)))
  assert np.isfinite(metrics["loss"]) and metrics["grad_norm"] > 0
  assert {"ce", "dice"} <= set(metrics)
  moved = {
      part: any(
          not np.array_equal(a, b)
          for a, b in zip(
              jax.tree.leaves(before[part]), jax.tree.leaves(_pure(getattr(model, part)))
          )
      )
      for part in model.PARTS
  }
  assert moved == {
      "dncnn": False,
      "backbone": True,
      "decode_head": True,
      "decode_head_conf": False,
      "detection": False,
  }
