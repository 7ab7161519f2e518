"""VGG feature taps: shapes, the torchvision VGG19 converter, and the RotNet training task.

The converter is checked on random weights laid out as torchvision's `vgg19()`
state dict, the shapes derived here from the VGG19 definition (configuration
E), and its relu1_1 / relu2_1 taps against an independent numpy
cross-correlation (weights in PyTorch layout, padding 1, floor max pool).
"""

from __future__ import annotations

import json
from pathlib import Path

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import provjax
from provjax import tasks
from provjax.config import load_config
from provjax.inpainting import vgg_convert
from provjax.models import vgg
from provjax.tasks import vgg_features
from provjax.train import mesh as mesh_lib
from provjax.train import trainer
from provjax.train.state import build_state, make_train_step

ROOT = Path(__file__).resolve().parents[1]
# torchvision's cfgs["E"]: conv widths, "M" = MaxPool2d(2, 2).
VGG19_CFG = (64, 64, "M", 128, 128, "M") + (256,) * 4 + ("M",) + ((512,) * 4 + ("M",)) * 2


def torchvision_features_shapes() -> dict[str, tuple]:
  """{features.N.weight / bias: shape} as torchvision's make_layers numbers them."""
  shapes, index, channels = {}, 0, 3
  for v in VGG19_CFG:
    if v == "M":
      index += 1  # MaxPool2d
      continue
    shapes[f"features.{index}.weight"] = (v, channels, 3, 3)
    shapes[f"features.{index}.bias"] = (v,)
    index, channels = index + 2, v  # Conv2d, ReLU
  return shapes


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
  """He-scaled random features, plus classifier biases that the converter must ignore."""
  rng = np.random.default_rng(seed)
  out = {}
  for key, shape in torchvision_features_shapes().items():
    fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else 1
    scale = np.sqrt(2.0 / fan_in) if len(shape) == 4 else 0.1
    out[key] = (rng.standard_normal(shape) * scale).astype(np.float32)
  for index, width in ((0, 4096), (3, 4096), (6, 1000)):
    out[f"classifier.{index}.bias"] = np.zeros(width, np.float32)
  return out


def conv_relu(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
  """PyTorch Conv2d(3x3, padding 1) + ReLU on HxWxC: cross-correlation, weight (O, I, 3, 3)."""
  h, w, _ = x.shape
  padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
  out = np.zeros((h, w, weight.shape[0]))
  for dy in range(3):
    for dx in range(3):
      out += padded[dy : dy + h, dx : dx + w] @ weight[:, :, dy, dx].T
  return np.maximum(out + bias, 0.0)


def pool(x: np.ndarray) -> np.ndarray:
  """MaxPool2d(2, 2): floor, odd last row / column dropped."""
  h, w, c = x.shape
  x = x[: h // 2 * 2, : w // 2 * 2]
  return x.reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))


def test_taps_of_both_variants():
  expected = {
      "relu1": (224, 64),
      "relu2": (112, 128),
      "relu3": (56, 256),
      "relu4": (28, 512),
      "relu5": (14, 512),
  }
  assert len(vgg.TAPS) == 16 and vgg.TAPS[0] == "relu1_1" and vgg.TAPS[-1] == "relu5_4"
  big = nnx.eval_shape(lambda: provjax.create_model("vgg.vgg19"))
  taps = nnx.eval_shape(lambda m, x: m(x), big, jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
  assert set(taps) == set(vgg.TAPS)
  for name, t in taps.items():
    side, ch = expected[name[:5]]
    assert t.shape == (1, side, side, ch), name
  n_params = sum(v.size for v in jax.tree.leaves(nnx.state(big)))
  assert n_params == sum(int(np.prod(s)) for s in torchvision_features_shapes().values())
  # Tiny: a quarter of the widths; odd sides floor at every pool (37 -> 18 -> 9 -> 4 -> 2).
  tiny = nnx.eval_shape(lambda: provjax.create_model("vgg.tiny"))
  x = jax.ShapeDtypeStruct((2, 37, 37, 3), jnp.float32)
  sides, widths = (37, 18, 9, 4, 2), (16, 32, 64, 128, 128)
  for name, t in nnx.eval_shape(lambda m, x: m(x), tiny, x).items():
    stage = int(name[4]) - 1
    assert t.shape == (2, sides[stage], sides[stage], widths[stage]), name
  some = nnx.eval_shape(lambda m, x: m(x, taps=("relu2_1", "relu1_2")), tiny, x)
  assert set(some) == {"relu1_2", "relu2_1"}
  with pytest.raises(ValueError, match="relu6_1"):
    nnx.eval_shape(lambda m, x: m(x, taps=("relu6_1",)), tiny, x)


@pytest.fixture(scope="module")
def state_dict():
  return random_state_dict()


@pytest.fixture(scope="module")
def converted(tmp_path_factory, state_dict):
  """A torchvision-layout VGG19 state dict (.npz) converted into a temporary checkpoints root."""
  tmp = tmp_path_factory.mktemp("vgg_convert")
  source = tmp / "vgg19_random.npz"
  np.savez(source, **state_dict)
  mp = pytest.MonkeyPatch()
  mp.setenv("PROVJAX_CHECKPOINTS", str(tmp / "checkpoints"))
  try:
    folder = vgg_convert.convert_vgg19(source, "vgg.random")
    yield state_dict, folder, provjax.load("vgg.random")
  finally:
    mp.undo()


def test_converted_taps_match_an_independent_computation(converted):
  state_dict, folder, model = converted
  image = np.random.default_rng(1).random((17, 18, 3))  # odd height: the pool floors
  out = model(jnp.asarray(image[None], jnp.float32), taps=("relu1_1", "relu2_1"))
  sd = {k: v.astype(np.float64) for k, v in state_dict.items()}
  relu1_1 = conv_relu(image, sd["features.0.weight"], sd["features.0.bias"])
  relu1_2 = conv_relu(relu1_1, sd["features.2.weight"], sd["features.2.bias"])
  relu2_1 = conv_relu(pool(relu1_2), sd["features.5.weight"], sd["features.5.bias"])
  assert out["relu2_1"].shape == (1, 8, 9, 128)
  for name, ref in (("relu1_1", relu1_1), ("relu2_1", relu2_1)):
    np.testing.assert_allclose(out[name][0], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
  meta = json.loads((folder / "config.json").read_text())
  assert meta["arch"] == "vgg.vgg19" and "no mean / std" in meta["preprocessing"]["input"]
  assert meta["converted_from"]["keys"] == 32 and meta["converted_from"]["ignored_keys"] == 3


def test_converter_names_a_missing_or_misshaped_key(state_dict):
  missing = {k: v for k, v in state_dict.items() if k != "features.7.weight"}
  with pytest.raises(vgg_convert.ConversionError, match=r"missing .*features\.7\.weight"):
    vgg_convert.build(missing)
  misshaped = {**state_dict, "features.34.bias": np.zeros(256, np.float32)}
  with pytest.raises(vgg_convert.ConversionError, match=r"features\.34\.bias has shape \(256,\)"):
    vgg_convert.build(misshaped)
  unexpected = {**state_dict, "features.1.running_mean": np.zeros(64, np.float32)}  # vgg19_bn
  with pytest.raises(vgg_convert.ConversionError, match=r"unexpected .*features\.1\.running_mean"):
    vgg_convert.build(unexpected)
  with pytest.raises(ValueError, match="vgg.<tag>"):
    vgg_convert.convert_vgg19(ROOT / "missing.npz", "safepaint.x")


def test_rotations_and_their_labels():
  x = jnp.arange(2 * 3 * 3 * 1, dtype=jnp.float32).reshape(2, 3, 3, 1)
  turned, labels = vgg_features.rotate_all(x)
  assert turned.shape == (8, 3, 3, 1) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
  for i, k in enumerate(np.asarray(labels)):
    np.testing.assert_array_equal(turned[i], np.rot90(np.asarray(x[i % 2]), k))


# Equal widths at every stage: few distinct parameter shapes, so few initialiser compilations.
NARROW = (8,) * 5


def random_model(rng: np.random.Generator, **overrides) -> vgg.VGG:
  """A `vgg.tiny` with random parameters and BatchNorm statistics (variances, scales > 0)."""
  abstract = nnx.eval_shape(lambda: provjax.create_model("vgg.tiny", **overrides))
  graphdef, state = nnx.split(abstract)
  flat = []
  for path, var in nnx.to_flat_state(state):
    if path[-1] in ("var", "scale"):
      value = rng.uniform(0.5, 2.0, var.shape)
    else:
      value = rng.normal(size=var.shape) * (0.3 if path[-1] == "kernel" else 1.0)
    flat.append((path, var.replace(jnp.asarray(value, jnp.float32))))
  return nnx.merge(graphdef, nnx.from_flat_state(flat))


def test_folding_batch_norm_keeps_the_eval_taps():
  rng = np.random.default_rng(0)
  model = random_model(rng, batch_norm=True, widths=NARROW)
  plain = vgg.fold_batch_norm(model)
  assert plain.norms is None
  assert jax.tree.structure(nnx.state(plain)) == jax.tree.structure(
      nnx.state(nnx.eval_shape(lambda: provjax.create_model("vgg.tiny", widths=NARROW)))
  )
  x = jnp.asarray(rng.random((2, 16, 16, 3)), jnp.float32)
  taps = ("relu1_1", "relu3_1")
  ours, folded = model(x, taps=taps), plain(x, taps=taps)
  for name in taps:
    np.testing.assert_allclose(folded[name], ours[name], rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="no BatchNorm"):
    vgg.fold_batch_norm(plain)


@pytest.mark.slow  # a real compile of the VGG + head step (~18 s on 2 cores)
def test_one_training_step_changes_the_vgg_and_the_head():
  config = load_config(f"{ROOT}/configs/safepaint/vgg.py:tiny,quick")
  config.optimizer.schedule = "constant"  # the warm-up schedule's first step has lr 0
  config.model.overrides.widths = NARROW
  assert (config.data.resolution, config.train.batch_size) == (32, 4)
  task = tasks.get(config.task)
  mesh = mesh_lib.make_mesh(tuple(config.mesh.shape))
  graphdef, state, frozen = build_state(config, task, mesh)
  assert frozen == ()
  assert nnx.merge(graphdef, state)["models"]["vgg"].norms is not None  # trained with BN
  before = jax.tree.map(np.array, nnx.to_pure_dict(state["models"]))
  batch = next(task.train_data(config))
  assert batch["images"].shape == (4, 32, 32, 3) and batch["images"].dtype == np.uint8
  step = make_train_step(graphdef, task, config, jax.tree.map(lambda x: x.sharding, state), frozen)
  with jax.set_mesh(mesh):
    state, metrics = step(state, mesh_lib.shard_batch(batch, mesh), jnp.int32(0))
  after = nnx.to_pure_dict(state["models"])
  assert np.isfinite(float(metrics["loss"])) and 0.0 <= float(metrics["accuracy"]) <= 1.0
  changed = lambda *path: not np.array_equal(_at(before, path), _at(after, path))
  for i in range(len(vgg.TAPS)):
    assert changed("vgg", "convs", i, "kernel") and changed("vgg", "norms", i, "scale"), i
    assert changed("vgg", "norms", i, "mean"), i  # batch statistics in training mode
  assert changed("head", "fc", "kernel") and changed("head", "fc", "bias")


def _at(tree, path):
  for key in path:
    tree = tree[key]
  return np.asarray(tree)


@pytest.mark.slow
def test_release_exports_the_folded_vgg_with_a_measured_card(tmp_path, monkeypatch):
  config = load_config(f"{ROOT}/configs/safepaint/vgg.py:tiny,quick")
  result = trainer.train(config, tmp_path / "run", progress=False)
  monkeypatch.setenv("PROVJAX_CHECKPOINTS", str(tmp_path / "checkpoints"))
  folder = vgg_convert.release_trained(tmp_path / "run", "vgg.test")
  released = provjax.load("vgg.test")
  assert released.norms is None
  assert json.loads((folder / "config.json").read_text())["overrides"] == {}
  x = jnp.asarray(np.random.default_rng(0).random((1, 32, 32, 3)), jnp.float32)
  ours, theirs = result.models["vgg"](x), released(x)
  for name in vgg.TAPS:
    np.testing.assert_allclose(theirs[name], ours[name], rtol=1e-4, atol=1e-4)
  rows = json.loads((folder / "metrics.json").read_text())["rows"]
  measured = {(r["section"].split("`")[1], r["metric"]) for r in rows if "`" in r["section"]}
  assert {("test", "rotation_accuracy"), ("gallery", "photo/rotation_accuracy")} <= measured
  assert "Rotation accuracy, held-back `gallery` split" in (folder / "model_card.md").read_text()
