"""A torchvision ResNet-50 state dict into the SImProv descriptor and comparator.

The state dict is random, its keys and shapes written here from torchvision's
`resnet50()` construction (stages 3, 4, 6, 3; bottleneck widths 64..512, x4 out;
a downsample on each stage's first block; stride on the 3x3). The provjax
parameter each key must land on is also derived here, independently of the
converter's rules; the stem and two blocks are checked against a numpy forward
pass in PyTorch's layout and conventions. Nothing here needs torch.
"""

from __future__ import annotations

import json

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import provjax
from provjax import cards, cli, weights
from provjax.provenance import convert
from provjax.train import init_from

STAGES = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)
BN_LEAVES = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _bn(prefix: str, ch: int) -> dict[str, tuple]:
  shapes = {f"{prefix}.{leaf}": (ch,) for leaf in BN_LEAVES.values()}
  return {**shapes, f"{prefix}.num_batches_tracked": ()}


def resnet50_shapes() -> dict[str, tuple]:
  """{key: shape} of torchvision's `resnet50().state_dict()` (1000-class fc)."""
  shapes = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
  in_ch = 64
  for s, (blocks, width) in enumerate(zip(STAGES, WIDTHS)):
    out_ch = 4 * width
    for b in range(blocks):
      p = f"layer{s + 1}.{b}"
      for n, (o, i, k) in enumerate([(width, in_ch, 1), (width, width, 3), (out_ch, width, 1)]):
        shapes[f"{p}.conv{n + 1}.weight"] = (o, i, k, k)
        shapes.update(_bn(f"{p}.bn{n + 1}", o))
      if b == 0:
        shapes[f"{p}.downsample.0.weight"] = (out_ch, in_ch, 1, 1)
        shapes.update(_bn(f"{p}.downsample.1", out_ch))
      in_ch = out_ch
  return {**shapes, "fc.weight": (1000, 2048), "fc.bias": (1000,)}


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
  """Values scaled so 50 layers stay finite: convs N(0, 1/fan_in), BN near identity."""
  rng = np.random.default_rng(seed)
  out = {}
  for key, shape in resnet50_shapes().items():
    leaf = key.rpartition(".")[2]
    if leaf == "num_batches_tracked":
      out[key] = np.asarray(1234, np.int64)
    elif len(shape) == 4:
      out[key] = (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
    elif leaf in ("weight", "running_var") and not key.startswith("fc."):
      out[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    else:
      out[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
  return out


def block_names() -> list[str]:
  return [f"layer{s + 1}.{b}" for s, n in enumerate(STAGES) for b in range(n)]


def block_key(block: str, rest: tuple) -> str:
  """A bottleneck's ("convs", n, leaf), ("bns", n, leaf), ("proj", leaf), ("proj_bn", leaf)."""
  part, *tail = rest
  if part == "convs":
    return f"{block}.conv{tail[0] + 1}.weight"
  if part == "bns":
    return f"{block}.bn{tail[0] + 1}.{BN_LEAVES[tail[1]]}"
  if part == "proj":
    return f"{block}.downsample.0.weight"
  assert part == "proj_bn", rest
  return f"{block}.downsample.1.{BN_LEAVES[tail[0]]}"


def stem_key(rest: tuple) -> str:
  """("conv", "kernel") / ("bn", leaf) of a `resnet.Stem`."""
  return "conv1.weight" if rest[0] == "conv" else f"bn1.{BN_LEAVES[rest[1]]}"


def expected_key(path: tuple) -> str | None:
  """The torchvision key a provjax parameter must hold; None: no counterpart (fresh init)."""
  if path[0] == "backbone":  # descriptor: stem, stages.s.b
    if path[1] == "stem":
      return stem_key(path[2:])
    return block_key(f"layer{path[2] + 1}.{path[3]}", path[4:])
  if path[0] == "split_stem":  # comparator: stem, then layer1.0's first two convs
    if path[1] == "stem":
      return stem_key(path[2:])
    return block_key("layer1.0", path[1:])
  if path[0] == "trunk":  # comparator: layer1[1:], layer2..4, flattened
    return block_key(block_names()[1:][path[1]], path[2:])
  return None


def to_jax(value: np.ndarray) -> np.ndarray:
  return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value


@pytest.fixture(scope="module")
def state_dict():
  return random_state_dict()


def abstract(arch: str):
  return nnx.eval_shape(lambda: provjax.create_model(arch))


FILLS = {"simprov.r50": convert.fill_descriptor, "simprov_comparator.r50": convert.fill_comparator}


def test_the_test_state_dict_is_resnet50():
  shapes = resnet50_shapes()
  assert len(shapes) == 320  # 161 parameters + 106 BN running stats + 53 counters
  n_params = sum(
      int(np.prod(s))
      for k, s in shapes.items()
      if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
  )
  assert n_params == 25_557_032  # torchvision's documented resnet50 parameter count


@pytest.mark.parametrize("arch", sorted(FILLS))
def test_every_key_lands_on_its_parameter_in_jax_layout(arch, state_dict):
  model = FILLS[arch](abstract(arch), state_dict, "r50.npz")
  used = set()
  for path, var in nnx.to_flat_state(nnx.state(model)):
    key, value = expected_key(path), var.get_value()
    if key is None:  # warp, fusion, heads: still the abstract fresh model
      assert isinstance(value, jax.ShapeDtypeStruct), path
      continue
    assert not isinstance(value, jax.ShapeDtypeStruct), path
    np.testing.assert_array_equal(np.asarray(value), to_jax(state_dict[key]), err_msg=key)
    used.add(key)
  unused = {k.rpartition(".")[0] for k in state_dict.keys() - used if "num_batches" not in k}
  if arch == "simprov.r50":
    assert unused == {"fc"}
  else:  # after the split, the fusion conv stands where layer1[0] joins its residual
    assert unused == {"fc", "layer1.0.conv3", "layer1.0.bn3"} | {
        f"layer1.0.downsample.{i}" for i in (0, 1)
    }


@pytest.mark.parametrize("arch", sorted(FILLS))
def test_a_missing_extra_or_misshaped_key_is_named(arch, state_dict):
  fill = FILLS[arch]
  missing = {k: v for k, v in state_dict.items() if k != "layer3.2.bn2.running_var"}
  error = convert.ConversionError
  with pytest.raises(error, match=r"^r50\.pth: missing .*layer3\.2\.bn2\.running_var"):
    fill(abstract(arch), missing, "r50.pth")
  extra = {**state_dict, "layer4.3.conv1.weight": state_dict["layer4.2.conv1.weight"]}
  with pytest.raises(error, match=r"unexpected key\(s\) layer4\.3\.conv1\.weight$"):
    fill(abstract(arch), extra, "r50.pth")
  key = "layer2.0.downsample.0.weight"
  misshaped = {**state_dict, key: state_dict[key].transpose(1, 0, 2, 3)}
  with pytest.raises(error, match=rf"{key} has shape \(256, 512, 1, 1\)"):
    fill(abstract(arch), misshaped, "r50.pth")
  # Ignored modules may be absent (a backbone saved without its classifier).
  fill(abstract(arch), {k: v for k, v in state_dict.items() if not k.startswith("fc.")}, "x")


def conv2d(x, weight, stride: int = 1):
  """PyTorch Conv2d, no bias, padding (k - 1) // 2, on HxWxC with weight (O, I, k, k)."""
  k = weight.shape[-1]
  pad = (k - 1) // 2
  padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
  h = (x.shape[0] + 2 * pad - k) // stride + 1
  w = (x.shape[1] + 2 * pad - k) // stride + 1
  out = np.zeros((h, w, weight.shape[0]))
  for dy in range(k):
    for dx in range(k):
      window = padded[dy : dy + stride * h : stride, dx : dx + stride * w : stride]
      out += window @ weight[:, :, dy, dx].T
  return out


def batch_norm(x, sd, prefix):
  scale = sd[f"{prefix}.weight"] / np.sqrt(sd[f"{prefix}.running_var"] + 1e-5)
  return (x - sd[f"{prefix}.running_mean"]) * scale + sd[f"{prefix}.bias"]


def bottleneck(x, sd, p, stride):
  """torchvision's Bottleneck (v1.5: stride on conv2), with its downsample."""
  y = np.maximum(batch_norm(conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"), 0)
  y = np.maximum(batch_norm(conv2d(y, sd[f"{p}.conv2.weight"], stride), sd, f"{p}.bn2"), 0)
  y = batch_norm(conv2d(y, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
  residual = batch_norm(conv2d(x, sd[f"{p}.downsample.0.weight"], stride), sd, f"{p}.downsample.1")
  return np.maximum(y + residual, 0)


def stem(x, sd):
  """conv1 (7x7/2, pad 3), bn1, relu, MaxPool2d(3, 2, padding 1)."""
  y = np.maximum(batch_norm(conv2d(x, sd["conv1.weight"], 2), sd, "bn1"), 0)
  padded = np.pad(y, ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
  h, w = (y.shape[0] - 1) // 2 + 1, (y.shape[1] - 1) // 2 + 1
  return np.max(
      [padded[dy : dy + 2 * h : 2, dx : dx + 2 * w : 2] for dy in range(3) for dx in range(3)],
      axis=0,
  )


@pytest.fixture(scope="module")
def descriptor(state_dict):
  """The converted backbone on an abstract descriptor, with a concrete head to run it.

  (Drawing a whole fresh r50, as `build_descriptor` does, costs ~15 s of init on 2 cores;
  the slow CLI test below goes that way.)
  """
  model = convert.fill_descriptor(abstract("simprov.r50"), state_dict, "r50.npz")
  model.head = nnx.Linear(2048, 256, rngs=nnx.Rngs(0))
  return model


def test_the_converted_backbone_computes_torchvisions_layers(descriptor, state_dict):
  x = np.random.default_rng(1).standard_normal((32, 32, 3)).astype(np.float32)
  backbone = descriptor.backbone
  got = backbone.stem(jnp.asarray(x[None]), train=False)
  want = stem(x.astype(np.float64), state_dict)
  np.testing.assert_allclose(np.asarray(got[0]), want, rtol=1e-4, atol=1e-4)
  for stage, stride in ((0, 1), (1, 2)):  # layer1.0 and layer2.0, both with a downsample
    got = backbone.stages[stage][0](got, train=False)
    want = bottleneck(want, state_dict, f"layer{stage + 1}.0", stride)
    np.testing.assert_allclose(np.asarray(got[0]), want, rtol=1e-4, atol=1e-4)


def test_the_converted_descriptor_forward_is_finite(descriptor):
  out = descriptor(jnp.full((1, 32, 32, 3), 0.5))
  assert out.shape == (1, 256) and bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.slow  # a fresh r50 drawn eagerly, exported, loaded and copied twice (~30 s)
def test_cli_writes_a_starting_point_init_from_accepts(tmp_path, monkeypatch, state_dict, capsys):
  source = tmp_path / "resnet50.npz"
  np.savez(source, **state_dict)
  monkeypatch.setenv("PROVJAX_CHECKPOINTS", str(tmp_path / "checkpoints"))
  assert cli.main(["convert", "simprov", str(source), "--name", "simprov.test"]) == 0
  folder = tmp_path / "checkpoints" / "simprov.test"
  assert json.loads(capsys.readouterr().out) == {"name": "simprov.test", "folder": str(folder)}
  meta = json.loads((folder / "config.json").read_text())
  assert meta["arch"] == "simprov.r50"
  assert meta["converted_from"]["keys"] == 318 and meta["converted_from"]["ignored_keys"] == 2
  assert meta["converted_from"]["fresh_init"] == ["head"]
  card = (folder / "model_card.md").read_text()
  assert "not a trained model" in card and "`head`" in card and "init_from=simprov.test" in card
  # The card states no figure that config.json does not hold (it measured nothing).
  assert cards.numbers(card) <= cards.numbers((folder / "config.json").read_text())
  loaded = weights.load("simprov.test")
  kernel = np.asarray(loaded.head.kernel[...])  # fresh: the spec's U(-0.1, 0.1), bias zero
  assert np.abs(kernel).max() <= 0.1 and not np.asarray(loaded.head.bias[...]).any()
  assert bool(jnp.all(jnp.isfinite(loaded(jnp.full((1, 32, 32, 3), 0.5)))))
  np.testing.assert_array_equal(
      np.asarray(loaded.backbone.stages[3][2].convs[2].kernel[...]),
      to_jax(state_dict["layer4.2.conv3.weight"]),
  )
  # config.init_from takes the folder by name or by path, into a run's only module.
  for source_name in ("simprov.test", str(folder)):
    graphdef, state = nnx.split({"models": {"model": provjax.create_model("simprov.r50", seed=1)}})
    init_from.apply(state, source_name, log=lambda _: None)
    run = nnx.merge(graphdef, state)["models"]["model"]
    for a, b in zip(jax.tree.leaves(nnx.state(run)), jax.tree.leaves(nnx.state(loaded))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow  # a fresh r50 comparator (its fc alone is 25.7 M weights) drawn and exported
def test_cli_fills_the_comparators_split_stem_and_trunk(tmp_path, monkeypatch, state_dict):
  source = tmp_path / "resnet50.npz"
  np.savez(source, **state_dict)
  monkeypatch.setenv("PROVJAX_CHECKPOINTS", str(tmp_path / "checkpoints"))
  argv = ["convert", "simprov_comparator", str(source), "--name", "simprov_comparator.test"]
  assert cli.main(argv) == 0
  folder = tmp_path / "checkpoints" / "simprov_comparator.test"
  meta = json.loads((folder / "config.json").read_text())
  assert meta["converted_from"]["keys"] == 306 and meta["converted_from"]["ignored_keys"] == 14
  fresh = set(meta["converted_from"]["fresh_init"])
  assert {"warp", "fusion", "fusion_bn", "fc", "heatmap_head", "cls_head"} <= fresh
  assert not fresh & {"split_stem", "trunk"}
  card = (folder / "model_card.md").read_text()
  assert "`warp`" in card and "init_from=simprov_comparator.test" in card
  assert cards.numbers(card) <= cards.numbers((folder / "config.json").read_text())
  model = weights.load("simprov_comparator.test")
  for path, var in nnx.to_flat_state(nnx.state(model)):
    key = expected_key(path)
    if key is not None:
      np.testing.assert_array_equal(np.asarray(var.get_value()), to_jax(state_dict[key]))
  assert not np.asarray(model.fusion_bn.mean[...]).any()  # fresh: no statistics from the file


def test_cli_refuses_a_wrong_name_or_file(tmp_path, monkeypatch, state_dict, capsys):
  monkeypatch.setenv("PROVJAX_CHECKPOINTS", str(tmp_path / "checkpoints"))
  source = tmp_path / "not_resnet.npz"
  np.savez(source, **{k: v for k, v in state_dict.items() if not k.startswith("layer4.")})
  with pytest.raises(SystemExit):  # argparse: a comparator is released as simprov_comparator.*
    cli.main(["convert", "simprov_comparator", str(source), "--name", "simprov.x"])
  assert "expected simprov_comparator.<tag>" in capsys.readouterr().err
  argv = ["convert", "simprov_comparator", str(source), "--name", "simprov_comparator.x"]
  assert cli.main(argv) == 1
  err = capsys.readouterr().err.strip()
  assert not (tmp_path / "checkpoints" / "simprov_comparator.x").exists()
  assert err.startswith(f"provjax convert: error: {source}: missing official key(s) layer4.0")
  assert "\n" not in err
