"""Official TruFor state dict -> provjax weights, checked against the official model's outputs.

tests/reference/standin.py makes deterministic weights in the official layout
(every key of trufor_state_dict.tsv); trufor_reference_outputs.npz holds what
the official PyTorch TruFor computed with them in eval mode. Converting the
stand-in and reproducing those outputs proves the port and the converter
faithful. The check runs the way a user would: `provjax convert trufor` on the
stand-in, then `provjax detect` on the reference picture saved as PNG (maximum
absolute logit errors when the port was written: loc 3.6e-6, conf 2.8e-6, det
1.2e-7, noiseprint 1.5e-7).
"""

from __future__ import annotations

import json
from pathlib import Path
import sys

from flax import nnx
import numpy as np
from PIL import Image
import pytest

import provjax
from provjax import cli
from provjax.forgery import convert
from provjax.models import trufor

REFERENCE = Path(__file__).resolve().parent / "reference"
sys.path.insert(0, str(REFERENCE))
import standin  # pylint: disable=g-import-not-at-top,wrong-import-position

TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """The stand-in written as .npz and converted by `provjax convert trufor` into a temporary root."""
  tmp = tmp_path_factory.mktemp("trufor_convert")
  source = tmp / "trufor_standin.npz"
  np.savez(source, **standin.make("trufor"))
  mp = pytest.MonkeyPatch()
  mp.setenv("PROVJAX_CHECKPOINTS", str(tmp / "checkpoints"))
  try:
    assert cli.main(["convert", "trufor", str(source), "--name", "trufor.standin"]) == 0
    yield tmp / "checkpoints" / "trufor.standin"
  finally:
    mp.undo()


def _softmax1(logits):
  """Probability of class 1 along axis 1 (the official map)."""
  e = np.exp(logits - logits.max(axis=1, keepdims=True))
  return e[:, 1] / e.sum(axis=1)


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


@pytest.mark.slow
def test_detect_reproduces_the_official_outputs(converted, tmp_path, capsys, monkeypatch):
  """Converted weights run through `provjax detect` give the official map, conf, score, np++."""
  monkeypatch.setenv("PROVJAX_CHECKPOINTS", str(converted.parent))
  reference = np.load(REFERENCE / "trufor_reference_outputs.npz")
  image, official_input = standin.trufor_input()
  np.testing.assert_array_equal(reference["image"], image)
  np.testing.assert_array_equal(
      np.asarray(trufor.preprocess(image[None])), official_input.transpose(0, 2, 3, 1)
  )
  path = tmp_path / "reference.png"
  Image.fromarray(image).save(path)  # lossless: detect reads exactly these pixels
  capsys.readouterr()
  argv = ["detect", str(path), "--model", "trufor.standin", "--save-np", "--json"]
  assert cli.main(argv + ["--out", str(tmp_path / "out")]) == 0
  line = json.loads(capsys.readouterr().out.strip())
  ours = np.load(line["map_npz"])
  expected = {
      "map": _softmax1(reference["pred_logits"])[0],
      "conf": _sigmoid(reference["conf_logits"])[0, 0],
      "score": _sigmoid(reference["det_logit"])[0, 0],
      "np++": reference["noiseprint"][0, 0],  # the official tool tiles one channel to three
  }
  errors = {k: float(np.abs(ours[k] - v).max()) for k, v in expected.items()}
  print("max abs error vs official TruFor:", errors)
  for key, value in expected.items():
    assert ours[key].shape == np.shape(value), key
    assert errors[key] < TOLERANCE, errors
  assert line["score"] == pytest.approx(float(expected["score"]), abs=TOLERANCE)


@pytest.mark.slow
def test_released_folder_records_the_source(converted):
  folder = converted
  meta = json.loads((folder / "config.json").read_text())
  assert meta["arch"] == "trufor.b2"
  assert meta["converted_from"]["file"] == "trufor_standin.npz"
  assert meta["converted_from"]["keys"] == 952
  assert len(meta["converted_from"]["sha256"]) == 64


@pytest.fixture(scope="module")
def tiny_official():
  """A state dict in the official layout for the tiny variant, and the abstract model."""
  abstract = nnx.eval_shape(lambda: provjax.create_model("trufor.tiny"))
  _, state = nnx.split(abstract)
  rng = np.random.default_rng(0)
  sd = {}
  for path, var in nnx.to_flat_state(state):
    shape = convert.official_shape(var.shape)
    sd[convert.official_key(path)] = rng.standard_normal(shape).astype(np.float32)
  for key in list(sd):
    if key.endswith(".running_var"):
      sd[key.removesuffix("running_var") + "num_batches_tracked"] = np.zeros((), np.int64)
  return abstract, sd


def test_fill_places_every_tensor_in_jax_layout(tiny_official):
  abstract, sd = tiny_official
  model = convert.fill(abstract, sd, "tiny.npz")
  np.testing.assert_array_equal(
      model.backbone.stages[0].patch_embed.proj.kernel[...],
      sd["backbone.patch_embed1.proj.weight"].transpose(2, 3, 1, 0),
  )
  np.testing.assert_array_equal(
      model.backbone.stages[1].blocks[0].attn.q.kernel[...], sd["backbone.block2.0.attn.q.weight"].T
  )
  np.testing.assert_array_equal(
      model.backbone.extra_stages[0].blocks[0].mlp.dwconv.kernel[...],
      sd["backbone.extra_block1.0.mlp.dwconv.dwconv.weight"].transpose(2, 3, 1, 0),
  )
  np.testing.assert_array_equal(model.dncnn.norms[14].var[...], sd["dncnn.45.running_var"])
  np.testing.assert_array_equal(model.dncnn.convs[16].bias[...], sd["dncnn.47.bias"])
  np.testing.assert_array_equal(
      model.decode_head_conf.fuse_norm.mean[...], sd["decode_head_conf.linear_fuse.1.running_mean"]
  )
  np.testing.assert_array_equal(model.detection.fc2.kernel[...], sd["detection.3.weight"].T)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda sd: sd.pop("backbone.block1.0.attn.q.weight"),
            r"^tiny\.npz: missing official key\(s\) backbone\.block1\.0\.attn\.q\.weight$",
        ),
        (
            lambda sd: sd.update({"backbone.head.weight": np.zeros(3, np.float32)}),
            r"^tiny\.npz: unexpected key\(s\) backbone\.head\.weight$",
        ),
        (
            lambda sd: sd.update({"detection.0.weight": np.zeros((128, 9), np.float32)}),
            r"^tiny\.npz: detection\.0\.weight has shape \(128, 9\), expected \(128, 8\)$",
        ),
    ],
)
def test_conversion_errors_name_the_key(tiny_official, edit, message):
  abstract, sd = tiny_official
  sd = dict(sd)
  edit(sd)
  with pytest.raises(convert.ConversionError, match=message):
    convert.fill(abstract, sd, "tiny.npz")
