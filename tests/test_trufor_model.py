"""TruFor model: shapes at odd sizes, per-part train modes, b2 size, sharded == unsharded."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
import subprocess
import sys
import textwrap

from flax import nnx
import jax
import numpy as np
import pytest

import provjax
from provjax.models import cmx, noiseprint, trufor

TSV = Path(__file__).resolve().parent / "reference" / "trufor_state_dict.tsv"


@pytest.fixture(scope="module", autouse=True)
def _quick_compiles():
  """XLA's optimisation passes dominate these tests on 2 cores; the checks do not need them."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)


def standin_model(variant: str, seed: int = 0) -> trufor.TruFor:
  """`trufor.<variant>` holding random values drawn like tests/reference/standin.py's.

  The structure comes from `create` (traced by nnx.eval_shape); the values
  skip the initialisers, whose per-shape compiles would dominate these tests.
  """
  abstract = nnx.eval_shape(lambda: provjax.create_model(f"trufor.{variant}"))
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(seed)

  def value(leaf, shape):
    if leaf == "var":
      return 1 + 0.5 * rng.random(shape)
    if leaf == "kernel":
      return rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
    return (0.0 if leaf in ("bias", "mean") else 1.0) + 0.1 * rng.standard_normal(shape)

  flat = [
      (path, var.replace(value(path[-1], var.shape).astype(np.float32)))
      for path, var in nnx.to_flat_state(state)
  ]
  return nnx.merge(graphdef, nnx.from_flat_state(flat))


@pytest.fixture(scope="module")
def tiny(_quick_compiles):
  return standin_model("tiny")


def _images(batch, h, w, seed=0):
  rng = np.random.default_rng(seed)
  return trufor.preprocess(rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8))


@nnx.jit
def _infer(model, x):
  return model(x)


@pytest.mark.parametrize("h, w", [(37, 53), (64, 96)])
def test_tiny_shapes_and_finite_at_odd_sizes(tiny, h, w):
  x = _images(1, h, w)
  out = _infer(tiny, x)
  assert out["loc_logits"].shape == (1, h, w, 2)
  assert out["conf_logits"].shape == (1, h, w, 1)
  assert out["det_logit"].shape == (1,)
  assert out["noiseprint"].shape == (1, h, w, 1)
  for name, value in out.items():
    assert np.isfinite(np.asarray(value)).all(), name
  # Stage sizes: ceil(H / 4), then ceil(/ 2) per stage.
  _, feats = nnx.eval_shape(lambda m, x: m.encode(x), tiny, x)
  sizes, (fh, fw) = [], (math.ceil(h / 4), math.ceil(w / 4))
  for _ in range(4):
    sizes.append((fh, fw))
    fh, fw = math.ceil(fh / 2), math.ceil(fw / 2)
  assert [f.shape[1:3] for f in feats] == sizes
  assert [f.shape[-1] for f in feats] == list(trufor.VARIANTS["tiny"]["embed_dims"])


def _batch_stats(model, part):
  return jax.tree.map(np.asarray, nnx.state(getattr(model, part), nnx.BatchStat))


@pytest.mark.slow  # two train-mode compiles of the whole model (~25 s on 2 cores)
@pytest.mark.parametrize(
    "train", [("dncnn", "decode_head", "detection"), ("backbone", "decode_head_conf")]
)
def test_parts_in_train_mode_move_their_batch_stats_only(tiny, train):
  model = nnx.clone(tiny)
  before = {p: _batch_stats(model, p) for p in trufor.TruFor.PARTS if p != "detection"}
  step = nnx.jit(lambda m, x, key: m(x, train=train, rngs=key))
  out = step(model, _images(2, 32, 32, seed=1), jax.random.key(0))
  assert np.isfinite(np.asarray(out["det_logit"])).all()
  for part, stats in before.items():
    after = _batch_stats(model, part)
    changed = [
        not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(after))
    ]
    if part in train:
      assert all(changed), f"{part} trained but some running stats did not move"
    else:
      assert not any(changed), f"{part} in eval mode but its running stats moved"


def test_train_mode_dropout_needs_rngs_and_parts_are_checked(tiny):
  x = _images(2, 32, 32)
  with pytest.raises(ValueError, match="no `rngs`"):
    nnx.eval_shape(lambda m, x: m(x, train=("detection",)), tiny, x)
  with pytest.raises(ValueError, match=r"unknown TruFor parts \['head'\]"):
    trufor.TruFor.train_parts(("head",))
  assert trufor.TruFor.train_parts(True) == frozenset(trufor.TruFor.PARTS)


def test_drop_path_schedule_has_the_stage2_quirk():
  rgb, extra = cmx.drop_path_rates((3, 4, 6, 3), 0.1)
  dpr = np.linspace(0, 0.1, 16)
  np.testing.assert_allclose(rgb[0], dpr[0:3])
  np.testing.assert_allclose(rgb[1], [dpr[3]] * 4)
  np.testing.assert_allclose(extra[1], [dpr[4]] * 4)
  np.testing.assert_allclose(rgb[2], dpr[7:13])
  assert rgb[3] == extra[3] and np.isclose(rgb[3][-1], 0.1)


def _tsv_values() -> int:
  """Values in the official state dict less the 0-d num_batches_tracked counters."""
  total = 0
  for line in TSV.read_text().splitlines():
    if line.startswith("#") or not line.strip():
      continue
    key, shape, _ = line.split("\t")
    if not key.endswith("num_batches_tracked"):
      total += math.prod(int(s) for s in shape.strip("()").split(",") if s.strip())
  return total


@pytest.mark.slow
def test_b2_has_the_official_parameter_count(tiny):
  b2 = nnx.eval_shape(lambda: provjax.create_model("trufor.b2"))
  assert trufor.count_values(b2) == _tsv_values() == 68_705_510 - 25
  assert trufor.count_values(tiny) * 4 < 20 * 2**20


SHARDING_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from flax import nnx
    from provjax.models import trufor
    from provjax.train import mesh as mesh_lib

    RULES = (("conv_in", None), ("conv_out", "model"), ("embed_in", None),
             ("embed_out", "model"), ("head", None))
    TRAIN = ("dncnn", "backbone", "decode_head", "decode_head_conf")

    def loss(model, x, key):
      out = model(x, train=TRAIN, rngs=key)
      return sum(v.astype(np.float32).mean() for v in out.values())

    jax.config.update("jax_disable_most_optimizations", True)
    sys.path.insert(0, sys.argv[2])
    from test_trufor_model import standin_model

    graphdef, state = nnx.split(standin_model(sys.argv[1]))
    x = trufor.preprocess(np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
    key = jax.random.key(1)
    single = float(nnx.jit(loss)(nnx.merge(graphdef, state), x, key))

    mesh = mesh_lib.make_mesh((4, 2))
    with jax.set_mesh(mesh), nnx.logical_axis_rules(RULES):
      sharded_state = jax.device_put(state, nnx.get_named_sharding(state, mesh))
    xs = jax.device_put(x, mesh_lib.batch_sharding(mesh))
    with jax.set_mesh(mesh):
      sharded = float(nnx.jit(loss)(nnx.merge(graphdef, sharded_state), xs, key))
    spread = max(len(v.sharding.device_set) for v in jax.tree.leaves(sharded_state))
    split = sum("model" in str(v.sharding.spec) for v in jax.tree.leaves(sharded_state))
    print(json.dumps(dict(single=single, sharded=sharded, spread=spread, split=split)))
""")


def _sharded_vs_single(variant: str) -> dict:
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-c", SHARDING_SCRIPT, variant, str(Path(__file__).parent)],
      env=env,
      capture_output=True,
      text=True,
      timeout=1200,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _check_sharded(out: dict):
  assert out["spread"] == 8 and out["split"] > 0, out
  np.testing.assert_allclose(out["sharded"], out["single"], rtol=1e-5)


@pytest.mark.slow  # about 35 s; the b2 version above is slow too: run both with -m slow
def test_tiny_sharded_matches_single_device():
  """Training-mode loss (batch-stat BN, stochastic depth) on a (4, 2) mesh == one device."""
  _check_sharded(_sharded_vs_single("tiny"))


@pytest.mark.slow
def test_b2_sharded_matches_single_device():
  _check_sharded(_sharded_vs_single("b2"))


def test_noiseprint_dncnn_init():
  """DnCNN init: conv and BN gamma N(0, sqrt(2 / (9 C))), zero first bias, one output channel."""
  np_model = provjax.create_model("noiseprint.tiny")
  width = noiseprint.VARIANTS["tiny"]["width"]
  gammas = np.concatenate([np.asarray(bn.scale[...]) for bn in np_model.norms])
  kernels = np.concatenate([np.asarray(c.kernel[...]).ravel() for c in np_model.convs[1:-1]])
  expected = np.sqrt(2 / (9 * width))
  assert abs(gammas.std() / expected - 1) < 0.2
  assert abs(kernels.std() / expected - 1) < 0.05
  assert np_model.convs[-1].kernel.shape == (3, 3, width, 1)
  assert np_model.convs[1].bias is None and not np.asarray(np_model.convs[0].bias[...]).any()
