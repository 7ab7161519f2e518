"""RepMix task: the mixed batch, one real training step through the trainer (with mixing and
without), and the official evaluation on the zoo's test copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from provjax.config import load_config
from provjax.data import genzoo
from provjax.data.synthetic import prepared_source
from provjax.tasks import repmix as repmix_task

from conftest import quick_zoo

ROOT = Path(__file__).resolve().parents[1]
QUICK = f"{ROOT}/configs/repmix/repmix.py:tiny,quick"


def test_config_keeps_the_official_defaults():
  c = load_config(f"{ROOT}/configs/repmix/repmix.py:r50", [])
  assert (c.mix.samples, c.mix.beta, c.mix.level) == (2, 0.4, 5)
  assert (c.optimizer.name, c.optimizer.lr, c.optimizer.weight_decay) == ("adam", 1e-4, 5e-4)
  assert (c.optimizer.schedule, c.optimizer.gamma, c.train.batch_size) == ("exponential", 0.85, 32)
  assert c.data.crop == 224 and c.data.corruption_p == 0.95
  nomix = load_config(f"{ROOT}/configs/repmix/repmix.py:tiny,nomix,level=3", [])
  assert nomix.mix.samples == 1 and nomix.mix.level == 3


def test_a_sample_pairs_a_record_with_a_partner_and_beta_weights(genzoo_data):
  config = load_config(QUICK, [f"data.data_dir={genzoo_data}"])
  source = prepared_source(genzoo.builder(genzoo_data, per_class=quick_zoo()), "train")
  rng = np.random.default_rng(0)
  weights = []
  for i in range(20):
    s = repmix_task.make_sample(source[i % len(source)], rng, source=source, config=config)
    assert s["images"].shape == (2, 56, 56, 3) and s["images"].dtype == np.uint8
    assert s["labels"][0] == int(source[i % len(source)]["label"])
    np.testing.assert_allclose(s["mix"].sum(), 1.0, rtol=1e-6)
    weights.append(s["mix"][0])
  # Beta(0.4, 0.4) is U-shaped: most weights near 0 or 1.
  assert np.mean((np.array(weights) < 0.2) | (np.array(weights) > 0.8)) > 0.4
  config.mix.samples = 1
  s = repmix_task.make_sample(source[0], rng, source=source, config=config)
  assert s["images"].shape == (1, 56, 56, 3) and s["mix"].tolist() == [1.0]


def _train_quick(workdir, data_dir, flags=""):
  from provjax.train.trainer import train

  config = load_config(QUICK + flags, [f"data.data_dir={data_dir}"])
  return train(config, workdir, progress=False)


@pytest.mark.slow
def test_one_training_step_with_mixing(tmp_path, genzoo_data):
  result = _train_quick(tmp_path / "w", genzoo_data)
  assert result.step == 2 and np.isfinite(result.metrics["loss"]) and result.metrics["loss"] > 0
  assert 0 <= result.metrics["soft_acc"] <= 1


@pytest.mark.slow
def test_one_training_step_without_mixing(tmp_path, genzoo_data):
  result = _train_quick(tmp_path / "w", genzoo_data, ",nomix")
  assert result.step == 2 and np.isfinite(result.metrics["loss"])


def test_preprocess_takes_any_image_to_the_model_crop():
  rng = np.random.default_rng(0)
  for shape in ((30, 200, 3), (640, 480, 3), (64, 64, 3)):
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    assert repmix_task.preprocess(image, resize=64, crop=56).shape == (56, 56, 3)
  image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
  np.testing.assert_array_equal(
      repmix_task.preprocess(image, resize=64, crop=56), image[4:60, 4:60]
  )
