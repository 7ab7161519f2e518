"""RepMix model and loss: gating and loss on hand-computed cases, every mixing level,
the mixing layer's batch statistics, and 8 simulated devices == 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from flax import nnx
import jax.numpy as jnp
import numpy as np
import pytest

import provjax
from provjax.models import repmix
from provjax.tasks import repmix as repmix_task


def test_gate_scales_real_by_p_real_and_fakes_by_p_fake():
  a = jnp.array([[2.0, -1.0, 4.0]])
  d = jnp.array([[np.log(3.0), 0.0]])  # softmax -> P(real) 0.75, P(fake) 0.25
  np.testing.assert_allclose(repmix.gate(a, d), [[1.5, -0.25, 1.0]], rtol=1e-6)


def test_mix_samples_is_the_weighted_sum_of_consecutive_pairs():
  x = jnp.arange(8.0).reshape(4, 2)  # samples s0a, s0b, s1a, s1b
  w = jnp.array([[0.25, 0.75], [1.0, 0.0]])
  np.testing.assert_allclose(repmix.mix_samples(x, w), [[1.5, 2.5], [4.0, 5.0]])


def _log_softmax(z):
  z = np.asarray(z, np.float64)
  return z - np.log(np.sum(np.exp(z - z.max()))) - z.max()


def test_loss_matches_a_hand_computed_case():
  """Two samples, K = 3: mixed CE on a' + detection CE weighted [1, 1/2], not re-normalised."""
  a = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
  d = np.array([[0.3, -0.2], [-1.0, 1.0]])
  labels = np.array([[0, 2], [1, 1]])
  mix = np.array([[0.3, 0.7], [0.6, 0.4]])
  attr = det = 0.0
  for b in range(2):
    la, ld = _log_softmax(a[b]), _log_softmax(d[b])
    for i in range(2):
      y = labels[b, i]
      attr += mix[b, i] * -la[y] / 2
      det += mix[b, i] * (1.0 if y == 0 else 0.5) * -ld[int(y > 0)] / 2
  loss, parts = repmix_task.repmix_loss(
      jnp.array(a), jnp.array(d), jnp.array(labels), jnp.array(mix)
  )
  np.testing.assert_allclose(parts["attr"], attr, rtol=1e-6)
  np.testing.assert_allclose(parts["det"], det, rtol=1e-6)
  np.testing.assert_allclose(loss, attr + det, rtol=1e-6)
  _, unweighted = repmix_task.repmix_loss(
      jnp.array(a), jnp.array(d), jnp.array(labels), jnp.array(mix), weighted_detection=False
  )
  assert float(unweighted["det"]) > float(parts["det"])


@pytest.mark.parametrize("level", repmix.MIX_LEVELS)
def test_every_mixing_level_runs_and_mixing_is_off_at_inference(level):
  model = provjax.create_model("repmix.tiny", mix_level=level)
  x = jnp.asarray(np.random.default_rng(level).random((4, 24, 24, 3)), jnp.float32)
  out = model(x, train=True, mix=jnp.array([[0.3, 0.7], [0.5, 0.5]]))
  assert out["attribution"].shape == (2, 7) and out["detection"].shape == (2, 2)
  assert out["embedding"].shape == (2, 256)
  model.eval()
  assert model(x)["attribution"].shape == (4, 7)  # no mixing at inference


def test_mixing_at_the_input_equals_mixing_the_pixels():
  model = provjax.create_model("repmix.tiny", mix_level=0)
  model.eval()
  x = jnp.asarray(np.random.default_rng(0).random((2, 24, 24, 3)), jnp.float32)
  w = jnp.array([[0.2, 0.8]])
  # Eval mode: the mix is applied by hand with train=False to use running statistics.
  mixed = model._mix(0, (x - 0.5) / 0.5, w)  # pylint: disable=protected-access
  direct = 0.2 * x[0] + 0.8 * x[1]
  np.testing.assert_allclose(mixed[0], (direct - 0.5) / 0.5, rtol=1e-6, atol=1e-6)


def test_no_gating_gives_the_raw_attribution_logits():
  model = provjax.create_model("repmix.tiny", gating=False)
  model.eval()
  x = jnp.full((1, 24, 24, 3), 0.5)
  out = model(x)
  e = out["embedding"]
  np.testing.assert_allclose(out["attribution"], model.attribution(e), rtol=1e-6)


def test_bad_level_and_variant_are_refused():
  with pytest.raises(ValueError, match="mix_level"):
    provjax.create_model("repmix.tiny", mix_level=7)
  with pytest.raises(ValueError, match="unknown repmix variant"):
    provjax.create_model("repmix.huge")


def test_r50_is_the_paper_trunk():
  model = nnx.eval_shape(lambda: provjax.create_model("repmix.r50"))
  params = nnx.state(model, nnx.Param)
  count = sum(int(np.prod(p.shape)) for p in __import__("jax").tree.leaves(params))
  # torchvision ResNet-50 without fc (23,508,032) + Linear(2048, 256) + heads 256->8, 256->2.
  assert count == 23_508_032 + 2048 * 256 + 256 + 256 * 8 + 8 + 256 * 2 + 2
  assert model.mix_level == 5 and model.num_classes == 8


SHARDED = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from provjax.config import load_config
    from provjax.train import mesh as mesh_lib
    from provjax.tasks import repmix as task
    cfg = load_config("configs/repmix/repmix.py:tiny", [])
    rng = np.random.default_rng(0)
    batch = {"images": rng.integers(0, 256, (8, 2, 24, 24, 3), dtype=np.uint8),
             "labels": rng.integers(0, 7, (8, 2)).astype(np.int32),
             "mix": np.full((8, 2), 0.5, np.float32)}
    out = {}
    for shape in [(1, 1), (4, 2)]:
      mesh = mesh_lib.make_mesh(shape)
      with jax.set_mesh(mesh), nnx.logical_axis_rules(mesh_lib.sharding_rules(cfg)):
        model = task.create_model(cfg, nnx.Rngs(0))
        sharded = mesh_lib.shard_batch(batch, mesh)
        loss_grad = nnx.jit(nnx.value_and_grad(
            lambda m, b: task.loss_fn({"model": m}, b, None, cfg)[0]))
        loss, grads = loss_grad(model, sharded)
      spec = model.stages[0][0].convs[0].kernel.value.sharding.spec
      out[str(shape)] = dict(loss=float(loss), spec=str(spec),
                             gnorm=float(jnp.sqrt(sum(jnp.sum(g ** 2)
                                                  for g in jax.tree.leaves(grads)))))
    print(json.dumps(out))
""")


@pytest.mark.slow  # two compilations of the tiny train loss: about 40 s (like the TruFor check)
def test_eight_simulated_devices_equal_one():
  env = {
      **os.environ,
      "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
      "JAX_PLATFORMS": "cpu",
  }
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run(
      [sys.executable, "-c", SHARDED],
      env=env,
      cwd=root,
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  one, eight = out["(1, 1)"], out["(4, 2)"]
  np.testing.assert_allclose(eight["loss"], one["loss"], rtol=1e-5)
  np.testing.assert_allclose(eight["gnorm"], one["gnorm"], rtol=1e-4)
  assert eight["spec"] == "P(None, None, None, 'model')"
