"""Official CopyNCE state dicts -> provjax weights, checked against the official model's outputs.

tests/reference/standin.py makes deterministic weights in the official layout
(every key of copynce_{descriptor,matcher}_state_dict.tsv);
copynce_reference_outputs.npz holds what the official PyTorch ViT-S/16
descriptor and matcher computed with them in eval mode on two 224-px images
(a picture and its mirror; the matcher on the pairs (a, b) and (b, a)).
Converting the stand-ins and reproducing those outputs proves the ports and
the converter faithful. The descriptor goes the released-weights way (.npz ->
`convert_copynce` -> `provjax.load`); the matcher is read from a torch.save
checkpoint wrapped the way the official Checkpointer writes it. Maximum
absolute errors when the port was written: descriptor feat 1.5e-7, CLS 1.0e-5;
matcher sigmoid 3.6e-7, CLS tokens 8.1e-6 (encoder), 2.8e-6 (fusion, head).
With LayerNorm eps 1e-6 instead of the official 1e-4 the descriptor CLS is off
by 4.7e-2, so the check tells the two apart.
"""

from __future__ import annotations

import json
from pathlib import Path
import sys

from flax import nnx
import jax
import numpy as np
import pytest

import provjax
from provjax.copydetect import convert
from provjax.models import copynce

TESTS = Path(__file__).resolve().parent
REFERENCE = TESTS / "reference"
sys.path.insert(0, str(REFERENCE))
sys.path.insert(0, str(TESTS))
import standin  # pylint: disable=g-import-not-at-top,wrong-import-position
from test_torch_format import write_checkpoint  # pylint: disable=g-import-not-at-top,wrong-import-position

TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def reference():
  return np.load(REFERENCE / "copynce_reference_outputs.npz")


@pytest.fixture(scope="module")
def model_input(reference):
  return reference["model_input"].transpose(0, 2, 3, 1)  # NCHW -> NHWC


@pytest.fixture(scope="module")
def released(tmp_path_factory):
  """The descriptor stand-in written as .npz and converted into a temporary checkpoints root."""
  tmp = tmp_path_factory.mktemp("copynce_convert")
  source = tmp / "copynce_descriptor_standin.npz"
  np.savez(source, **standin.make("copynce_descriptor"))
  mp = pytest.MonkeyPatch()
  mp.setenv("PROVJAX_CHECKPOINTS", str(tmp / "checkpoints"))
  try:
    folder = convert.convert_copynce(source, "copynce.standin")
    yield folder, provjax.load("copynce.standin")
  finally:
    mp.undo()


def _max_error(ours, official) -> float:
  assert np.shape(ours) == np.shape(official)
  return float(np.abs(np.asarray(ours) - official).max())


def test_preprocess_reproduces_the_official_input(reference, model_input):
  ours = np.asarray(copynce.preprocess(reference["images"]))
  np.testing.assert_allclose(ours, model_input, atol=1e-6)


def test_descriptor_reproduces_the_official_outputs(released, reference, model_input):
  _, model = released
  out = nnx.jit(lambda m, x: m(x))(model, model_input)
  errors = {
      "feat": _max_error(out["feat"], reference["descriptor_feat"]),
      "cls": _max_error(out["cls"], reference["descriptor_cls_token"]),
  }
  print("max abs error vs official CopyNCE descriptor:", errors)
  assert max(errors.values()) < TOLERANCE, errors
  np.testing.assert_allclose(np.linalg.norm(out["feat"], axis=1), 1.0, rtol=1e-5)
  assert out["patches"].shape == (2, 196, 384)


def test_released_folder_records_the_source(released):
  folder, _ = released
  meta = json.loads((folder / "config.json").read_text())
  assert meta["arch"] == "copynce.vits16" and meta["overrides"] == {}
  source = meta["converted_from"]
  assert source["kind"] == "descriptor" and "eddielyc/CopyNCE" in source["source"]
  assert source["file"] == "copynce_descriptor_standin.npz"
  assert source["keys"] == len(standin.entries("copynce_descriptor")) == 154
  assert len(source["sha256"]) == 64


def test_matcher_from_an_official_checkpoint_reproduces_the_outputs(
    tmp_path, reference, model_input
):
  path = tmp_path / "matcher_vits_224.pth.tar"
  write_checkpoint(path, {"model": standin.make("copynce_matcher"), "epoch": 30})
  model = convert.load_copynce(path)  # kind inferred from the keys
  a, b = model_input[:1], model_input[1:]
  out = nnx.jit(lambda m, q, r: m(q, r))(model, np.concatenate([a, b]), np.concatenate([b, a]))
  errors = {
      "preds": _max_error(jax.nn.sigmoid(out["logit"])[:, None], reference["matcher_preds"]),
      "que_cls": _max_error(out["q_cls"], reference["matcher_que_cls_token"]),
      "ref_cls": _max_error(out["r_cls"], reference["matcher_ref_cls_token"]),
      "fused_cls": _max_error(out["fused_cls"], reference["matcher_fused_cls_token"]),
      "head_cls": _max_error(out["head_cls"], reference["matcher_cls_head_cls_token"]),
  }
  print("max abs error vs official CopyNCE matcher:", errors)
  assert max(errors.values()) < TOLERANCE, errors
  assert out["q_tokens"].shape == out["r_tokens"].shape == (2, 196, 384)


def test_conversion_places_every_tensor_in_jax_layout(released):
  _, model = released
  sd = standin.make("copynce_descriptor")
  enc = model.encoder
  np.testing.assert_array_equal(
      enc.patch_embed.kernel[...], sd["encoder.patch_embed.proj.weight"].transpose(2, 3, 1, 0)
  )
  np.testing.assert_array_equal(
      enc.blocks[3].attn.qkv.kernel[...], sd["encoder.blocks.3.attn.qkv.weight"].T
  )
  np.testing.assert_array_equal(enc.pos_embed[...], sd["encoder.pos_embed"])
  np.testing.assert_array_equal(model.fc.kernel[...], sd["heads.linear_head.fc1.weight"].T)
  np.testing.assert_array_equal(model.bn.var[...], sd["heads.linear_head.bn.running_var"])


def test_the_position_embedding_gives_the_training_size():
  grid = lambda g: {"encoder.pos_embed": np.zeros((1, 1 + g * g, 384), np.float32)}
  assert convert.image_size_of(grid(14), "f") == 224
  assert convert.image_size_of(grid(21), "f") == 336  # the 336-px matcher configs


@pytest.fixture(scope="module")
def descriptor():
  """The stand-in and the abstract vits16 descriptor it fills."""
  abstract = nnx.eval_shape(lambda: provjax.create_model("copynce.vits16"))
  return standin.make("copynce_descriptor"), abstract


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda sd: sd.pop("encoder.blocks.5.mlp.fc1.bias"),
            r"^sd\.npz: missing official key\(s\) encoder\.blocks\.5\.mlp\.fc1\.bias$",
        ),
        (
            lambda sd: sd.update({"encoder.norm.weight": np.ones(384, np.float32)}),
            r"^sd\.npz: unexpected key\(s\) encoder\.norm\.weight$",
        ),
        (
            lambda sd: sd.update(
                {"heads.linear_head.fc1.weight": np.zeros((256, 384), np.float32)}
            ),
            r"^sd\.npz: heads\.linear_head\.fc1\.weight has shape \(256, 384\), "
            r"expected \(512, 384\)$",
        ),
    ],
)
def test_conversion_errors_name_the_key(descriptor, edit, message):
  sd, abstract = descriptor
  sd = dict(sd)
  edit(sd)
  with pytest.raises(convert.ConversionError, match=message):
    convert.fill(abstract, "descriptor", sd, "sd.npz")


def test_a_position_embedding_off_a_square_grid_is_refused():
  sd = {"encoder.pos_embed": np.zeros((1, 190, 384), np.float32)}
  message = r"^sd\.npz: encoder\.pos_embed has shape \(1, 190, 384\), not \[1, 1 \+ g \* g, C\]$"
  with pytest.raises(convert.ConversionError, match=message):
    convert.image_size_of(sd, "sd.npz")


def test_kind_is_inferred_and_the_name_checked(tmp_path):
  matcher_keys = [k for k, _, _ in standin.entries("copynce_matcher")]
  assert convert.infer_kind(matcher_keys) == "matcher"
  with pytest.raises(convert.ConversionError, match="neither a CopyNCE matcher"):
    convert.infer_kind(["encoder.cls_token"])
  path = tmp_path / "d.npz"
  np.savez(path, **{"heads.linear_head.fc1.weight": np.zeros((512, 384), np.float32)})
  with pytest.raises(ValueError, match=r"released as copynce\.<tag>, got 'copynce_matcher\.x'"):
    convert.convert_copynce(path, "copynce_matcher.x")
