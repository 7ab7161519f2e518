"""TruFor's three training phases through the real trainer (`,quick` configs, one step each):
what trains, what stays bit-identical, phase chaining, and the data each phase sees."""

from __future__ import annotations

from pathlib import Path

from flax import nnx
import jax
import ml_collections
import numpy as np
import optax
import pytest

from provjax import tasks
from provjax.config import load_config
from provjax.data import forgery
from provjax.data.images import encode_png
from provjax.models import ela
from provjax.metrics import forgery as forgery_metrics
from provjax.tasks import noiseprint as np_task
from provjax.tasks import trufor_conf, trufor_loc
from provjax.train import trainer
from provjax.train.evaluate import restore_model

ROOT = Path(__file__).resolve().parents[1]


def _config(name: str, data_dir: Path, *flags: str, **overrides):
  spec = ",".join((f"{ROOT}/configs/trufor/{name}.py:tiny", "quick", *flags))
  config = load_config(spec, [f"data.data_dir={data_dir}"])
  config.train.update(steps=1, ckpt_every=1)
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def _start_and_step(config, workdir: Path):
  """(the models a run starts from, the result of its one step), both through the trainer."""
  config.train.steps = 0  # the starting state, built as the trainer builds it
  start = trainer.train(config, workdir.with_name(workdir.name + "_start"), progress=False)
  config.train.steps = 1
  return start.models, trainer.train(config, workdir, progress=False)


def _pure(module) -> dict:
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(module)))


def _equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _parts(model) -> dict:
  return {part: _pure(getattr(model, part)) for part in model.PARTS}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The chain, one step each: phase 1, phase 2 from its extractor, phase 3 from phase 2."""
  root = tmp_path_factory.mktemp("trufor")
  ph1 = _config("noiseprint", root / "tfds")
  ph1_start, ph1_result = _start_and_step(ph1, root / "np")
  ph2 = _config("ph2", root / "tfds", f"np={root / 'np'}")
  ph2_start, ph2_result = _start_and_step(ph2, root / "ph2")
  ph3 = _config("ph3", root / "tfds", init_from=str(root / "ph2"))
  ph3_result = trainer.train(ph3, root / "ph3", progress=False)
  return dict(
      ph1_config=ph1,
      ph1_start=ph1_start["model"],
      ph1=ph1_result,
      before=_parts(ph2_start["model"]),
      ph2=ph2_result,
      ph3=ph3_result,
      ph3_config=ph3,
      ph3_dir=root / "ph3",
  )


@pytest.mark.slow
def test_phase2_starts_from_the_phase1_extractor(runs):
  assert _equal(runs["before"]["dncnn"], _pure(runs["ph1"].models["model"]))
  assert not _equal(runs["before"]["dncnn"], _pure(runs["ph1_start"]))


@pytest.mark.slow
def test_phase2_trains_encoder_and_loc_head_only(runs):
  after = _parts(runs["ph2"].models["model"])
  before = runs["before"]
  # The extractor: parameters and BatchNorm statistics, bit for bit.
  assert _equal(before["dncnn"], after["dncnn"])
  assert not _equal(before["backbone"], after["backbone"])
  assert not _equal(before["decode_head"], after["decode_head"])
  for part in ("decode_head_conf", "detection"):  # neither run nor trained
    assert _equal(before[part], after[part]), part
  assert np.isfinite(runs["ph2"].metrics["loss"]) and {"ce", "dice"} <= set(runs["ph2"].metrics)


@pytest.mark.slow
def test_phase3_starts_from_phase2_and_trains_the_heads_only(runs):
  start = _parts(runs["ph2"].models["model"])
  after = _parts(runs["ph3"].models["model"])
  for part in ("dncnn", "backbone", "decode_head"):
    assert _equal(start[part], after[part]), part
  for part in ("decode_head_conf", "detection"):
    assert not _equal(start[part], after[part]), part
  assert {"conf", "det", "det_acc"} <= set(runs["ph3"].metrics)


@pytest.mark.slow
def test_phase3_evaluation_on_full_images(runs):
  config = runs["ph3_config"]
  config.eval.num_images = 2  # an authentic image and a splice (forgery.kind_of)
  out = tasks.get(config.task).evaluate(runs["ph3"].models, config)
  assert {"det_auc", "det_bacc", "loc_f1_best", "splice/det_auc", "splice/loc_f1_best"} <= set(out)
  assert out["loc_count"] == 1 and 0.0 <= out["loc_f1_best"] <= 1.0
  assert out["example"].dtype == np.uint8 and out["example"].ndim == 3
  # The ELA reference row, scored on the same images by the same rules.
  records = list(trufor_loc.eval_records(config))
  elas = [ela.ela(image) for image, *_ in records]
  forged = [i for i, r in enumerate(records) if r[2]]
  expected = forgery_metrics.localization_summary(
      [elas[i][0] for i in forged], [records[i][1] for i in forged]
  )
  assert out["ela/loc_f1_best"] == pytest.approx(expected["f1_best"])
  assert {"ela/det_auc", "ela/splice/loc_mcc"} <= set(out)
  config.eval.reference = "sift"
  with pytest.raises(ValueError, match="eval.reference"):
    tasks.get(config.task).evaluate(runs["ph3"].models, config)
  config.eval.reference = "ela"


@pytest.mark.slow
def test_a_work_dir_restores_under_a_config_naming_another_optimizer(runs, tmp_path):
  adamw = _config("ph3", tmp_path, "adamw")  # the work dir was trained with SGD
  model, step = restore_model(adamw, runs["ph3_dir"])
  assert step == 1 and _equal(_pure(model), _pure(runs["ph3"].models["model"]))


def test_phase3_report_per_edit_kind():
  rng = np.random.default_rng(0)
  kinds = ["authentic", "splice", "authentic", "copy_move", "authentic", "removal"]
  labels = [int(k != "authentic") for k in kinds]
  masks = [np.zeros((32, 32), bool) for _ in kinds]
  for m, y in zip(masks, labels):
    m[8:24, 8:24] = bool(y)
  # Splices are found perfectly; copy-moves score below every authentic image.
  scores = [0.2, 0.9, 0.3, 0.1, 0.4, 0.5]
  maps = [
      m.astype(np.float32) if k == "splice" else rng.random((32, 32)) for m, k in zip(masks, kinds)
  ]
  out = trufor_conf.report(scores, labels, maps, masks, kinds)
  assert out["splice/det_auc"] == 1.0 and out["copy_move/det_auc"] == 0.0
  assert out["removal/det_auc"] == 1.0 and out["det_auc"] == pytest.approx(6 / 9)
  assert out["splice/loc_f1_best"] == 1.0 and out["splice/loc_count"] == 1
  assert out["loc_count"] == 3 and out["copy_move/loc_f1_best"] < 1.0
  # score > 0.5 is forged: 1 of 3 forgeries (0.5 is not above), all 3 authentic images.
  assert out["det_bacc"] == pytest.approx((1 / 3 + 1) / 2)


@pytest.mark.slow
def test_phase1_step_moves_the_extractor(runs):
  result, config = runs["ph1"], runs["ph1_config"]
  assert np.isfinite(result.metrics["loss"]) and 0 <= result.metrics["nn_accuracy"] <= 1
  assert not _equal(_pure(runs["ph1_start"]), _pure(result.models["model"]))
  out = np_task.evaluate(result.models, config)
  assert 0.0 <= out["nn_accuracy"] <= out["nn_history_accuracy"] <= 1.0
  assert out["noiseprint_splice"].dtype == np.uint8 and out["noiseprint_splice"].ndim == 3


# ------------------------------------------------------------- the data ---


def test_balanced_batches_mix_forged_and_authentic_in_proportion():
  source = [{"fake": np.int32(forgery.kind_of(i) != "authentic")} for i in range(30)]
  config = ml_collections.ConfigDict(dict(seed=0, train=dict(batch_size=4), data=dict()))
  fake_of = lambda record, rng: {"fake": record["fake"]}
  half = trufor_loc.balanced_batches(source, config, fake_of, fake_fraction=0.5)
  for _ in range(10):
    assert next(half)["fake"].sum() == 2
  mostly = trufor_loc.balanced_batches(source, config, fake_of, fake_fraction=0.75)
  share = np.mean([next(mostly)["fake"].mean() for _ in range(25)])
  assert share == pytest.approx(0.75, abs=0.05)


def test_crops_pad_with_ignore_and_keep_the_jpeg_grid():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (40, 72, 3), dtype=np.uint8)
  mask = np.zeros((40, 72), np.uint8)
  mask[10:20, 30:50] = 255
  record = {"image": encode_png(image), "mask": encode_png(mask), "name": b"x"}
  no_aug = ml_collections.ConfigDict(
      dict(scale_p=0.0, scale_limit=0.5, jpeg_p=0.0, jpeg_range=(30, 100))
  )
  for seed in range(5):
    out = trufor_loc.make_crop(record, np.random.default_rng(seed), crop=48, aug=no_aug)
    label = out["label"]
    assert (label[40:] == -1).all() and (label[:40] >= 0).all()  # rows below the image
    # The crop is the image at a column offset that is a multiple of 8.
    left = next(
        x for x in range(0, 25, 8) if np.array_equal(out["image"][:40], image[:, x : x + 48])
    )
    np.testing.assert_array_equal(label[:40], mask[:, left : left + 48] > 0)
  x = np.asarray(trufor_loc.to_input({k: v[None] for k, v in out.items()}))
  np.testing.assert_allclose(x[0, 45], 127.5 / 256)
  np.testing.assert_allclose(x[0, :40], image[:, left : left + 48] / 256, rtol=1e-6)


def test_editing_histories_and_grid_aligned_patches():
  assert len(np_task.HISTORIES) == 8 * 5 * 6
  image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
  quarter = np_task.HISTORIES.index((2 / 8, "identity", None))
  assert np_task.apply_history(image, quarter).shape == (16, 16, 3)
  jpeg = np_task.HISTORIES.index((1.0, "identity", 60))
  assert not np.array_equal(np_task.apply_history(image, jpeg), image)
  # Patches of a coordinate image: 8-aligned, from one 2x2 grid, no shared pixel.
  ys, xs = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
  coords = np.stack([ys, xs, np.zeros_like(ys)], -1).astype(np.uint8)
  patches = np_task.cut_patches(coords, np.random.default_rng(1), size=16, count=4)
  corners = {(int(p[0, 0, 0]), int(p[0, 0, 1])) for p in patches}
  assert len(corners) == 4 and all(y % 8 == 0 and x % 8 == 0 for y, x in corners)
  assert {y for y, _ in corners} == {min(y for y, _ in corners) + d for d in (0, 16)}
  with pytest.raises(ValueError, match="smaller than a 2x2 grid"):
    np_task.cut_patches(image[:24], np.random.default_rng(0), size=16, count=2)


def test_sgd_poly_decays_kernels_only_on_the_poly_schedule():
  cfg = ml_collections.ConfigDict(dict(lr=0.1, momentum=0.0, weight_decay=0.5, power=0.9))
  tx = trufor_loc.sgd_poly(cfg, steps=10)
  params = {"kernel": np.ones((2, 2), np.float32), "bias": np.ones((2,), np.float32)}
  state = tx.init(params)
  zeros = jax.tree.map(np.zeros_like, params)
  for step in range(3):
    updates, state = tx.update(zeros, state, params)
    lr = 0.1 * (1 - step / 10) ** 0.9
    np.testing.assert_allclose(updates["kernel"], -lr * 0.5 * params["kernel"], rtol=1e-5)
    np.testing.assert_array_equal(updates["bias"], 0.0)
    params = optax.apply_updates(params, updates)


def test_make_optimizer_keeps_the_paper_sgd_and_offers_adamw():
  params = {"kernel": np.ones((2, 2), np.float32)}
  grads = {"kernel": np.full((2, 2), 3.0, np.float32)}
  sgd = ml_collections.ConfigDict(dict(name="sgd", lr=0.1, momentum=0.0, weight_decay=0.0))
  tx = trufor_loc.make_optimizer(sgd, steps=10)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -0.3, rtol=1e-6)
  adamw = ml_collections.ConfigDict(
      dict(name="adamw", schedule="constant", lr=0.01, weight_decay=0.0)
  )
  tx = trufor_loc.make_optimizer(adamw, steps=10)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Adam's first step moves every weight by lr whatever the gradient's size.
  np.testing.assert_allclose(updates["kernel"], -0.01, rtol=1e-4)
