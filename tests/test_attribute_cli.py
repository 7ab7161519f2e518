"""`provjax attribute` as a user runs it: JSON lines in order, bad files on their own line,
exit codes; and the released weights' floors on held-back data."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from provjax import weights
from provjax.config import load_config
from provjax.data import genzoo
from provjax.tasks import repmix as repmix_task

ROOT = Path(__file__).resolve().parents[1]
RELEASED = "repmix.synth-v1"


def _attribute(*args):
  return subprocess.run(
      [sys.executable, "-m", "provjax.cli", "attribute", *args, "--json", "--no-progress"],
      capture_output=True,
      text=True,
      timeout=600,
  )


def test_attribute_prints_one_line_per_image_and_reports_bad_files(tmp_path):
  from skimage import data

  Image.fromarray(data.coffee()).save(tmp_path / "coffee.jpg", quality=90)
  rng = genzoo.content_rng(0, "test", 2, 1, 0)
  fake = genzoo.generate(
      weights.load(genzoo.GENERATORS[0]), genzoo.draw_content(2, rng, 64, "test")[1][None], seed=0
  )[0]
  Image.fromarray(fake).save(tmp_path / "fake.png")
  (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
  (tmp_path / "gray.png").write_bytes((tmp_path / "fake.png").read_bytes())
  Image.open(tmp_path / "fake.png").convert("LA").save(tmp_path / "gray.png")
  files = [str(tmp_path / n) for n in ("coffee.jpg", "broken.jpg", "fake.png", "gray.png")]
  proc = _attribute(*files)
  assert proc.returncode == 1, proc.stderr[-2000:]
  lines = [json.loads(line) for line in proc.stdout.splitlines()]
  assert [r["path"] for r in lines] == files
  broken = lines[1]
  assert "broken.jpg" in broken["error"] and broken["source"] is None
  assert "broken.jpg" in proc.stderr
  classes = genzoo.class_names()
  for r in (lines[0], lines[2], lines[3]):
    assert r["error"] is None
    assert set(r["probabilities"]) == set(classes)
    np.testing.assert_allclose(sum(r["probabilities"].values()), 1.0, rtol=1e-4)
    assert r["p_real"] == r["probabilities"]["real"]
    assert (r["source"] == "real") == (not r["is_synthetic"])
  assert lines[0]["source"] == "real"  # a photograph from the test split's photos


def test_attribute_refuses_an_unknown_model_with_exit_2(tmp_path):
  Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
  proc = _attribute(str(tmp_path / "a.png"), "--model", "repmix.nope")
  assert proc.returncode == 2 and "repmix.nope" in proc.stderr


@pytest.fixture(scope="module")
def held_back(genzoo_data):
  """The released model on the quick zoo's held-back test copies (fresh records: none of them
  is in the release's training split), through the trainer's evaluation and the release's."""
  import provjax
  from provjax.attribution.release import measure

  config = load_config(
      f"{ROOT}/configs/repmix/repmix.py:tiny,quick", [f"data.data_dir={genzoo_data}"]
  )
  model = provjax.load(RELEASED)
  threshold = weights.read_config(RELEASED)["preprocessing"]["threshold"]
  return repmix_task.evaluate({"model": model}, config), measure(model, config, threshold)


def test_the_threshold_is_chosen_on_held_back_reals(genzoo_data):
  """calibrate() calls at most the target share of val reals synthetic, and never goes above 0.5."""
  import provjax
  from provjax.attribution.release import calibrate

  config = load_config(
      f"{ROOT}/configs/repmix/repmix.py:tiny,quick", [f"data.data_dir={genzoo_data}"]
  )
  cal = calibrate(provjax.load(RELEASED), config, target_fpr=0.1)
  assert 0.0 < cal["threshold"] <= 0.5
  assert cal["val reals called synthetic"] <= 0.1
  # Clean and corrupted copies of the real images of the 4 seen semantics.
  assert cal["val real images"] == 2 * genzoo.NUM_SEEN * config.data.per_class["val"]


def test_released_attribution_is_above_its_floors(held_back):
  """Floors below what the release measured on the whole test split (its card)."""
  evaluated, measured = held_back
  chance = 1 / len(genzoo.class_names())
  for split in repmix_task.EVAL_SPLITS:
    for key in ("det_acc", "attr_acc", "nmi", "seen/attr_acc", "unseen/attr_acc"):
      assert 0.0 <= evaluated[f"{split}/{key}"] <= 1.0
  clean = measured["clean"]["row"]
  assert clean["attr_acc"] == evaluated["test/attr_acc"]
  assert clean["attr_acc"] > ATTR_FLOOR > 3 * chance
  assert clean["det_acc"] > DET_FLOOR
  assert clean["real photos called synthetic"] <= REAL_PHOTO_FPR_CEILING
  assert measured["seen corruptions"]["row"]["attr_acc"] > SEEN_CORRUPTION_FLOOR


# repmix.synth-v1 measured on these 168 test images per copy: clean attribution 0.667,
# detection 0.911, no real photograph called synthetic, seen corruptions 0.369 (0.602, 0.927,
# 0 and 0.340 on the whole test split, its card). Chance is 1/7.
ATTR_FLOOR = 0.5
DET_FLOOR = 0.85
REAL_PHOTO_FPR_CEILING = 0.25  # at most one of the 4 test photographs
SEEN_CORRUPTION_FLOOR = 0.28
