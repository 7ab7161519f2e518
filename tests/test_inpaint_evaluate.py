"""`provjax.inpainting.evaluate` and `provjax eval inpainting`: quality per bin and TruFor's figures."""

import json

import numpy as np
from PIL import Image
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.metrics import roc_auc_score

import provjax
from provjax import cli, results, weights
from provjax.forgery.detect import Detector
from provjax.inpainting import evaluate
from provjax.inpainting.inpainter import Inpainter
from provjax.metrics import inpainting as quality_metrics
from test_detect import MICRO as TRUFOR_MICRO  # pylint: disable=g-bad-import-order
from test_detect import random_micro_trufor
from test_inpaint_cli import MICRO, random_safepaint

# test_detect's 64 x 80 and test_inpaint_cli's padded size: the suite compiles each model once.
HEIGHT, WIDTH = 64, 80
# Hole heights (full width): ratios 5 %, 15 %, 15 % and 34 %, three bins.
HOLE_ROWS = (3, 10, 10, 22)


def _pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
  pairs = []
  for n, rows in enumerate(HOLE_ROWS):
    base = 128 + 70 * np.sin(x / (4.0 + n))[..., None] * np.cos(y / 6.0)[..., None]
    image = np.clip(base + rng.normal(0, 8, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    hole = np.zeros((HEIGHT, WIDTH), bool)
    hole[20 : 20 + rows] = True
    pairs.append((f"p{n}", image, hole))
  return pairs


def identity(image, hole):
  """A "fill" that returns the original: a perfect inpainter."""
  del hole
  return image


@pytest.fixture(scope="module")
def released(tmp_path_factory):
  """Random micro SafePaint and TruFor, released as `*.test` in a temp checkpoints folder."""
  root = tmp_path_factory.mktemp("checkpoints")
  mp = pytest.MonkeyPatch()
  mp.setenv("PROVJAX_CHECKPOINTS", str(root))
  try:
    weights.export(
        random_safepaint(**MICRO), "safepaint.test", arch="safepaint.tiny", overrides=MICRO
    )
    weights.export(random_micro_trufor(), "trufor.test", arch="trufor.tiny", overrides=TRUFOR_MICRO)
    yield root
  finally:
    mp.undo()


@pytest.fixture(scope="module")
def table(released):
  del released
  detector = Detector(provjax.load("trufor.test"))
  methods = {
      "safepaint.test": Inpainter(provjax.load("safepaint.test")),
      **evaluate.BASELINES,
      "identity": identity,
  }
  return evaluate.evaluate(methods, _pairs(), detector), detector


def test_table_has_a_row_per_method_and_the_bins_of_the_holes(table):
  rows, _ = table
  assert list(rows) == ["safepaint.test", "push-pull (classical)", "identity"]
  for row in rows.values():
    assert row["images"] == len(HOLE_ROWS)
    assert list(row["per_bin"]) == ["1-10%", "10-20%", "30-40%"]
    assert [cell["images"] for cell in row["per_bin"].values()] == [1, 2, 1]
    for key in evaluate.FORENSIC:
      assert 0.0 <= row[key] <= 1.0, key
    assert 0.0 <= row["ssim"] <= 1.0


def test_quality_matches_scikit_image(table):
  rows, _ = table
  pairs = _pairs()
  filled = [evaluate.classical_fill(image, hole) for _, image, hole in pairs]
  psnrs = [peak_signal_noise_ratio(p[1], f, data_range=255) for p, f in zip(pairs, filled)]
  ssims = [
      structural_similarity(
          p[1],
          f,
          gaussian_weights=True,
          sigma=1.5,
          use_sample_covariance=False,
          data_range=255,
          channel_axis=-1,
      )
      for p, f in zip(pairs, filled)
  ]
  row = rows["push-pull (classical)"]
  assert row["psnr"] == pytest.approx(np.mean(psnrs))
  assert row["ssim"] == pytest.approx(np.mean(ssims), abs=1e-6)
  assert row["per_bin"]["10-20%"]["psnr"] == pytest.approx(np.mean(psnrs[1:3]))
  hole_psnrs = [
      peak_signal_noise_ratio(p[1][p[2]], f[p[2]], data_range=255) for p, f in zip(pairs, filled)
  ]
  assert row["psnr_hole"] == pytest.approx(np.mean(hole_psnrs))
  for name in ("safepaint.test", "push-pull (classical)"):
    # The whole image's MSE is the hole's times the hole ratio: its PSNR is the higher.
    assert np.isfinite(rows[name]["psnr"]) and rows[name]["psnr"] > rows[name]["psnr_hole"]


def test_a_perfect_fill_scores_inf_and_is_invisible_to_the_detector(table):
  rows, _ = table
  row = rows["identity"]
  assert row["psnr"] == np.inf and row["psnr_hole"] == np.inf and row["ssim"] == 1.0
  assert row["image_auc"] == 0.5  # filled images are the originals: every pair ties


def test_detector_figures_match_scikit_learn(table):
  rows, detector = table
  pairs = _pairs()
  authentic = [detector(image).score for _, image, _ in pairs]
  fills = [evaluate.classical_fill(image, hole) for _, image, hole in pairs]
  preds = [detector(f) for f in fills]
  row = rows["push-pull (classical)"]
  labels = [1] * len(preds) + [0] * len(authentic)
  assert row["image_auc"] == pytest.approx(
      roc_auc_score(labels, [p.score for p in preds] + authentic)
  )
  pixel = [roc_auc_score(h.ravel(), p.map.ravel()) for (_, _, h), p in zip(pairs, preds)]
  assert row["pixel_auc"] == pytest.approx(np.mean(pixel))


def test_markdown_names_every_method_and_which_way_is_better(table):
  rows, _ = table
  text = evaluate.markdown(rows, detector="trufor.test")
  assert "Anti-forensics against trufor.test (lower = stronger anti-forensics" in text
  assert "Quality (higher = better)" in text and "| 30-40% PSNR / SSIM |" in text
  for name in rows:
    assert text.count(f"| {name} |") == 2  # one quality row and one detector row
  assert "| identity | 4 | inf | 1.000 | inf |" in text


def test_outputs_are_merged_and_checked():
  pairs = _pairs()
  black = lambda image, hole: np.zeros_like(image)  # also blackens the outside of the hole
  (row,) = evaluate.evaluate({"black": black}, pairs).values()
  merged = [np.where(h[..., None], 0, im).astype(np.uint8) for _, im, h in pairs]
  psnrs = [peak_signal_noise_ratio(p[1], m, data_range=255) for p, m in zip(pairs, merged)]
  assert row["psnr"] == pytest.approx(np.mean(psnrs)) and "image_auc" not in row
  with pytest.raises(ValueError, match="black on p0"):
    evaluate.evaluate({"black": lambda image, hole: image.astype(np.float32)}, pairs)
  assert np.isnan(evaluate.hole_psnr(pairs[0][1], pairs[0][1], np.zeros_like(pairs[0][2])))
  assert quality_metrics.ratio_bin(pairs[1][2]) == 1


def test_eval_inpainting_command(released, tmp_path, capsys, results_dir):
  del released
  images, masks = tmp_path / "images", tmp_path / "masks"
  images.mkdir(), masks.mkdir()
  for name, image, hole in _pairs()[:3]:
    Image.fromarray(image).save(images / f"{name}.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(masks / f"{name}.png")
  Image.fromarray(_pairs()[3][1]).save(images / "nomask.png")  # skipped, named on stderr
  report = tmp_path / "report.json"
  argv = ["eval", "inpainting", "--images", str(images), "--masks", str(masks)]
  argv += ["--model", "safepaint.test", "--detector", "trufor.test", "--no-progress"]
  assert cli.main(argv + ["--out", str(report)]) == 1
  captured = capsys.readouterr()
  printed = json.loads(captured.out)
  assert "nomask.png" in captured.err
  assert printed == json.loads(report.read_text())
  assert printed["images"] == 3 and printed["skipped"] == 1
  assert list(printed["rows"]) == ["safepaint.test", "push-pull (classical)"]
  assert "lower = stronger anti-forensics" in printed["markdown"]
  # The same figures as results rows: one model per method, the detector named in the metric.
  rows = {(r["model"], r["tag"], r["metric"]): r["value"] for r in results.read(results_dir)}
  assert rows[("safepaint", "test", "psnr")] == pytest.approx(
      printed["rows"]["safepaint.test"]["psnr"]
  )
  auc = printed["rows"]["push-pull (classical)"]["image_auc"]
  assert rows[("push-pull", "classical", "trufor.test/image_auc")] == pytest.approx(auc)
  assert {r["split"] for r in results.read(results_dir)} == {"folder:images"}
  bad = ["eval", "inpainting", "--images", str(images), "--masks", str(masks)]
  assert cli.main(bad + ["--model", "safepaint.test", "--detector", "trufor.nope"]) == 2
  assert "trufor.nope" in capsys.readouterr().err
  assert cli.main(["eval", "inpainting", "--images", str(images)]) == 2
  assert "--masks" in capsys.readouterr().err
