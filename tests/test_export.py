"""`provjax export`: safetensors, StableHLO and Orbax copies of released weights.

Each format is read back and must give the original model's outputs: safetensors with
PyTorch keys goes back through the system's own converter (`fill`), which is what proves
the names and layouts official; the paper-size key sets are checked against the official
state-dict listings in tests/reference on abstract models (no weights are made).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from pathlib import Path

from flax import nnx
import jax
import numpy as np
import pytest

from provjax import export, registry, torch_convert, weights
from provjax.copydetect import convert as copynce_convert
from provjax.forgery import convert as trufor_convert
from provjax.inpainting import convert as safepaint_convert

REFERENCE = Path(__file__).resolve().parent / "reference"
TOLERANCE = 1e-5


@pytest.fixture(scope="module", autouse=True)
def _quick_compiles():
  """XLA's optimisation passes dominate these tests on 2 cores; the checks do not need them."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _apply(forward, graphdef, state, *inputs):
  return forward(nnx.merge(graphdef, state), *inputs)


def _run(forward, model, *inputs):
  """`forward(model, *inputs)` jitted with the state as an argument: models of one structure
  (the original and its re-import) share one compile."""
  return _apply(forward, *nnx.split(model), *inputs)


@pytest.fixture(scope="module")
def loaded():
  """Released models, each loaded once for the module (TruFor's load alone takes seconds)."""
  cache = {}

  def get(name: str):
    if name not in cache:
      cache[name] = weights.load(name)
    return cache[name]

  return get


def _abstract(model):
  """The shapes of `model` (what a converter fills), without tracing its constructor again."""
  graphdef, state = nnx.split(model)
  return nnx.merge(graphdef, jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state))


def _cli(argv: list[str], capsys) -> tuple[int, str]:
  """The `export` command through its own parser (before the lead wires it into provjax.cli)."""
  parser = argparse.ArgumentParser()
  export.add_command(parser.add_subparsers())
  args = parser.parse_args(argv)
  code = args.fn(args)
  return code, capsys.readouterr().out


def _images(shape, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).random(shape, np.float32)


def _max_error(a: dict, b: dict) -> float:
  """Largest difference, relative where a value exceeds 1: float32 keeps about 7 digits, so
  a warp's sampling coordinates (pixels, up to the image side) differ by 1e-5 px after a
  reordering of the same sums that leaves probabilities exact to 1e-7."""

  def error(x, y):
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    return float((np.abs(x - y) / np.maximum(1.0, np.abs(x))).max())

  return max(error(a[k], b[k]) for k in a)


def _tsv(name: str) -> dict[str, tuple]:
  """The official key -> shape listing, without BatchNorm counters (never written)."""
  rows = {}
  for line in (REFERENCE / f"{name}_state_dict.tsv").read_text().splitlines():
    if line and not line.startswith("#"):
      key, shape, _ = line.split("\t")
      if not key.endswith("num_batches_tracked"):
        rows[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
  return rows


def test_to_torch_layout_inverts_to_jax_layout():
  rng = np.random.default_rng(0)
  for shape in [(3, 3, 4, 8), (3, 3, 1, 6), (5, 7), (9,), (1, 4, 6)]:
    value = rng.random(shape)
    back = torch_convert.to_jax_layout(torch_convert.to_torch_layout(value))
    np.testing.assert_array_equal(back, value)
    assert torch_convert.to_torch_layout(value).shape == torch_convert.official_shape(shape)


@pytest.mark.parametrize(
    "arch, listing",
    [
        pytest.param("trufor.b2", "trufor", marks=pytest.mark.slow),  # 20 s to trace on 2 cores
        ("copynce.vits16", "copynce_descriptor"),
        ("copynce_matcher.vits16", "copynce_matcher"),
        ("safepaint.full", "safepaint"),
    ],
)
def test_paper_size_keys_are_the_official_ones(arch, listing):
  abstract = nnx.eval_shape(lambda: registry.create_model(arch))
  named, style = export.named_variables(abstract, registry.split_name(arch)[0])
  assert style == "pytorch"
  official = _tsv(listing)
  assert named.keys() == official.keys()
  for key, (_, var) in named.items():
    assert torch_convert.official_shape(var.shape) == official[key], key


def test_small_trufor_keys_are_official_ones(loaded):
  """The cheap stand-in for the slow b2 check: a shallower MiT's keys all exist in the listing."""
  named, _ = export.named_variables(loaded("trufor.synth-v1"), "trufor")
  assert not named.keys() - _tsv("trufor").keys()


def test_safetensors_provjax_keys_round_trip(tmp_path, capsys):
  out = tmp_path / "repmix"
  code, printed = _cli(
      ["export", "repmix.synth-v1", "--format", "safetensors", "--out", str(out)], capsys
  )
  assert code == 0
  record = json.loads(printed)
  assert record["files"] == ["config.json", "model.safetensors"]
  assert record["sha256"]["model.safetensors"] == weights.file_sha256(out / "model.safetensors")
  tensors, meta = export.read_safetensors(out / "model.safetensors")
  assert meta == {"name": "repmix.synth-v1", "arch": "repmix.tiny", "key_style": "provjax"}
  original = weights.load("repmix.synth-v1")
  flat = nnx.to_flat_state(nnx.state(original))
  assert len(tensors) == len(flat)  # parameters and BatchNorm statistics
  assert json.loads((out / "config.json").read_text()) == weights.read_config("repmix.synth-v1")
  x = _images((2, 56, 56, 3))
  reloaded = export.load_safetensors(out)
  forward = export.SIGNATURES["repmix"].forward
  assert _max_error(_run(forward, original, x), _run(forward, reloaded, x)) <= TOLERANCE


def _trufor_inputs():
  return (_images((1, 32, 32, 3)) * (255 / 256),)


def _safepaint_inputs():
  masks = np.zeros((1, 64, 64, 1), np.float32)
  masks[:, 16:40, 20:44] = 1.0
  return _images((1, 64, 64, 3)), masks


def _copynce_inputs():
  return (_images((2, 64, 64, 3)) - 0.5,)


@pytest.mark.parametrize(
    "name, fill, inputs",
    [
        ("trufor.synth-v1", trufor_convert.fill, _trufor_inputs),
        ("safepaint.synth-v1", safepaint_convert.fill, _safepaint_inputs),
        (
            "copynce.synth-v1",
            lambda a, sd, src: copynce_convert.fill(a, copynce_convert.resolve_kind(sd), sd, src),
            _copynce_inputs,
        ),
    ],
)
def test_safetensors_pytorch_keys_go_back_through_the_converter(
    tmp_path, loaded, name, fill, inputs
):
  out = tmp_path / "st"
  original = loaded(name)
  export.export(name, "safetensors", out, model=original)
  tensors, meta = export.read_safetensors(out / "model.safetensors")
  assert meta["key_style"] == "pytorch"
  assert not any(k.endswith("num_batches_tracked") for k in tensors)
  converted = fill(_abstract(original), tensors, str(out))
  converted.eval()
  config = weights.read_config(name)
  forward = export.SIGNATURES[registry.split_name(config["arch"])[0]].forward
  args = inputs()
  assert _max_error(_run(forward, original, *args), _run(forward, converted, *args)) <= TOLERANCE


@pytest.mark.parametrize(
    "name, sizes",
    [
        # 40 s on 2 cores (a TruFor compile per size, twice): run with -m slow.
        pytest.param("trufor.synth-v1", [(1, 32, 32), (2, 32, 48)], marks=pytest.mark.slow),
        ("repmix.synth-v1", [(1, 56, 56), (3, 40, 64)]),
    ],
)
def test_stablehlo_round_trip_is_polymorphic(tmp_path, loaded, name, sizes):
  out = tmp_path / "hlo"
  original = loaded(name)
  export.export(name, "stablehlo", out, platforms=("cpu",), model=original)  # slow test: all
  exported, meta = export.load_stablehlo(out)
  assert meta["inputs"] == [{"name": "images", "shape": "b, h, w, 3", "dtype": "float32"}]
  assert meta["size"] == "polymorphic" and "cpu" in meta["platforms"]
  assert meta["preprocessing"] == weights.read_config(name)["preprocessing"]
  sig = export.SIGNATURES[registry.split_name(meta["arch"])[0]]
  for b, h, w in sizes:
    x = _images((b, h, w, 3))
    got = exported.call(x)
    assert set(got) == set(meta["outputs"])
    assert _max_error(_run(sig.forward, original, x), got) <= TOLERANCE


def test_orbax_copy_loads_and_equals(tmp_path, monkeypatch):
  out = tmp_path / "zoo" / "copy"
  record = export.export("simprov.synth-v2", "orbax", out)
  assert "manifest.json" in record["files"] and (out / "weights").is_dir()
  original = weights.params_sha256(weights.load("simprov.synth-v2"))
  monkeypatch.setenv("PROVJAX_CHECKPOINTS", str(out.parent))
  assert weights.released() == ["copy"]
  assert weights.params_sha256(weights.load("copy")) == original


def test_unknown_name_and_format_are_bad_arguments(tmp_path, capsys):
  out = tmp_path / "x"
  code, printed = _cli(["export", "nosuch.v1", "--format", "orbax", "--out", str(out)], capsys)
  assert code == 2 and printed == "" and not out.exists()
  with pytest.raises(SystemExit) as e:
    _cli(["export", "repmix.synth-v1", "--format", "onnx", "--out", str(out)], capsys)
  assert e.value.code == 2
  # A fresh variant has no released folder to copy.
  with pytest.raises(export.UnknownModelError):
    export.export("repmix.tiny", "orbax", out)
  assert not out.exists()


def test_non_empty_dir_is_kept_unless_forced(tmp_path, capsys):
  out = tmp_path / "x"
  out.mkdir()
  (out / "keep.txt").write_text("mine")
  argv = ["export", "genzoo.tconv-s0", "--format", "safetensors", "--out", str(out)]
  assert _cli(argv, capsys)[0] == 2
  assert [p.name for p in out.iterdir()] == ["keep.txt"]
  code, printed = _cli(argv + ["--force"], capsys)
  assert code == 0 and sorted(p.name for p in out.iterdir()) == json.loads(printed)["files"]


def test_failure_leaves_no_partial_folder(tmp_path, monkeypatch):
  def broken(tensors, path, metadata=None):
    Path(path).write_bytes(b"half a file")
    raise OSError("disk full")

  monkeypatch.setattr(export.safetensors_numpy, "save_file", broken)
  with pytest.raises(OSError, match="disk full"):
    export.export("genzoo.tconv-s0", "safetensors", tmp_path / "x")
  assert os.listdir(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", weights.released())
def test_every_release_exports_to_stablehlo(tmp_path, name):
  out = tmp_path / "hlo"
  export.export(name, "stablehlo", out)
  exported, meta = export.load_stablehlo(out)
  sig = export.SIGNATURES[registry.split_name(meta["arch"])[0]]
  original = weights.load(name)
  fixed = meta["size"] != "polymorphic"
  side = int(meta["inputs"][0]["shape"].split(",")[1]) if fixed else 64
  inputs = [_images((2, side, side, c), seed=i) for i, (_, c) in enumerate(sig.inputs)]
  if sig.inputs[-1][0] == "masks":
    inputs[-1] = (inputs[-1] > 0.7).astype(np.float32)
  assert _max_error(_run(sig.forward, original, *inputs), exported.call(*inputs)) <= TOLERANCE
