"""`provjax detect` and `provjax convert trufor` through the command-line entry point."""

import argparse
import json

from flax import nnx
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

import provjax
from provjax import cli, weights
from provjax.forgery import cli as forgery_cli
from provjax.forgery.detect import Detector, TooLargeError

# A two-stage micro TruFor (as the quick configs use): compiles in seconds per image size.
MICRO = dict(embed_dims=(8, 16), num_heads=(1, 1), depths=(1, 1), sr_ratios=(2, 1), decoder_dim=16)


def random_micro_trufor(seed: int = 0) -> nnx.Module:
  """`trufor.tiny` with MICRO overrides and random weights drawn by numpy.

  Eager initialisation dispatches every initializer op on its own and takes
  most of a minute on a busy 2-core machine; this takes a second. Kernels are
  scaled by their fan-in so activations stay finite through the 17 DnCNN layers.
  """
  abstract = nnx.eval_shape(lambda: provjax.create_model("trufor.tiny", **MICRO))
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(seed)
  leaves = []
  for path, var in nnx.to_flat_state(state):
    shape = tuple(var.shape)
    draw = {
        "kernel": lambda: rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1])),
        "scale": lambda: 1.0 + 0.1 * rng.standard_normal(shape),
        "mean": lambda: np.zeros(shape),
        "var": lambda: np.ones(shape),
    }.get(path[-1], lambda: 0.1 * rng.standard_normal(shape))
    leaves.append((path, var.replace(jnp.asarray(draw(), var.dtype))))
  return nnx.merge(graphdef, nnx.from_flat_state(leaves))


@pytest.fixture(scope="module")
def trufor_weights(tmp_path_factory):
  """A random micro TruFor released as `trufor.test` in a temp checkpoints folder."""
  root = tmp_path_factory.mktemp("checkpoints")
  mp = pytest.MonkeyPatch()
  mp.setenv("PROVJAX_CHECKPOINTS", str(root))
  try:
    model = random_micro_trufor()
    weights.export(model, "trufor.test", arch="trufor.tiny", overrides=MICRO)
    yield root
  finally:
    mp.undo()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  """Two good images of odd sizes (PNG, JPEG), a corrupt file and a missing path."""
  folder = tmp_path_factory.mktemp("images")
  rng = np.random.default_rng(0)
  small, large = folder / "small.png", folder / "large.jpg"
  Image.fromarray(rng.integers(0, 256, (45, 61, 3), dtype=np.uint8)).save(small)
  Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(large, quality=90)
  corrupt = folder / "corrupt.png"
  corrupt.write_bytes(small.read_bytes()[:200])  # a truncated PNG
  return {"small": small, "large": large, "corrupt": corrupt, "missing": folder / "missing.png"}


def _lines(text: str) -> list[dict]:
  return [json.loads(line) for line in text.splitlines()]


def test_detect_writes_maps_and_reports_bad_files(trufor_weights, images, tmp_path, capsys):
  del trufor_weights
  order = [images[k] for k in ("small", "corrupt", "missing", "large")]
  code = cli.main(
      ["detect", *map(str, order), "--out", str(tmp_path), "--model", "trufor.test"]
      + ["--json", "--no-progress", "--save-np"]
  )
  captured = capsys.readouterr()
  assert code == 1
  records = _lines(captured.out)
  assert [r["path"] for r in records] == [str(p) for p in order]  # input order, one line each

  for record, name in zip(records[1:3], ("corrupt.png", "missing.png")):
    assert record["error"] and name in record["error"] and record["map_npz"] is None
  err_lines = [line for line in captured.err.splitlines() if "skipped" in line]
  assert len(err_lines) == 2 and "corrupt.png" in err_lines[0] and "missing.png" in err_lines[1]

  for record, size in zip((records[0], records[3]), ((45, 61), (64, 80))):
    assert record["error"] is None and record["size"] == list(size)
    with np.load(record["map_npz"]) as npz:
      assert set(npz.files) == {"map", "conf", "score", "imgsize", "np++"}
      assert tuple(npz["imgsize"]) == size
      for key in ("map", "conf", "np++"):
        assert npz[key].shape == size and npz[key].dtype == np.float32
        assert np.all(np.isfinite(npz[key]))
      for key in ("map", "conf"):
        assert 0.0 <= npz[key].min() and npz[key].max() <= 1.0
      assert float(npz["score"]) == pytest.approx(record["score"]) and 0 <= record["score"] <= 1
    with Image.open(record["overlay_png"]) as png:
      assert png.mode == "RGB" and png.width > 3 * png.height  # three panels side by side


def test_max_pixels_refuses_only_the_large_image(trufor_weights, images, tmp_path, capsys):
  del trufor_weights
  code = cli.main(
      ["detect", str(images["small"]), str(images["large"]), "--out", str(tmp_path)]
      + ["--model", "trufor.test", "--no-progress", "--max-pixels", str(45 * 61)]
  )
  small, large = _lines(capsys.readouterr().out)
  assert code == 1
  assert "too large" in large["error"] and "large.jpg" in large["error"]
  assert small["error"] is None
  with np.load(small["map_npz"]) as npz:
    assert "np++" not in npz.files  # only with --save-np


def test_detect_argument_errors_exit_2(trufor_weights, images, tmp_path, capsys):
  del trufor_weights
  with pytest.raises(SystemExit) as e:
    cli.main(["detect", str(images["small"])])  # --out missing
  assert e.value.code == 2
  with pytest.raises(SystemExit) as e:
    cli.main(["detect", str(images["small"]), "--out", str(tmp_path), "--max-pixels", "0"])
  assert e.value.code == 2
  args = ["detect", str(images["small"]), "--out", str(tmp_path), "--model", "trufor.nope"]
  assert cli.main(args) == 2
  assert "no released weights named 'trufor.nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["convert"],
        ["convert", "trufor"],
        ["convert", "trufor", "{file}"],  # --name missing
        ["convert", "trufor", "{missing}", "--name", "trufor.x"],
        ["convert", "trufor", "{file}", "--name", "simprov.x"],
        ["convert", "trufor", "{file}", "--name", "trufor."],
        ["convert", "nosuch", "{file}", "--name", "trufor.x"],
    ],
)
def test_convert_argument_errors_exit_2(argv, tmp_path):
  file = tmp_path / "trufor.pth.tar"
  file.write_bytes(b"x")
  argv = [a.format(file=file, missing=tmp_path / "none.pth") for a in argv]
  with pytest.raises(SystemExit) as e:
    cli.main(argv)
  assert e.value.code == 2


def test_convert_bad_file_exits_1_with_one_line(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("PROVJAX_CHECKPOINTS", str(tmp_path / "checkpoints"))
  file = tmp_path / "trufor.pth.tar"
  file.write_bytes(b"not a checkpoint")
  assert cli.main(["convert", "trufor", str(file), "--name", "trufor.bad"]) == 1
  captured = capsys.readouterr()
  assert captured.out == ""
  assert captured.err.count("\n") == 1 and str(file) in captured.err
  assert weights.released() == []  # nothing half-written


def test_human_line_names_score_and_picture():
  ok = {"path": "a.png", "size": [4, 5], "score": 0.25, "overlay_png": "out/a.png", "error": None}
  assert forgery_cli._human_line(ok) == "a.png (5x4): forgery score 0.250 -> out/a.png"
  assert "skipped" in forgery_cli._human_line({**ok, "error": "a.png: bad"})


@pytest.mark.parametrize("command", [("detect",), ("convert", "trufor")])
def test_every_flag_has_help(command):
  parser = cli.build_parser()
  for name in command:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parser = action.choices[name]
  for action in parser._actions:
    assert action.help, f"provjax {' '.join(command)}: {action.dest} has no help"


def test_detector_refuses_before_compiling(trufor_weights):
  del trufor_weights
  detector = Detector(provjax.load("trufor.test"), max_pixels=20)
  detector.check_size(4, 5)  # exactly the limit is allowed
  with pytest.raises(TooLargeError, match="6x4 = 24 pixels, limit 20"):
    detector(np.zeros((4, 6, 3), np.uint8))
  with pytest.raises(ValueError, match="HxWx3 uint8"):
    detector(np.zeros((4, 5), np.uint8))
  assert not detector._compiled  # nothing was compiled for a refused image
