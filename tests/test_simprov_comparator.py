"""Comparator (ICN) model, warping layers and task: behaviour on tiny inputs."""

import math

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import provjax
from provjax.models import simprov_comparator as comparator
from provjax.models.layers import correlation, warp
from provjax.tasks import simprov_comparator as task


def _rngs(seed: int) -> nnx.Rngs:
  # An RBG key: threefry initialisers take seconds each to compile on CPU.
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def _smooth_image(y, x, seed=0):
  """Sum of coloured Gaussian blobs evaluated at continuous (y, x)."""
  rng = np.random.default_rng(seed)
  out = np.zeros(y.shape + (3,), np.float32)
  for _ in range(12):
    cy, cx = rng.uniform(0, 64, 2)
    s = rng.uniform(5, 12)
    out += rng.uniform(0, 1, 3) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s))[..., None]
  return np.clip(out / out.max(), 0, 1)


def _pair(size=64, angle_deg=5.0, shift=(3.0, -2.0), seed=0):
  """R and Q = R rotated about the centre and shifted, both rendered exactly."""
  yy, xx = np.meshgrid(
      np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32), indexing="ij"
  )
  c, a = (size - 1) / 2, math.radians(angle_deg)
  dy, dx = yy - c - shift[0], xx - c - shift[1]
  sy = math.cos(a) * dy + math.sin(a) * dx + c
  sx = -math.sin(a) * dy + math.cos(a) * dx + c
  return jnp.asarray(_smooth_image(yy, xx, seed)[None]), jnp.asarray(
      _smooth_image(sy, sx, seed)[None]
  )


@pytest.fixture(autouse=True, scope="module")
def _fast_compile():
  """XLA's CPU optimisation passes take longer than these tiny programs run."""
  old = jax.config._read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", old)


@pytest.fixture(scope="module")
def model():
  return provjax.create_model("simprov_comparator.tiny", rngs=_rngs(0))


# ---------------------------------------------------------------- warp layers


def test_grid_sample_integer_shift_is_exact():
  img = jnp.asarray(np.random.default_rng(0).random((2, 9, 11, 3)), jnp.float32)
  coords = warp.pixel_grid(9, 11)[None] + jnp.asarray([2.0, -3.0])
  out, valid = warp.grid_sample(img, jnp.tile(coords, (2, 1, 1, 1)), return_valid=True)
  np.testing.assert_array_equal(out[:, :7, 3:], img[:, 2:, :8])
  assert float(jnp.abs(out[:, 7:]).max()) == 0 and float(jnp.abs(out[:, :, :3]).max()) == 0
  np.testing.assert_array_equal(valid[0], (np.arange(9)[:, None] < 7) & (np.arange(11)[None] >= 3))


def test_grid_sample_matches_map_coordinates_and_gradients():
  rng = np.random.default_rng(1)
  img = jnp.asarray(rng.random((1, 9, 11, 3)), jnp.float32)
  coords = jnp.asarray(rng.uniform(-2, 12, (1, 5, 6, 2)), jnp.float32)
  ref = jnp.stack(
      [
          jax.scipy.ndimage.map_coordinates(
              img[0, ..., k], [coords[0, ..., 0], coords[0, ..., 1]], order=1, mode="constant"
          )
          for k in range(3)
      ],
      -1,
  )
  np.testing.assert_allclose(warp.grid_sample(img, coords)[0], ref, atol=1e-6)
  gi, gc = jax.grad(lambda i, c: jnp.sum(warp.grid_sample(i, c) ** 2), (0, 1))(img, coords)
  assert np.isfinite(gi).all() and np.isfinite(gc).all()
  # On the ramp I(y, x) = 2x + 3y the coordinate gradient is the slope, exactly.
  ramp = (2 * warp.pixel_grid(9, 11)[..., 1] + 3 * warp.pixel_grid(9, 11)[..., 0])[None, ..., None]
  pts = jnp.asarray([[[[2.3, 4.6], [6.5, 1.2]]]])
  g = jax.grad(lambda c: jnp.sum(warp.grid_sample(ramp, c)))(pts)
  np.testing.assert_allclose(g[0, 0], [[3.0, 2.0], [3.0, 2.0]], rtol=1e-6)


def test_affine_grid_identity_exact_and_matches_torch_formula():
  eye = jnp.asarray([[[1.0, 0, 0], [0, 1.0, 0]]])
  for h, w in ((224, 224), (13, 10)):
    np.testing.assert_array_equal(warp.affine_grid(eye, h, w)[0], warp.pixel_grid(h, w))
  theta = np.random.default_rng(2).normal(size=(2, 2, 3)).astype(np.float32)
  h, w, hs, ws = 6, 8, 10, 12
  jj, ii = np.meshgrid(np.arange(w), np.arange(h))
  xn, yn = (2 * jj + 1) / w - 1, (2 * ii + 1) / h - 1  # torch, align_corners=False
  xs = (
      theta[:, 0, 0, None, None] * xn + theta[:, 0, 1, None, None] * yn + theta[:, 0, 2, None, None]
  )
  ys = (
      theta[:, 1, 0, None, None] * xn + theta[:, 1, 1, None, None] * yn + theta[:, 1, 2, None, None]
  )
  expect = np.stack([((ys + 1) * hs - 1) / 2, ((xs + 1) * ws - 1) / 2], -1)
  np.testing.assert_allclose(
      warp.affine_grid(jnp.asarray(theta), h, w, src_hw=(hs, ws)), expect, atol=1e-5
  )


def test_local_correlation_and_adaptive_pool_match_naive_loops():
  rng = np.random.default_rng(3)
  a, b = rng.random((1, 5, 6, 4), np.float32), rng.random((1, 5, 6, 4), np.float32)
  got = np.asarray(correlation.local_correlation(jnp.asarray(a), jnp.asarray(b), 2))
  for y, x, dy, dx in [(0, 0, -2, -2), (2, 3, 1, -1), (4, 5, 2, 2), (3, 1, 0, 2)]:
    inside = 0 <= y + dy < 5 and 0 <= x + dx < 6
    want = float(a[0, y, x] @ b[0, y + dy, x + dx]) if inside else 0.0
    np.testing.assert_allclose(got[0, y, x, (dy + 2) * 5 + (dx + 2)], want, rtol=1e-5)
  f = rng.random((1, 5, 7, 2), np.float32)
  pooled = np.asarray(warp.adaptive_avg_pool(jnp.asarray(f), (2, 3)))
  for i in range(2):
    for j in range(3):  # torch: rows floor(i*H/o) .. ceil((i+1)*H/o)
      r0, r1 = i * 5 // 2, -(-(i + 1) * 5 // 2)
      c0, c1 = j * 7 // 3, -(-(j + 1) * 7 // 3)
      np.testing.assert_allclose(pooled[0, i, j], f[0, r0:r1, c0:c1].mean((0, 1)), rtol=1e-5)


@pytest.mark.slow
def test_warp_module_learns_translation_and_rotation():
  ref, query = _pair()
  with nnx.use_eager_sharding(False):
    m = warp.WarpModule(
        (8, 16, 24), radius=3, stn_hidden=64, flow_hidden=32, flow_levels=2, rngs=_rngs(1)
    )
  opt = nnx.Optimizer(m, optax.adam(3e-3), wrt=nnx.Param)

  def photometric(m):
    warped, _, valid = m(ref, query, train=True)
    return task.photometric_loss(ref, warped, valid, jnp.ones((1,), bool))

  @nnx.jit
  def step(m, opt):
    value, grads = nnx.value_and_grad(photometric)(m)
    opt.update(m, grads)
    return value

  losses = [float(step(m, opt)) for _ in range(100)]
  assert all(np.isfinite(losses))
  assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])


# --------------------------------------------------------------------- model


def _batch(seed=6):
  """Three 64 px pairs: benign (noisy copy), manipulated, distinct."""
  rng = np.random.default_rng(seed)
  ref = rng.random((3, 64, 64, 3)).astype(np.float32)
  query = np.clip(ref + 0.05 * rng.normal(size=ref.shape), 0, 1).astype(np.float32)
  query[1, 20:40, 30:50] = 1.0
  query[2] = rng.random((64, 64, 3))
  heat = np.zeros((3, 7, 7), np.float32)
  heat[1, 2:4, 3:5], heat[2] = 1.0, 1.0
  flow = np.broadcast_to(np.asarray(warp.pixel_grid(64, 64)), (3, 64, 64, 2)).copy()
  flow[2] = -1.0  # a distinct pair has no alignment
  edit = np.zeros((3, 64, 64), np.float32)
  edit[1, 20:40, 30:50], edit[2] = 1.0, 1.0
  labels = np.asarray([0, 1, 2], np.int32)
  return dict(ref=ref, query=query, label=labels, heatmap=heat, edit_mask=edit, flow=flow)


def test_forward_shapes_identity_warp_at_init_and_predict(model):
  batch = _batch()
  ref, query = jnp.asarray(batch["ref"]), jnp.asarray(batch["query"])
  out = nnx.jit(lambda m, r, q: m(r, q))(model, ref, query)
  assert out["logits"].shape == (3, 3) and out["heatmap"].shape == (3, 7, 7)
  assert out["warped"].shape == (3, 64, 64, 3) and out["coords"].shape == (3, 64, 64, 2)
  assert out["valid"].shape == (3, 64, 64) and bool(out["valid"].all())
  assert np.isfinite(out["logits"]).all() and np.isfinite(out["heatmap"]).all()
  np.testing.assert_array_equal(
      out["coords"], np.broadcast_to(warp.pixel_grid(64, 64), (3, 64, 64, 2))
  )
  np.testing.assert_allclose(out["warped"], query, atol=1e-6)
  # evaluate() runs the jitted eval_step; its verdicts must be the argmax.
  result = task.evaluate_batches(model, [batch])
  pred = np.argmax(np.asarray(out["logits"]), -1)
  assert result["accuracy"] == pytest.approx(np.mean(pred == batch["label"]), abs=1e-6)
  np.testing.assert_array_equal(result["confusion"].sum(1), [1, 1, 1])
  assert 0 <= result["emptiness"] <= 1 and 0 <= result["iou"] <= 1


def test_heatmap_at_test_time_rule():
  raw = jnp.asarray(np.random.default_rng(5).normal(size=(3, 7, 7)), jnp.float32)
  out = np.asarray(comparator.heatmap_at_test_time(raw, jnp.asarray([0, 1, 2])))
  assert (out[0] == 0).all() and (out[2] == 1).all()
  assert out[1].min() == 0 and out[1].max() == pytest.approx(1.0, abs=1e-5)
  np.testing.assert_array_equal(np.argsort(out[1], None), np.argsort(np.asarray(raw[1]), None))


def test_parameters_carry_logical_axis_names():
  mesh = jax.make_mesh((1, 1), ("data", "model"))
  rules = (
      ("conv_in", None),
      ("conv_out", "model"),
      ("embed_in", None),
      ("embed_out", "model"),
      ("head", None),
  )
  with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
    abstract = nnx.eval_shape(lambda: comparator.create("tiny", rngs=nnx.Rngs(0)))
  specs = jax.tree.leaves(
      nnx.get_partition_spec(nnx.state(abstract, nnx.Param)),
      is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec),
  )
  params = jax.tree.leaves(nnx.state(abstract, nnx.Param))
  assert len(specs) == len(params) > 50
  names = {n for s in specs for n in s}
  assert (
      {"conv_in", "conv_out", "embed_in", "embed_out", "head"}
      <= names
      <= {None, "conv_in", "conv_out", "embed_in", "embed_out", "head"}
  )
  assert all(any(n is not None for n in s) for s in specs)


# ---------------------------------------------------------------------- task


def test_loss_terms_on_hand_made_cases():
  z, e = jnp.zeros((1, 7, 7)), jnp.eye(7)[None]
  both = jnp.concatenate([z, e, e, z])
  other = jnp.concatenate([z, e, 1 - e, e])
  np.testing.assert_allclose(task.cosine_heatmap_loss(both, other), [0, 0, 1, 1], atol=1e-6)
  grads = jax.grad(lambda p: task.cosine_heatmap_loss(p, other).sum())(both)
  assert np.isfinite(grads).all()
  ref = jnp.zeros((3, 2, 2, 3))
  warped = jnp.ones((3, 2, 2, 3)) * jnp.asarray([0.5, 1.0, 3.0])[:, None, None, None]
  valid = jnp.asarray([[[1, 1], [0, 0]]] * 3, bool)
  # Sample 2 is distinct (excluded); invalid pixels never count.
  loss = task.photometric_loss(ref, warped, valid, jnp.asarray([True, True, False]))
  np.testing.assert_allclose(loss, (0.25 + 1.0) / 2, rtol=1e-6)


def test_coordinate_loss_is_zero_for_a_perfect_warp_and_grows_with_the_error():
  flow = np.broadcast_to(np.asarray(warp.pixel_grid(8, 8)), (2, 8, 8, 2)).copy()
  flow[:, :2] = -1.0  # rows the query does not show: no target there
  use = jnp.asarray([True, True])
  perfect = task.coordinate_loss(jnp.asarray(flow), flow, use)
  assert float(perfect) < 2e-3  # the smoothing eps only
  losses = [float(task.coordinate_loss(jnp.asarray(flow + d), flow, use)) for d in (0.5, 1, 2, 4)]
  assert all(a < b for a, b in zip(losses, losses[1:]))
  # An error of (2, 2) px everywhere: end-point error 2 sqrt(2) / side.
  np.testing.assert_allclose(losses[2], 2 * np.sqrt(2) / 8, rtol=1e-3)
  # Pixels without a target and unused (distinct) samples never count.
  moved = flow + 4.0
  moved[:, :2] = 1e3
  np.testing.assert_allclose(task.coordinate_loss(jnp.asarray(moved), flow, use), losses[3], 1e-5)
  off = task.coordinate_loss(jnp.asarray(moved), flow, jnp.asarray([True, False]))
  np.testing.assert_allclose(off, losses[3], rtol=1e-5)
  grad = jax.grad(lambda c: task.coordinate_loss(c, flow, use))(jnp.asarray(flow))
  assert np.isfinite(grad).all()


def test_normalised_photometric_term_is_the_reference_scale():
  ref, warped = jnp.zeros((1, 2, 2, 3)), jnp.full((1, 2, 2, 3), 0.1)
  valid, use = jnp.ones((1, 2, 2), bool), jnp.ones((1,), bool)
  plain = task.photometric_loss(ref, warped, valid, use)
  scaled = task.photometric_loss(ref, warped, valid, use, normalized=True)
  std = np.asarray([0.229, 0.224, 0.225])
  np.testing.assert_allclose(scaled, np.mean(0.01 / std**2), rtol=1e-5)
  assert float(scaled) > 15 * float(plain)


def test_dense_head_gives_a_finer_map_and_learns_from_the_edit_mask():
  m = provjax.create_model("simprov_comparator.tiny", rngs=_rngs(0), dense_side=16)
  batch = _batch()
  ref, query = jnp.asarray(batch["ref"]), jnp.asarray(batch["query"])
  out = nnx.jit(lambda m, r, q: m(r, q))(m, ref, query)
  assert out["dense_heatmap"].shape == (3, 16, 16) and out["heatmap"].shape == (3, 7, 7)
  pred = nnx.jit(lambda m, r, q: m.predict(r, q))(m, ref, query)
  assert pred["heatmap"].shape == (3, 16, 16)
  loss = task.make_loss_fn(dense_weight=0.5)
  (_, metrics), grads = nnx.value_and_grad(loss, has_aux=True)(m, task.to_float(batch), None)
  assert np.isfinite(float(metrics["dense"]))
  assert float(jnp.abs(grads.dense_out.kernel.value).sum()) > 0


def test_dense_target_is_the_pooled_coverage_over_its_peak():
  mask = np.zeros((1, 8, 8), np.float32)
  mask[0, :4, :2] = 1.0  # the top-left cell full, the one to its right half covered
  target = np.asarray(task.dense_target(jnp.asarray(mask), 2))
  np.testing.assert_allclose(target[0], [[1.0, 0.0], [0.0, 0.0]])
  target = np.asarray(task.dense_target(jnp.asarray(mask), 4))
  np.testing.assert_allclose(target[0], [[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
  mask[0, :2, 2] = 1.0
  np.testing.assert_allclose(
      np.asarray(task.dense_target(jnp.asarray(mask), 4))[0, 0, :2], [1, 0.5]
  )
  np.testing.assert_array_equal(task.dense_target(jnp.zeros((1, 8, 8)), 4), 0.0)


@pytest.mark.slow  # compiling the comparator's train step (~25 s)
def test_one_training_step(model):
  batch = _batch()

  trained = nnx.clone(model)
  opt = nnx.Optimizer(trained, optax.adam(1e-3), wrt=nnx.Param)

  @nnx.jit
  def train_step(m, opt, batch):
    (_, metrics), grads = nnx.value_and_grad(task.pair_loss, has_aux=True)(m, batch, None)
    opt.update(m, grads)
    return metrics

  before = jax.tree.map(np.asarray, nnx.state(trained, nnx.Param))
  metrics = train_step(trained, opt, batch)
  assert set(metrics) == {"loss", "ce", "heatmap", "photometric", "coords", "accuracy"}
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert float(metrics["photometric"]) > 0  # the benign pair is noisy
  after = nnx.state(trained, nnx.Param)
  flat_before = dict(jax.tree.leaves_with_path(before))
  unchanged = [
      path for path, b in jax.tree.leaves_with_path(after) if np.allclose(flat_before[path], b)
  ]
  # Only layers behind a zero-initialised output get no gradient on the first
  # step: the warp (identity STN, zero flow) and the residual branches of
  # trunk blocks (zero-init last BN scale).
  assert all(path[0].key in ("warp", "trunk") for path in unchanged), unchanged
  moved = {jax.tree_util.keystr(path) for path in flat_before} - {
      jax.tree_util.keystr(path) for path in unchanged
  }
  for name in (
      "['cls_head']['kernel']",
      "['heatmap_head']['kernel']",
      "['fusion']['kernel']",
      "['warp']['stn']['out']['bias']",
      "['warp']['flow']['heads'][1]['out']['kernel']",
      "['split_stem']['stem']['conv']['kernel']",
  ):
    assert any(m.startswith(name) for m in moved), name


@pytest.mark.parametrize("name", ["simprov_comparator.synth-v2", "simprov_comparator.synth-v3"])
def test_one_query_against_many_refs_equals_the_broadcast_pairs(name):
  """The engine passes the query once; the trained warp (and the dense head) must see it as
  k copies."""
  model = provjax.load(name)
  s = model.image_size
  rng = np.random.default_rng(3)
  query = rng.random((1, s, s, 3), np.float32)
  refs = np.concatenate([np.roll(query, 4 * i, axis=2) for i in range(4)]) * 0.9
  predict = nnx.jit(lambda m, r, q: m.predict(r, q))
  once = predict(model, jnp.asarray(refs), jnp.asarray(query))
  pairs = predict(model, jnp.asarray(refs), jnp.asarray(np.repeat(query, 4, axis=0)))
  assert not np.allclose(pairs["coords"], warp.pixel_grid(s, s), atol=1e-2)  # a real warp
  for key in ("probs", "heatmap", "coords", "warped"):
    np.testing.assert_allclose(once[key], pairs[key], atol=2e-5, err_msg=key)
  with pytest.raises(ValueError, match="4 references need 4 queries"):
    model(jnp.asarray(refs), jnp.asarray(query), train=True)
