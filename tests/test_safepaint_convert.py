"""Official SafePaint state dict -> provjax weights, checked against the official model's outputs.

tests/reference/standin.py makes deterministic weights in the official layout
(every key of safepaint_state_dict.tsv, the RWSA smoothing kernels included);
safepaint_reference_outputs.npz holds what the official PyTorch
InpaintGenerator computed with them in eval mode on `standin.safepaint_input()`:
both stage outputs and the four style vectors. Converting the stand-in and
reproducing those outputs proves the port and the converter faithful. The full
check goes the released-weights way (.npz -> `convert_safepaint` ->
`provjax.load`) and runs the 256 x 256 model once (slow on 2 cores); the
default run checks the style encoder's two codes of the input (z_b, z_gt),
which need the extractor alone. Maximum absolute errors when the port was
written: o1 8.0e-6, o2 2.6e-5; z_b 8.9e-7, z_gt 4.6e-7, z_c 1.9e-6, z_r 3.8e-6.
"""

from __future__ import annotations

import json
from pathlib import Path
import sys
import time

from flax import nnx
import jax
import numpy as np
import pytest

import provjax
from provjax import torch_format
from provjax.inpainting import convert
from provjax.models import safepaint

TESTS = Path(__file__).resolve().parent
REFERENCE = TESTS / "reference"
sys.path.insert(0, str(REFERENCE))
sys.path.insert(0, str(TESTS))
import standin  # pylint: disable=g-import-not-at-top,wrong-import-position
from test_torch_format import write_checkpoint  # pylint: disable=g-import-not-at-top,wrong-import-position

TOLERANCE = 1e-3  # relative to the value's scale: outputs are in [0, 1], codes about 1
STYLES = {
    "z_b": "bg_style",
    "z_gt": "real_fg_style",
    "z_c": "coarse_fg_style",
    "z_r": "refine_fg_style",
}


@pytest.fixture(scope="module")
def reference():
  return np.load(REFERENCE / "safepaint_reference_outputs.npz")


@pytest.fixture(scope="module")
def standin_weights():
  return standin.make("safepaint")


@pytest.fixture(scope="module")
def model_input(reference):
  """The reference input NHWC, checked against what the official loader gives."""
  image, mask, x, m = standin.safepaint_input()
  np.testing.assert_array_equal(reference["image"], image)
  np.testing.assert_array_equal(reference["mask"], mask)
  images, masks = safepaint.to_input(image, mask > 127)
  np.testing.assert_allclose(images, x.transpose(0, 2, 3, 1), rtol=1e-6)
  np.testing.assert_array_equal(masks, m.transpose(0, 2, 3, 1))
  return images, masks


def _errors(ours: dict, reference) -> dict:
  """Maximum absolute error of every output against the official, NCHW and (B, 16, 1, 1)."""
  errors = {}
  for key, official in (("o1", "output_stage1"), ("o2", "output_stage2"), *STYLES.items()):
    value = np.asarray(ours[key])
    value = value.transpose(0, 3, 1, 2) if value.ndim == 4 else value[:, :, None, None]
    assert value.shape == reference[official].shape, key
    errors[key] = float(np.abs(value - reference[official]).max())
  return errors


def _scale(reference, key: str) -> float:
  return max(1.0, float(np.abs(reference[key]).max()))


@pytest.fixture(scope="module")
def abstract_full():
  return nnx.eval_shape(lambda: provjax.create_model("safepaint.full"))


def test_the_official_keys_are_exactly_the_tsv(abstract_full, standin_weights):
  """Every `full` parameter names one official key of the right PyTorch shape, and back."""
  ours = {
      convert.official_key(path): convert.official_shape(var.shape)
      for path, var in nnx.to_flat_state(nnx.state(abstract_full))
  }
  official = {
      k: s for k, s, _ in standin.entries("safepaint") if not k.endswith("num_batches_tracked")
  }
  assert ours == official
  assert len(standin_weights) == 192


def test_the_style_encoder_reproduces_the_official_codes(standin_weights, reference, model_input):
  model = convert.build(standin_weights, source="standin")
  images, masks = model_input
  encode = nnx.jit(lambda e, x, r: e(x, r))
  codes = {
      "z_b": encode(model.extractor, images, 1 - masks),
      "z_gt": encode(model.extractor, images, masks),
  }
  errors = {
      key: float(np.abs(np.asarray(codes[key]) - reference[STYLES[key]][:, :, 0, 0]).max())
      for key in codes
  }
  print("max abs error vs official SafePaint style codes:", errors)
  for key, error in errors.items():
    assert error <= TOLERANCE * _scale(reference, STYLES[key]), errors


@pytest.fixture(scope="module")
def released(tmp_path_factory, standin_weights):
  """The stand-in written as .npz and converted into a temporary checkpoints root."""
  tmp = tmp_path_factory.mktemp("safepaint_convert")
  source = tmp / "safepaint_standin.npz"
  np.savez(source, **standin_weights)
  mp = pytest.MonkeyPatch()
  mp.setenv("PROVJAX_CHECKPOINTS", str(tmp / "checkpoints"))
  try:
    folder = convert.convert_safepaint(source, "safepaint.standin")
    yield folder, provjax.load("safepaint.standin")
  finally:
    mp.undo()


@pytest.mark.slow
def test_released_weights_reproduce_the_official_outputs(released, reference, model_input):
  _, model = released
  images, masks = model_input
  forward = nnx.jit(lambda m, x, k: m(x, k))
  out = jax.block_until_ready(forward(model, images, masks))
  start = time.perf_counter()
  jax.block_until_ready(forward(model, images, masks))
  seconds = time.perf_counter() - start
  print(f"full SafePaint forward at 256 x 256, jitted, second call: {seconds:.2f} s")
  errors = _errors(out, reference)
  print("max abs error vs official SafePaint:", errors)
  for key, official in (("o1", "output_stage1"), ("o2", "output_stage2"), *STYLES.items()):
    assert errors[key] <= TOLERANCE * _scale(reference, official), errors
  x, m = np.asarray(images), np.asarray(masks)
  official_c2 = x * (1 - m) + reference["output_stage2"].transpose(0, 2, 3, 1) * m
  assert np.abs(np.asarray(out["c2"]) - official_c2).max() <= 2 / 255


@pytest.mark.slow
def test_released_folder_records_the_source(released, standin_weights):
  folder, model = released
  meta = json.loads((folder / "config.json").read_text())
  assert meta["arch"] == "safepaint.full" and meta["overrides"] == {}
  assert meta["converted_from"]["file"] == "safepaint_standin.npz"
  assert meta["converted_from"]["keys"] == 192
  assert "hnucdy/SafePaint" in meta["converted_from"]["source"]
  assert "1 = hole" in meta["preprocessing"]["mask"]
  np.testing.assert_array_equal(
      model.fine_generator.att1.gaussian_mask.kernel[...],
      standin_weights["fine_generator.att1.gaussianMask.weight"].transpose(2, 3, 1, 0),
  )


@pytest.fixture(scope="module")
def tiny_official():
  """A state dict in the official layout for the tiny variant, and the abstract model."""
  abstract = nnx.eval_shape(lambda: provjax.create_model("safepaint.tiny"))
  rng = np.random.default_rng(0)
  sd = {}
  for path, var in nnx.to_flat_state(nnx.state(abstract)):
    shape = convert.official_shape(var.shape)
    sd[convert.official_key(path)] = rng.standard_normal(shape).astype(np.float32)
  for key in list(sd):
    if key.endswith(".running_var"):
      sd[key.removesuffix("running_var") + "num_batches_tracked"] = np.zeros((), np.int64)
  return abstract, sd


def test_an_official_checkpoint_is_unwrapped_and_placed_in_jax_layout(tmp_path, tiny_official):
  """The official save(): {"iteration": n, "generator": state_dict}; ConvT (in, out, kh, kw)."""
  abstract, sd = tiny_official
  path = tmp_path / "InpaintingModel_G.pth"
  write_checkpoint(path, {"iteration": 1200, "generator": sd})
  loaded = torch_format.load_state_dict(path)
  assert loaded.keys() == sd.keys()
  model = convert.fill(abstract, loaded, str(path))
  coarse, fine = model.coarse_generator, model.fine_generator
  conv = lambda key: sd[key].transpose(2, 3, 1, 0)
  np.testing.assert_array_equal(
      coarse.encoder[1].kernel[...], conv("coarse_generator.encoder.4.weight")
  )
  np.testing.assert_array_equal(
      coarse.decoder[0].kernel[...], conv("coarse_generator.decoder.0.weight")
  )
  np.testing.assert_array_equal(coarse.decoder[2].bias[...], sd["coarse_generator.decoder.7.bias"])
  np.testing.assert_array_equal(
      fine.middle[1].conv2.kernel[...], conv("fine_generator.middle.1.conv_block.5.weight")
  )
  np.testing.assert_array_equal(fine.deconv2.kernel[...], conv("fine_generator.deconv2.weight"))
  np.testing.assert_array_equal(
      fine.att2.mixed_attention.fc2.kernel[...],
      sd["fine_generator.att2.mixed_attention.fc.2.weight"].T,
  )
  np.testing.assert_array_equal(
      fine.att3.connection.rbn1.var[...], sd["fine_generator.att3.connection.rbn1.running_var"]
  )
  np.testing.assert_array_equal(
      fine.att1.gaussian_mask.kernel[...], conv("fine_generator.att1.gaussianMask.weight")
  )
  np.testing.assert_array_equal(
      model.extractor.norm3f.mean[...], sd["extractor.norm3f.running_mean"]
  )
  assert model.extractor.conv2f.bias is None and model.extractor.conv1f.bias is not None


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda sd: sd.pop("fine_generator.att2.gaussianMask.weight"),
            r"^sd\.npz: missing official key\(s\) fine_generator\.att2\.gaussianMask\.weight$",
        ),
        (
            lambda sd: sd.update({"extractor.conv2f.bias": np.zeros(128, np.float32)}),
            r"^sd\.npz: unexpected key\(s\) extractor\.conv2f\.bias$",
        ),
        (
            lambda sd: sd.update(
                {"coarse_generator.decoder.0.weight": np.zeros((128, 256, 4, 4), np.float32)}
            ),
            r"^sd\.npz: coarse_generator\.decoder\.0\.weight has shape \(128, 256, 4, 4\), "
            r"expected \(256, 128, 4, 4\)$",
        ),
    ],
)
def test_conversion_errors_name_the_key(abstract_full, standin_weights, edit, message):
  """On the full stand-in: a ConvT weight in the Conv layout (out, in, ...) is refused too."""
  sd = dict(standin_weights)
  edit(sd)
  with pytest.raises(convert.ConversionError, match=message):
    convert.fill(abstract_full, sd, "sd.npz")


def test_the_name_must_be_a_safepaint_tag(tmp_path):
  with pytest.raises(ValueError, match=r"released as safepaint\.<tag>, got 'vgg\.x'"):
    convert.convert_safepaint(tmp_path / "g.pth", "vgg.x")
