"""The copy-detection tasks: the configs' official settings, a training pair with its PixTrace
overlaps, one real training step of each task through the trainer, and the held-back figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from provjax import transforms
from provjax.config import load_config
from provjax.data.images import read_image
from provjax.tasks import copy_data
from provjax.tasks import copynce_descriptor as descriptor_task
from provjax.tasks import copynce_matcher as matcher_task

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {name: f"{ROOT}/configs/copynce/{name}.py" for name in ("descriptor", "matcher", "sscd")}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _quick(name: str, data_dir: str):
  return load_config(CONFIGS[name] + ":tiny,quick", [f"data.data_dir={data_dir}"])


def test_paper_configs_keep_the_official_settings():
  d = load_config(CONFIGS["descriptor"] + ":vits16", [])
  assert d.model.name == "copynce.vits16" and d.model.freeze_patch_embed
  assert (d.loss.infonce, d.loss.copynce, d.loss.koleo) == (1.0, 5.0, 5.0)
  assert (d.loss.gamma, d.loss.patch_scale, d.loss.log_scale_init) == (3.0, 16.0, 3.2)
  assert (d.optimizer.name, d.optimizer.weight_decay, d.optimizer.clip_norm) == ("adamw", 0.04, 3.0)
  assert d.optimizer.lr == pytest.approx(6e-4 * (d.train.batch_size / 1024) ** 0.5)
  assert (d.data.image_size, d.data.patch) == (224, 16)
  m = load_config(CONFIGS["matcher"] + ":vits16", [])
  assert (m.loss.copynce, m.loss.gamma, m.data.positive_rate) == (3.0, 1.0, 0.3)
  s = load_config(CONFIGS["sscd"] + ":r50", [])
  assert s.model.name == "sscd.r50" and s.loss.temperature == 0.05


def test_a_pair_carries_exact_overlaps(data_dir):
  config = _quick("descriptor", data_dir)
  source = copy_data.source(config, "train")
  donors = copy_data.donors(config)
  rng = np.random.default_rng(0)
  for i in range(6):
    pair = descriptor_task.make_pair(source[i % len(source)], rng, donors=donors, size=64, patch=8)
    assert pair["query"].shape == pair["reference"].shape == (64, 64, 3)
    assert pair["overlap_qr"].shape == pair["overlap_rq"].shape == (64, 65)
    np.testing.assert_allclose(pair["overlap_qr"].sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(pair["overlap_rq"].sum(1), 1.0, rtol=1e-5)
  # A non-copy of the matcher has no traced pixel: all mass in the dummy bin.
  rng = np.random.default_rng(3)
  kinds = [
      matcher_task.make_pair(
          source[0], rng, donors=donors, size=64, patch=8, positive_rate=0.5, references=source
      )
      for _ in range(12)
  ]
  negatives = [p for p in kinds if p["label"] == 0.0]
  assert negatives and all(np.all(p["overlap_qr"][:, -1] == 1.0) for p in negatives)
  assert any(p["label"] == 1.0 for p in kinds)


def test_matcher_non_copies_give_no_shortcut(data_dir):
  """A non-copy's reference is another train image made exactly as a copy's reference is
  (a reference from the overlays' donor pool, or resampled another way, tells the answer)."""
  config = _quick("matcher", data_dir)
  source = copy_data.source(config, "train")
  donors = copy_data.donors(config)
  clean = lambda i: matcher_task.make_pair(
      source[i],
      np.random.default_rng(0),
      donors=donors,
      size=64,
      patch=8,
      positive_rate=1.0,
      references=source,
  )["reference"]
  copy_refs = [clean(i).tobytes() for i in range(len(source))]
  rng = np.random.default_rng(5)
  for _ in range(8):
    pair = matcher_task.make_pair(
        source[0], rng, donors=donors, size=64, patch=8, positive_rate=0.0, references=source
    )
    ref = pair["reference"].tobytes()
    assert ref in copy_refs[1:]


def test_matcher_hard_negatives_are_near_references_of_other_sources(data_dir):
  """With fraction 1 every non-copy's reference is one of the record's nearest train records
  of another source by the released descriptor, made as a copy's reference is."""
  config = _quick("matcher", data_dir)
  assert config.data.hard_negatives.fraction == 0.5  # the paper's p
  config.data.hard_negatives.fraction = 1.0
  negative = matcher_task.hard_negatives(config)
  source = copy_data.source(config, "train")
  names = [bytes(source[i]["source"]) for i in range(len(source))]
  drawn = [negative(source[0], np.random.default_rng(s)) for s in range(6)]
  others = {i for i in range(len(source)) if names[i] != names[0]}
  images = {i: read_image(bytes(source[i]["image"])).tobytes() for i in others}
  assert all(im.tobytes() in images.values() for im in drawn)
  pair = matcher_task.make_pair(
      source[0],
      np.random.default_rng(0),
      donors=copy_data.donors(config),
      size=64,
      patch=8,
      positive_rate=0.0,
      references=source,
      negative=lambda record, rng: drawn[0],
  )
  made = transforms.to_size(transforms.identity(drawn[0]), 64).image
  np.testing.assert_array_equal(pair["reference"], made)
  config.data.hard_negatives.fraction = 0.0
  assert matcher_task.hard_negatives(config) is None


def _train(name, data_dir, workdir):
  from provjax.train.trainer import train

  return train(_quick(name, data_dir), workdir, progress=False)


@pytest.mark.slow  # a real descriptor training run (~25 s)
def test_descriptor_training_step_and_held_back_figures(data_dir, tmp_path):
  result = _train("descriptor", data_dir, tmp_path / "d")
  assert result.step == 2
  for key in ("loss", "infonce", "copynce", "koleo"):
    assert np.isfinite(result.metrics[key])
  assert result.metrics["scale"] == pytest.approx(np.exp(3.2), rel=0.05)  # learned, near init
  from provjax.train.evaluate import restore_models

  models, _ = restore_models(_quick("descriptor", data_dir), tmp_path / "d")
  figures = descriptor_task.evaluate(models, _quick("descriptor", data_dir))
  assert set(figures) == {"micro_ap", "recall_at_p90", "recall_at_rank1"}
  assert all(0.0 <= v <= 1.0 for v in figures.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["matcher", "sscd"])
def test_matcher_and_sscd_training_steps(name, data_dir, tmp_path):
  result = _train(name, data_dir, tmp_path / name)
  assert result.step == 2 and np.isfinite(result.metrics["loss"])
