"""`provjax inpaint` and `provjax convert safepaint / vgg19` through the command-line entry point,
and the Inpainter underneath (padding, merging, masks)."""

import argparse
import json
import os
import sys

from flax import nnx
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

import provjax
from provjax import cli, weights
from provjax.inpainting import cli as inpaint_cli
from provjax.inpainting.inpainter import Inpainter, pad, padding, read_mask
from provjax.models import safepaint

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "reference"))
import standin  # pylint: disable=g-import-not-at-top,wrong-import-position

# `safepaint.tiny` cut to one ResBlock and width 16 (the RWSA gates need width / 16 >= 1):
# compiles in seconds per padded size.
MICRO = dict(width=16, blocks=1, style_width=16)


def random_safepaint(seed: int = 0, **overrides) -> nnx.Module:
  """`safepaint.tiny` (with overrides) and random weights drawn by numpy.

  Eager initialisation dispatches every initializer op on its own and takes a
  minute on a busy 2-core machine; this takes a second. Kernels are scaled by
  their fan-in so activations stay in range; the RWSA smoothing kernels
  (buffers, not weights) get their real value.
  """
  abstract = nnx.eval_shape(lambda: provjax.create_model("safepaint.tiny", **overrides))
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
    }.get(path[-1], lambda: 0.05 * rng.standard_normal(shape))
    if isinstance(var, safepaint.Buffer):
      draw = lambda: safepaint.smoothing_kernel(shape[0])[:, :, None, None]
    leaves.append((path, var.replace(jnp.asarray(draw(), var.dtype))))
  return nnx.merge(graphdef, nnx.from_flat_state(leaves))


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
  """A random micro SafePaint, also released as `safepaint.test` in a temp checkpoints folder."""
  root = tmp_path_factory.mktemp("checkpoints")
  mp = pytest.MonkeyPatch()
  mp.setenv("PROVJAX_CHECKPOINTS", str(root))
  try:
    weights.export(
        random_safepaint(**MICRO), "safepaint.test", arch="safepaint.tiny", overrides=MICRO
    )
    # Loaded, not the model in memory: its arrays are placed as the command's are, so the
    # command's compilation serves the tests of the library too.
    yield provjax.load("safepaint.test")
  finally:
    mp.undo()


def _picture(height: int, width: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width]
  base = 120 + 80 * np.sin(x / 5.0)[..., None] * np.cos(y / 7.0)[..., None]
  return np.clip(base + rng.normal(0, 10, (height, width, 3)), 0, 255).astype(np.uint8)


def _hole(height: int, width: int) -> np.ndarray:
  hole = np.zeros((height, width), bool)
  hole[height // 4 : height // 2, width // 3 : 2 * width // 3] = True
  hole[-3:, :5] = True  # touches the frame: the padding mirrors it
  return hole


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """Images (odd sizes, PNG and JPEG, all padded to 64 x 80) and masks by stem, some bad."""
  images, masks = tmp_path_factory.mktemp("images"), tmp_path_factory.mktemp("masks")
  sizes = {"odd": (37, 77), "wide": (40, 80)}
  for n, (stem, (h, w)) in enumerate(sizes.items()):
    Image.fromarray(_picture(h, w, n)).save(images / f"{stem}.png")
    Image.fromarray(_hole(h, w).astype(np.uint8) * 255).save(masks / f"{stem}.png")
  Image.fromarray(_picture(30, 78, 5)).save(images / "photo.jpg", quality=95)
  Image.fromarray(_hole(30, 78).astype(np.uint8) * 255).save(masks / "photo.jpg", quality=90)
  (images / "corrupt.png").write_bytes((images / "odd.png").read_bytes()[:100])
  Image.fromarray(np.full((37, 77), 255, np.uint8)).save(masks / "corrupt.png")
  Image.fromarray(_picture(20, 20, 6)).save(images / "nomask.png")
  Image.fromarray(_picture(20, 24, 7)).save(images / "mismatch.png")
  Image.fromarray(np.full((24, 20), 255, np.uint8)).save(masks / "mismatch.png")
  Image.fromarray(_picture(25, 25, 8)).save(images / "badmask.png")
  (masks / "badmask.png").write_bytes(b"not a png")
  Image.fromarray(_picture(37, 77, 9)).save(images / "empty.png")
  Image.fromarray(np.zeros((37, 77), np.uint8)).save(masks / "empty.png")  # nothing to fill
  return images, masks, sizes


def _lines(text: str) -> list[dict]:
  return [json.loads(line) for line in text.splitlines()]


def _read(path) -> np.ndarray:
  with Image.open(path) as im:
    assert im.format == "PNG" and im.mode == "RGB"
    return np.asarray(im)


# ------------------------------------------------------------ the command ---


def test_batch_matches_masks_by_stem_and_reports_bad_inputs(micro, inputs, tmp_path, capsys):
  del micro
  images, masks, sizes = inputs
  stems = ["odd", "corrupt", "wide", "nomask", "mismatch", "badmask", "empty"]
  paths = [str(images / f"{s}.png") for s in stems] + [str(images / "photo.jpg")]
  out = tmp_path / "out"
  code = cli.main(
      ["inpaint", *paths, "--masks", str(masks), "--out", str(out), "--model", "safepaint.test"]
      + ["--json", "--no-progress"]
  )
  captured = capsys.readouterr()
  assert code == 1
  records = _lines(captured.out)
  assert [r["path"] for r in records] == paths  # input order, one line each
  by_stem = dict(zip(stems + ["photo"], records))

  for stem, name in (("corrupt", "corrupt.png"), ("nomask", "nomask"), ("badmask", "badmask.png")):
    record = by_stem[stem]
    assert record["output"] is None and name in record["error"]
  assert "no mask" in by_stem["nomask"]["error"] and by_stem["nomask"]["mask"] is None
  assert str(masks / "badmask.png") in by_stem["badmask"]["error"]  # the bad file is the mask
  assert "20x24" in by_stem["mismatch"]["error"] and "24x20" in by_stem["mismatch"]["error"]
  skipped = [line for line in captured.err.splitlines() if "skipped" in line]
  assert len(skipped) == 4

  for stem in ("odd", "wide", "photo"):
    record = by_stem[stem]
    assert record["error"] is None and record["output"] == str(out / f"{stem}.png")
    original = np.asarray(Image.open(record["path"]).convert("RGB"))
    hole = read_mask(record["mask"])
    result = _read(record["output"])
    assert result.shape == original.shape and list(result.shape[:2]) == record["size"]
    assert record["hole_fraction"] == pytest.approx(hole.mean())
    np.testing.assert_array_equal(result[~hole], original[~hole])  # kept pixel for pixel
    assert np.any(result[hole] != original[hole])  # and the hole was filled
  assert [r["size"] for r in (by_stem["odd"], by_stem["wide"])] == [list(s) for s in sizes.values()]
  empty = by_stem["empty"]
  assert empty["error"] is None and empty["hole_fraction"] == 0.0
  np.testing.assert_array_equal(_read(empty["output"]), np.asarray(Image.open(empty["path"])))
  written = ["empty.png", "odd.png", "photo.png", "wide.png"]
  assert sorted(p.name for p in out.iterdir()) == written  # and no temporary file left


def test_single_image_form_and_human_lines(micro, inputs, tmp_path, capsys):
  del micro
  images, masks, _ = inputs
  out = tmp_path / "deep" / "filled.png"
  argv = ["inpaint", str(images / "odd.png"), "--mask", str(masks / "odd.png"), "--out", str(out)]
  assert cli.main(argv + ["--model", "safepaint.test", "--no-progress", "--json"]) == 0
  (record,) = _lines(capsys.readouterr().out)
  assert record["output"] == str(out) and record["mask"] == str(masks / "odd.png")
  assert _read(out).shape == (37, 77, 3)
  line = inpaint_cli._human_line(record)
  assert line.startswith(f"{images / 'odd.png'} (77x37, hole ") and line.endswith(str(out))
  assert "skipped" in inpaint_cli._human_line({**record, "error": "x: bad"})


def test_argument_errors_exit_2(micro, inputs, tmp_path, capsys):
  del micro
  images, masks, _ = inputs
  odd, wide = str(images / "odd.png"), str(images / "wide.png")
  by_stem = ["--masks", str(masks)]
  png, folder = str(tmp_path / "x.png"), str(tmp_path)
  model = ["--model", "safepaint.test", "--no-progress"]
  for argv in (
      [odd, "--out", png],  # no mask at all
      [odd, "--mask", odd, *by_stem, "--out", folder],
      [odd, *by_stem],  # --out missing
      [odd, *by_stem, "--out", folder, "--max-pixels", "0"],
  ):
    with pytest.raises(SystemExit) as e:
      cli.main(["inpaint", *argv, *model])
    assert e.value.code == 2
  (tmp_path / "file").write_text("")
  for argv, message in (
      ([odd, wide, "--mask", odd, "--out", png], "one IMAGE"),
      ([odd, "--mask", odd, "--out", str(tmp_path / "x.jpg")], ".png file"),
      ([odd, *by_stem, "--out", str(tmp_path / "file")], "not a directory"),
      ([odd, "--masks", str(tmp_path / "none"), "--out", folder], "--masks"),
      ([odd, str(tmp_path / "odd.jpg"), *by_stem, "--out", folder], "share"),
      ([odd, *by_stem, "--out", str(images)], "is an input"),  # onto odd.png itself
      ([odd, *by_stem, "--out", str(masks)], "is an input"),  # onto its mask
      ([odd, "--mask", odd, "--out", png, "--model", "safepaint.nope"], "no released weights"),
  ):
    assert cli.main(["inpaint", *model, *argv]) == 2  # a later --model overrides the first
    assert message in capsys.readouterr().err
  assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["convert", "safepaint"],
        ["convert", "safepaint", "{file}"],  # --name missing
        ["convert", "safepaint", "{missing}", "--name", "safepaint.x"],
        ["convert", "safepaint", "{file}", "--name", "trufor.x"],
        ["convert", "safepaint", "{file}", "--name", "safepaint."],
        ["convert", "vgg19", "{file}", "--name", "vgg19.x"],  # the arch is `vgg`
        ["convert", "vgg19", "{file}"],
    ],
)
def test_convert_argument_errors_exit_2(argv, tmp_path):
  file = tmp_path / "weights.pth"
  file.write_bytes(b"x")
  with pytest.raises(SystemExit) as e:
    cli.main([a.format(file=file, missing=tmp_path / "none.pth") for a in argv])
  assert e.value.code == 2


@pytest.mark.parametrize("system,name", [("safepaint", "safepaint.bad"), ("vgg19", "vgg.bad")])
def test_convert_bad_file_exits_1_with_one_line(system, name, tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("PROVJAX_CHECKPOINTS", str(tmp_path / "checkpoints"))
  file = tmp_path / "weights.pth"
  file.write_bytes(b"not a state dict")
  assert cli.main(["convert", system, str(file), "--name", name]) == 1
  captured = capsys.readouterr()
  assert captured.out == "" and captured.err.count("\n") == 1 and str(file) in captured.err
  assert weights.released() == []  # nothing half-written


@pytest.mark.parametrize("command", [("inpaint",), ("convert", "safepaint"), ("convert", "vgg19")])
def test_every_flag_has_help(command):
  parser = cli.build_parser()
  for name in command:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parser = action.choices[name]
  for action in parser._actions:
    assert action.help, f"provjax {' '.join(command)}: {action.dest} has no help"


# ------------------------------------------------------------ the library ---


def test_padding_reaches_the_size_the_generator_takes():
  assert padding(37, multiple=4, minimum=63) == (13, 14)  # 37 -> 64, split evenly
  assert padding(64, multiple=4, minimum=63) == (0, 0)
  assert padding(65, multiple=4, minimum=63) == (1, 2)  # 68
  assert padding(257, multiple=4, minimum=63) == (1, 2)  # 260
  for h, w in ((37, 50), (1, 3), (70, 129)):
    images = np.random.default_rng(0).integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    holes = np.zeros((2, h, w), bool)
    holes[:, 1:2, :] = True  # the second row: mirrored into the padding just above the image
    padded, padded_holes, (rows, cols) = pad(images, holes, multiple=4, minimum=63)
    ph, pw = padded.shape[1:3]
    assert ph % 4 == 0 and pw % 4 == 0 and min(ph, pw) >= 63
    assert ph - h < 4 + max(0, 63 - h) and padded_holes.shape == (2, ph, pw)
    np.testing.assert_array_equal(padded[:, rows, cols], images)
    np.testing.assert_array_equal(padded_holes[:, rows, cols], holes)
    if rows.start >= 2 and h > 2:
      # Reflection (not edge repetition): the row above the image mirrors its second row,
      # hole included; the one above that mirrors the third.
      np.testing.assert_array_equal(padded[:, rows.start - 1, cols], images[:, 1])
      assert padded_holes[:, rows.start - 1, cols].all()
      assert not padded_holes[:, rows.start - 2, cols].any()


def test_read_mask_thresholds_luminance_in_any_mode(tmp_path):
  levels = np.array([[0, 100, 127, 128, 200, 255]], np.uint8)
  expected = levels > 127
  cases = {
      "gray.png": Image.fromarray(levels),
      "rgb.png": Image.fromarray(np.repeat(levels[..., None], 3, axis=-1)),
      "palette.png": Image.fromarray(levels).convert("P"),
      "wide.png": Image.fromarray(levels.astype(np.uint16) * 257),  # 16-bit
  }
  for name, im in cases.items():
    im.save(tmp_path / name)
    np.testing.assert_array_equal(read_mask(str(tmp_path / name)), expected, err_msg=name)
  Image.fromarray(levels.astype(bool)).save(tmp_path / "bits.png")  # mode "1": 0 or 255
  np.testing.assert_array_equal(read_mask(str(tmp_path / "bits.png")), levels > 0)
  # JPEG: a 0/255 mask comes back with ringing around the edge, which the threshold ignores.
  square = np.zeros((32, 32), np.uint8)
  square[5:21, 6:23] = 255  # edges off the 8 x 8 blocks, so the compression rings
  Image.fromarray(square).save(tmp_path / "mask.jpg", quality=75)
  decoded = np.asarray(Image.open(tmp_path / "mask.jpg"))
  assert np.any((decoded > 0) != (square > 0))  # `> 0` (the official test) would grow the hole
  np.testing.assert_array_equal(read_mask(str(tmp_path / "mask.jpg")), square > 0)


def test_inpainter_keeps_the_outside_and_checks_its_inputs(micro):
  inpainter = Inpainter(micro)
  image = _picture(37, 77, 3)
  with pytest.raises(ValueError, match="the mask is 37x77 but the image is 77x37"):
    inpainter(image, np.ones((77, 37), bool))
  np.testing.assert_array_equal(inpainter(image, np.zeros((37, 77), bool)), image)
  assert not inpainter._compiled  # an empty hole runs nothing
  hole = _hole(37, 77)
  filled = inpainter(image, hole)
  assert filled.dtype == np.uint8 and filled.shape == image.shape
  np.testing.assert_array_equal(filled[~hole], image[~hole])
  assert list(inpainter._compiled) == [(1, 64, 80)]
  small = Inpainter(micro, max_pixels=37 * 77 - 1)
  with pytest.raises(ValueError, match="too large"):
    small(image, hole)


# ------------------------------------------------ the official reference ---


@pytest.fixture(scope="module")
def standin_release(tmp_path_factory):
  """The stand-in official weights converted by `provjax convert safepaint` into a temp root."""
  root = tmp_path_factory.mktemp("standin")
  mp = pytest.MonkeyPatch()
  mp.setenv("PROVJAX_CHECKPOINTS", str(root / "checkpoints"))
  try:
    file = root / "InpaintingModel_G.npz"
    np.savez(file, **standin.make("safepaint"))
    assert cli.main(["convert", "safepaint", str(file), "--name", "safepaint.standin"]) == 0
    yield root
  finally:
    mp.undo()


@pytest.mark.slow
def test_inpaint_reproduces_the_official_merged_output(standin_release, capsys):
  image, mask, _, m = standin.safepaint_input()
  reference = np.load(os.path.join(standin.HERE, "safepaint_reference_outputs.npz"))
  np.testing.assert_array_equal(reference["image"], image)
  image_png, mask_png = standin_release / "image.png", standin_release / "mask.png"
  Image.fromarray(image).save(image_png)
  Image.fromarray(mask).save(mask_png)
  out = standin_release / "filled.png"
  argv = ["inpaint", str(image_png), "--mask", str(mask_png), "--out", str(out)]
  assert cli.main(argv + ["--model", "safepaint.standin", "--no-progress"]) == 0
  capsys.readouterr()
  hole = m[0, 0]
  o2 = reference["output_stage2"][0].transpose(1, 2, 0)
  official = (image / 255.0 * (1 - hole[..., None]) + o2 * hole[..., None]) * 255.0
  error = np.abs(_read(out).astype(np.float64) - official)
  print(f"max abs difference vs the official merged output: {error.max():.3f} of 255")
  assert error.max() <= 2.0, f"max abs difference {error.max():.3f} of 255"


@pytest.mark.slow
def test_batch_equals_one_by_one(micro):
  inpainter = Inpainter(micro)
  images = np.stack([_picture(37, 50, seed) for seed in (10, 11)])
  holes = np.stack([_hole(37, 50), np.roll(_hole(37, 50), 9, axis=1)])
  together = inpainter.batch(images, holes)
  for image, hole, filled in zip(images, holes, together):
    np.testing.assert_array_equal(filled, inpainter(image, hole))
