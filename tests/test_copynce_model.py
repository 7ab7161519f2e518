"""ViT, CopyNCE descriptor and matcher, SSCD: shapes, unit norms, which tokens come out,
DINO's position-embedding interpolation on hand-computed cases, the vits16 size
against the official key list, and 8 simulated devices == 1.

Models are built abstractly and filled with numpy values (random init compiles
one program per parameter shape, which is slow on CPU); the slow mesh test
creates them for real.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys
import textwrap

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import provjax
from provjax.models import sscd, vit

REFERENCE = Path(__file__).resolve().parent / "reference"
sys.path.insert(0, str(REFERENCE))
import standin  # pylint: disable=g-import-not-at-top,wrong-import-position


def _filled(name: str, seed: int = 0, **overrides) -> nnx.Module:
  """`name` with deterministic numpy values in place of its initialiser's (eval mode)."""
  abstract = nnx.eval_shape(lambda: provjax.create_model(name, **overrides))
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(seed)
  filled = []
  for path, var in nnx.to_flat_state(state):
    shape = tuple(var.shape)
    if path[-1] == "var":
      value = 1 + 0.5 * rng.random(shape)
    elif path[-1] == "scale":
      value = 1 + 0.1 * rng.standard_normal(shape)
    elif len(shape) == 2 or len(shape) == 4:
      value = rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
    else:
      value = 0.05 * rng.standard_normal(shape)
    filled.append((path, var.replace(jnp.asarray(value, var.dtype))))
  model = nnx.merge(graphdef, nnx.from_flat_state(filled))
  model.eval()
  return model


def _images(n: int, size, seed: int = 0):
  h, w = (size, size) if isinstance(size, int) else size
  return jnp.asarray(np.random.default_rng(seed).standard_normal((n, h, w, 3)), jnp.float32)


def _unit(x):
  np.testing.assert_allclose(np.linalg.norm(np.asarray(x), axis=-1), 1.0, rtol=1e-5)


_forward = nnx.jit(lambda m, x, train=False: m(x, train=train), static_argnames="train")


@nnx.jit
def _last_block_tokens(encoder, x):
  x = encoder.embed(x)
  for block in encoder.blocks:
    x = block(x)
  return x


@pytest.fixture(scope="module")
def descriptor():
  return _filled("copynce.tiny")


def test_descriptor_gives_unit_features_and_the_last_blocks_raw_tokens(descriptor):
  x = _images(2, 64)
  out = _forward(descriptor, x)
  assert out["feat"].shape == (2, 256) and out["cls"].shape == (2, 128)
  assert out["patches"].shape == (2, 64, 128)  # an 8 x 8 grid of 8-px patches
  _unit(out["feat"])
  # No final LayerNorm: the outputs are the last block's tokens as they are.
  tokens = _last_block_tokens(descriptor.encoder, x)
  np.testing.assert_allclose(out["patches"], tokens[:, 1:], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(out["cls"], tokens[:, 0], rtol=1e-4, atol=1e-4)
  assert abs(float(jnp.std(out["cls"][0])) - 1) > 0.05  # not a normalised token


def test_train_mode_uses_batch_statistics(descriptor):
  model, x = nnx.clone(descriptor), _images(2, 64)
  train = _forward(model, x, train=True)["feat"]
  _unit(train)
  assert not np.allclose(train, _forward(descriptor, x)["feat"], atol=1e-3)
  assert not np.allclose(model.bn.mean[...], descriptor.bn.mean[...])  # running stats moved


def test_another_image_size_interpolates_the_position_embedding(descriptor):
  out = _forward(descriptor, _images(1, (96, 80)))
  assert out["patches"].shape == (1, 12 * 10, 128)
  _unit(out["feat"])


@pytest.fixture(scope="module")
def matcher():
  return _filled("copynce_matcher.tiny", seed=1)


def test_matcher_shapes_and_no_segment_embedding(matcher):
  """With no segment or position embedding in the fusion, swapping the images only swaps the
  token groups: the logit is symmetric and q_tokens(a, b) == r_tokens(b, a)."""
  a, b = _images(2, 64, seed=2), _images(2, 64, seed=3)
  run = nnx.jit(lambda m, q, r: m(q, r))
  ab, ba = run(matcher, a, b), run(matcher, b, a)
  assert ab["logit"].shape == (2,)
  assert ab["q_tokens"].shape == ab["r_tokens"].shape == (2, 64, 128)
  assert ab["q_cls"].shape == ab["fused_cls"].shape == ab["head_cls"].shape == (2, 128)
  np.testing.assert_allclose(ab["logit"], ba["logit"], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(ab["q_tokens"], ba["r_tokens"], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(ab["q_cls"], ba["r_cls"], rtol=1e-5, atol=1e-5)
  assert not np.allclose(ab["q_tokens"], ab["r_tokens"], atol=1e-2)
  # Token outputs pass the head's LayerNorm: (t - bias) / scale is normalised per token.
  norm = matcher.token_norm
  t = (np.asarray(ab["q_tokens"]) - np.asarray(norm.bias[...])) / np.asarray(norm.scale[...])
  np.testing.assert_allclose(t.mean(-1), 0.0, atol=1e-4)
  np.testing.assert_allclose(t.std(-1), 1.0, atol=1e-3)


def test_gem_on_hand_computed_maps():
  x = jnp.asarray([[1.0, 2.0], [-5.0, 0.0]]).reshape(1, 2, 2, 1)
  # Negative and zero activations clamp to 1e-6: mean(1, 8, ~0, ~0) = 9 / 4.
  np.testing.assert_allclose(sscd.gem(x), [[(9 / 4) ** (1 / 3)]], rtol=1e-6)
  np.testing.assert_allclose(sscd.gem(jnp.full((1, 3, 3, 2), 0.7)), [[0.7, 0.7]], rtol=1e-6)


def test_sscd_gives_unit_features():
  out = _forward(_filled("sscd.tiny", seed=2), _images(2, 64))
  assert set(out) == {"feat"} and out["feat"].shape == (2, 256)
  _unit(out["feat"])


def test_bicubic_weights_match_pytorchs_kernel_by_hand():
  # Halving 4 -> 2 (scale 0.5): sources 0.5 and 2.5, so t = 0.5 with A = -0.75 weights
  # (-0.09375, 0.59375, 0.59375, -0.09375) on taps -1..2, clamped at the borders.
  w = vit.bicubic_matrix(4, 2, 0.5)
  np.testing.assert_allclose(
      w, [[0.5, 0.59375, -0.09375, 0.0], [0.0, -0.09375, 0.59375, 0.5]], atol=1e-12
  )
  np.testing.assert_allclose(vit.bicubic_matrix(5, 5, 1.0), np.eye(5), atol=1e-12)
  # DINO's +0.1: 14 -> 21 at scale 21.1 / 14 keeps every row a partition of unity.
  np.testing.assert_allclose(vit.bicubic_matrix(14, 21, 21.1 / 14).sum(1), 1.0, atol=1e-12)


def test_interpolation_keeps_cls_and_follows_the_separable_weights():
  rng = np.random.default_rng(0)
  pos = jnp.asarray(rng.standard_normal((1, 1 + 16, 3)), jnp.float32)
  out = np.asarray(vit.interpolate_pos_embed(pos, (6, 5)))
  assert out.shape == (1, 1 + 30, 3)
  np.testing.assert_array_equal(out[0, 0], pos[0, 0])
  rows, cols = vit.bicubic_matrix(4, 6, 6.1 / 4), vit.bicubic_matrix(4, 5, 5.1 / 4)
  table = np.asarray(pos[0, 1:]).reshape(4, 4, 3)
  expected = np.einsum("hi,ijc,wj->hwc", rows, table, cols).reshape(30, 3)
  np.testing.assert_allclose(out[0, 1:], expected, rtol=1e-5, atol=1e-6)


def test_the_trained_grid_keeps_the_table_only_for_square_images():
  model = _filled("vit.tiny")
  pos = model.pos_embed[...]
  assert model.position_embedding((1, 64, 64, 3)) is pos
  # 64 x 71 still gives an 8 x 8 grid, but DINO interpolates for any non-square image.
  assert not np.allclose(model.position_embedding((1, 64, 71, 3)), pos)


# ViT-S/16 pieces: patch conv, CLS, 197 positions, one block (2 LN, qkv, proj, fc1, fc2).
_PATCH, _CLS, _POS = 384 * 3 * 16 * 16 + 384, 384, 197 * 384
_BLOCK = (
    4 * 384 + (384 * 1152 + 1152) + (384 * 384 + 384) + (384 * 1536 + 1536) + (1536 * 384 + 384)
)
_LN = 2 * 384
PARAMS = {
    "descriptor": _PATCH + _CLS + _POS + 12 * _BLOCK + 384 * 512 + 2 * 512,
    "matcher": _PATCH + _CLS + _POS + 8 * _BLOCK + _CLS + 4 * _BLOCK + _LN + _LN + 385 + _LN,
}


@pytest.mark.parametrize("kind, name", [("descriptor", "copynce"), ("matcher", "copynce_matcher")])
def test_vits16_has_the_official_parameter_count(kind, name):
  model = nnx.eval_shape(lambda: provjax.create_model(f"{name}.vits16"))
  ours = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
  buffers = ("running_mean", "running_var", "num_batches_tracked")
  official = sum(
      int(np.prod(shape))
      for key, shape, _ in standin.entries(f"copynce_{kind}")
      if not key.endswith(buffers)
  )
  assert ours == official == PARAMS[kind]


SHARDED = textwrap.dedent("""
    import json, types
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    import provjax
    from provjax.train import mesh as mesh_lib
    cfg = types.SimpleNamespace(sharding_rules=[("embed_out", "model"), ("conv_out", "model")])
    x = np.random.default_rng(0).standard_normal((8, 64, 64, 3)).astype(np.float32)
    calls = {  # name: (forward, a parameter whose sharding is reported)
        "copynce.tiny": (lambda m, b: m(b["x"])["feat"], lambda m: m.encoder.blocks[0].attn.qkv),
        "copynce_matcher.tiny": (
            lambda m, b: m(b["x"], b["x"][::-1])["logit"], lambda m: m.fusion.blocks[0].mlp.fc1
        ),
        "sscd.tiny": (lambda m, b: m(b["x"])["feat"], lambda m: m.trunk.stages[0][0].convs[0]),
    }
    out = {}
    for shape in [(1, 1), (4, 2)]:
      mesh = mesh_lib.make_mesh(shape)
      with jax.set_mesh(mesh), nnx.logical_axis_rules(mesh_lib.sharding_rules(cfg)):
        for name, (call, layer) in calls.items():
          model = provjax.create_model(name, seed=0)
          model.eval()
          y = nnx.jit(call)(model, mesh_lib.shard_batch({"x": x}, mesh))
          out[f"{shape} {name}"] = np.asarray(y).tolist()
          out[f"{shape} {name} spec"] = str(layer(model).kernel.value.sharding.spec)
    print(json.dumps(out))
""")


@pytest.mark.slow  # creates three tiny models twice in a mesh: about two minutes on 2 cores
def test_eight_simulated_devices_equal_one():
  env = {
      **os.environ,
      "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
      "JAX_PLATFORMS": "cpu",
  }
  root = Path(__file__).resolve().parents[1]
  proc = subprocess.run(
      [sys.executable, "-c", SHARDED],
      env=env,
      cwd=root,
      capture_output=True,
      text=True,
      timeout=900,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  for name in ("copynce.tiny", "copynce_matcher.tiny", "sscd.tiny"):
    np.testing.assert_allclose(out[f"(4, 2) {name}"], out[f"(1, 1) {name}"], rtol=1e-4, atol=1e-5)
  assert out["(4, 2) copynce.tiny spec"] == "P(None, 'model')"
  assert out["(4, 2) copynce_matcher.tiny spec"] == "P(None, 'model')"
  assert out["(4, 2) sscd.tiny spec"] == "P(None, None, None, 'model')"
