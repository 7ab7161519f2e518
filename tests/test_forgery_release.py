"""The robustness sweep and the TruFor release (card figures measured, then read back)."""

import json

import numpy as np
import pytest

import provjax
from provjax import cards, weights
from provjax.config import load_config
from provjax.data import forgery
from provjax.forgery import release, robustness
from provjax.models import ela
from provjax.forgery.detect import Detector
from provjax.metrics import forgery as forgery_metrics
from provjax.train.trainer import train

ROW_KEYS = {"perturbation", "level", "auc", "bacc", "f1_best", "f1_fixed"}


@pytest.fixture(scope="module")
def samples():
  """12 test-split forgeries at 64 px: 6 authentic, 2 of each edit kind."""
  return [robustness.decode(r) for r in forgery.generate_records("test", 12, 64)]


def test_sweep_rows_are_complete_and_finite(samples):
  records = list(forgery.generate_records("test", 12, 64))  # the agreed record dicts
  rows = robustness.sweep(ela.ela, records)
  expected = [(p, level) for p, levels in robustness.PERTURBATIONS.items() for level in levels]
  assert [(r["perturbation"], r["level"]) for r in rows] == expected
  for row in rows:
    assert set(row) == ROW_KEYS
    assert all(0.0 <= row[k] <= 1.0 for k in ROW_KEYS - {"perturbation", "level"}), row
  assert robustness.sweep(ela.ela, samples) == rows  # Samples and records alike, deterministic


def test_perturbations_change_the_image_and_carry_the_mask(samples):
  forged = next(s for s in samples if s.label)
  rng = np.random.default_rng(0)
  small = robustness.perturb(forged, "resize", 0.5, rng)
  h, w = forged.mask.shape
  assert small.image.shape == (h // 2, w // 2, 3) and small.mask.shape == (h // 2, w // 2)
  # Nearest neighbours: each output pixel takes the mask of a source pixel it covers.
  assert np.array_equal(small.mask, forged.mask[1::2, 1::2])
  for name, level in (("jpeg", 50), ("blur", 2.0), ("noise", 7.0)):
    out = robustness.perturb(forged, name, level, rng)
    assert out.image.shape == forged.image.shape and not np.array_equal(out.image, forged.image)
    assert np.array_equal(out.mask, forged.mask) and out.label == forged.label
  with pytest.raises(ValueError, match="unknown perturbation"):
    robustness.perturb(forged, "rotate", 1, rng)


def test_summarize_scores_each_kind_against_all_authentic_images(samples):
  def oracle(image):  # the ground truth of the sample this image belongs to
    s = next(s for s in samples if s.image is image)
    return s.mask.astype(np.float32), float(s.label)

  by_kind = robustness.summarize(robustness.predict_all(oracle, samples), samples)
  assert list(by_kind) == ["splice", "copy_move", "removal", "all"]
  for kind, fig in by_kind.items():
    assert fig["images"] == (12 if kind == "all" else 8) and fig["forged"] == fig["images"] - 6
    assert fig["auc"] == 1.0 and fig["bacc"] == 1.0
    # A region thinner than the 15-pixel erosion has no forged pixel left that counts, so
    # even the ground truth does not score 1 there: the mean is over this kind's images only.
    mine = [s.mask for s in samples if s.label and kind in ("all", s.kind)]
    assert fig["f1_best"] == pytest.approx(np.mean([forgery_metrics.f1_best(m, m) for m in mine]))


@pytest.fixture(scope="module")
def ph3_workdir(tmp_path_factory):
  """Two real phase-3 steps of the quick micro config from scratch (no phase-2 dir)."""
  root = tmp_path_factory.mktemp("trufor")
  config = load_config(
      "configs/trufor/ph3.py:tiny,quick", ["init_from=''", f"data.data_dir='{root / 'tfds'}'"]
  )
  train(config, root / "ph3", progress=False)
  return root / "ph3"


def _allowed(folder) -> set[str]:
  """The figures a card may print: those of its metrics.json and config.json (test_cards)."""
  sources = [(folder / f).read_text() for f in ("metrics.json", "config.json")]
  allowed = set().union(*(cards.numbers(s) for s in sources))
  measured = json.loads(sources[0])
  values = [r["value"] for r in measured["rows"]]
  values += [v for line in measured["training_log"] for v in line.values()]
  allowed |= {n for v in values if isinstance(v, float) for n in cards.numbers(cards.fmt(v))}
  for entry in json.loads(sources[1])["train_config"].values():
    allowed |= cards.numbers(json.dumps(entry))
  return allowed | cards.numbers(folder.name)


@pytest.mark.slow  # trains two phase-3 steps, then measures a release (about a minute)
def test_release_card_figures_are_measured(ph3_workdir, tmp_path, monkeypatch):
  monkeypatch.setenv("PROVJAX_CHECKPOINTS", str(tmp_path))
  out = release.release(
      ph3_workdir, tag="test-v0", num_images=6, perturbations={"jpeg": (50,), "noise": (7.0,)}
  )
  folder = weights.root() / "trufor.test-v0"
  assert out["name"] == "trufor.test-v0" and weights.released() == ["trufor.test-v0"]
  text = (folder / "model_card.md").read_text()
  assert cards.numbers(text) <= _allowed(folder), sorted(cards.numbers(text) - _allowed(folder))

  config = json.loads((folder / "config.json").read_text())
  assert config["arch"] == "trufor.tiny" and config["preprocessing"]["scale"] == 1 / 256
  rows = {
      (r["section"], r["metric"]): r["value"]
      for r in json.loads((folder / "metrics.json").read_text())["rows"]
  }

  # The released weights, loaded back, reproduce the card's figures on the same test images.
  samples = release.test_samples(release.snapshot.read(ph3_workdir), 6)
  detector = Detector(provjax.load("trufor.test-v0"))
  preds = [detector(s.image) for s in samples]
  labels = [s.label for s in samples]
  auc = forgery_metrics.auc([p.score for p in preds], labels)
  assert rows[("TruFor, all edit kinds", "image AUC")] == pytest.approx(auc)
  assert rows[("TruFor: per edit kind", "all/image AUC")] == pytest.approx(auc)
  ela_auc = forgery_metrics.auc([ela.ela(s.image)[1] for s in samples], labels)
  assert rows[("ELA reference, all edit kinds (same images)", "image AUC")] == pytest.approx(
      ela_auc
  )
  for detector_name in ("TruFor", "ELA reference"):
    for setting in ("none", "jpeg 50", "noise 7.0"):
      assert f"{setting}/pixel F1 best" in {
          m for s, m in rows if s == f"{detector_name}: robustness"
      }
  assert rows[("Training phases", "3 confidence + detection/steps")] == 2
  assert "3 confidence + detection | trufor_conf | scratch | 2 |" in text


def test_phases_say_what_they_started_from():
  assert release.started_from("") == "scratch"
  assert release.started_from("runs/trufor_ph2_tiny") == "trufor_ph2_tiny"
  entry = {"source": "trufor.synth-v1", "from": "dncnn", "to": "model/dncnn"}
  assert release.started_from(entry) == "trufor.synth-v1 (dncnn)"
  assert release.started_from([entry, "runs/np:dncnn"]) == "trufor.synth-v1 (dncnn), np (dncnn)"
