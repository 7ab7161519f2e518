"""SafePaint training: the losses on hand-computed cases, spectral norm against an SVD, the
PatchGAN's patch grid, the training samples, the joint-backward switch, and (slow) real steps of
the real modules through the trainer."""

from __future__ import annotations

import functools
from pathlib import Path

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from provjax import registry, weights
from provjax.config import load_config
from provjax.data import inpainting
from provjax.metrics.inpainting import RATIO_BINS
from provjax.models import patchgan
from provjax.models.layers import spectral_norm
from provjax.models.safepaint import merge
from provjax.tasks import inpaint_losses as losses
from provjax.tasks import safepaint as task
from provjax.tasks.contract import check_batch
from provjax.train import trainer

ROOT = Path(__file__).resolve().parents[1]
CONFIG = f"{ROOT}/configs/safepaint/safepaint.py"
EPS = losses.PAIRWISE_EPS


def _rngs(seed: int = 0) -> nnx.Rngs:
  """Rngs on "rbg" keys: on CPU their generator compiles ~10x faster than threefry, and every
  new parameter shape compiles one."""
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


# ------------------------------------------------------------------ losses ---


def test_hole_l1_divides_the_whole_image_l1_by_the_hole_fraction():
  target = np.ones((1, 2, 2, 3), np.float32)
  output = target.copy()
  output[0, 0, 0] = 0.0  # |error| 1 on 3 of the 12 values
  masks = np.zeros((1, 2, 2, 1), np.float32)
  masks[0, 0, 0] = 1.0  # a quarter of the image is hole
  assert float(losses.hole_l1(output, target, masks)) == pytest.approx((3 / 12) / 0.25)


def test_gram_matches_explicit_sums():
  f = np.random.default_rng(0).normal(size=(2, 3, 2, 4)).astype(np.float32)
  want = np.zeros((2, 4, 4))
  for b in range(2):
    for c in range(4):
      for d in range(4):
        want[b, c, d] = sum(f[b, y, x, c] * f[b, y, x, d] for y in range(3) for x in range(2))
  np.testing.assert_allclose(losses.gram(jnp.asarray(f)), want / (4 * 3 * 2), rtol=1e-5)


def test_perceptual_and_style_read_only_their_taps():
  taps = ("relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_4", "relu4_1", "relu4_4")
  taps += ("relu5_1", "relu5_2", "relu5_4")
  shape = (1, 2, 2, 1)
  zeros = {k: np.zeros(shape, np.float32) for k in taps}
  # Tap i differs by i + 1 everywhere; relu1_2 and relu5_4 are in neither loss.
  shifted = {k: np.full(shape, i + 1.0, np.float32) for i, k in enumerate(taps)}
  assert float(losses.perceptual(shifted, zeros)) == pytest.approx(1 + 3 + 5 + 7 + 9)
  # A constant c map: Gram = 4 c^2 / (1 * 2 * 2) = c^2 for C = 1.
  assert float(losses.style(shifted, zeros)) == pytest.approx(4**2 + 6**2 + 8**2 + 10**2)


def test_bce_is_torch_bce_with_its_log_clamp():
  p = np.array([0.0, 0.25, 0.9, 1.0], np.float32)
  # -log p for target 1 and -log(1 - p) for target 0, each log at least -100.
  ones = [100.0, -np.log(0.25), -np.log(0.9), 0.0]
  zeros = [0.0, -np.log(0.75), -np.log(0.1), 100.0]
  assert float(losses.bce(p, 1.0)) == pytest.approx(np.mean(ones), rel=1e-6)
  assert float(losses.bce(p, 0.0)) == pytest.approx(np.mean(zeros), rel=1e-6)
  mixed = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
  assert float(losses.bce(p, mixed)) == pytest.approx(np.mean([100, 0.2876821, 0.1053605, 100]))
  grads = jax.grad(lambda q: losses.bce(q, 1.0))(jnp.asarray(p))
  assert np.all(np.isfinite(grads))  # torch's gradient is finite at 0 and 1 too


def test_triplet_adds_pairwise_eps_to_the_difference():
  a, p = np.array([[1.0, 2.0]], np.float32), np.array([[4.0, 6.0]], np.float32)
  # d(a, p) = ||(-3 + eps, -4 + eps)||, d(a, a) = ||(eps, eps)|| = sqrt(2) eps.
  want = np.hypot(-3 + EPS, -4 + EPS) - np.sqrt(2) * EPS + 0.1
  got = float(losses.triplet(a, p, a))
  assert got == pytest.approx(want, abs=5e-7)
  assert abs(got - 5.1) > 2e-6  # without the eps it would be exactly 5.1
  # A second triplet below the margin is clamped at 0 and halves the mean.
  far = losses.triplet(np.concatenate([a, a]), np.concatenate([p, a]), np.concatenate([a, p]))
  assert float(far) == pytest.approx(want / 2, abs=5e-7)


def test_domain_loss_per_element_as_the_official_codes_and_per_vector():
  codes = {
      "z_gt": np.array([[1.0, 2.0]], np.float32),
      "z_r": np.array([[4.0, 6.0]], np.float32),
      "z_b": np.array([[4.0, 2.0]], np.float32),
  }
  # Per element, |a - p + eps| - |eps| + 0.1: mean(3, 4) + 0.1 = 3.6 and mean(0, 4) + 0.1 = 2.1,
  # up to 2e-6 of eps.
  per_element = losses.domain_loss(codes)
  assert float(per_element) == pytest.approx(0.01 * (3.6 + 2.1), abs=1e-7)
  # Per vector: ||(3, 4)|| + 0.1 = 5.1 and ||(0, 4)|| + 0.1 = 4.1.
  per_vector = losses.domain_loss(codes, per_element=False)
  assert float(per_vector) == pytest.approx(0.01 * (5.1 + 4.1), abs=1e-7)


# ------------------------------------------------------------ discriminator ---


def _spectral_conv(**kwargs):
  with nnx.use_eager_sharding(False):
    return spectral_norm.SpectralConv(3, 8, 4, rngs=_rngs(), **kwargs)


def test_weight_matrix_is_pytorchs_layout():
  kernel = np.random.default_rng(0).normal(size=(4, 4, 3, 8)).astype(np.float32)
  w = np.asarray(spectral_norm.weight_matrix(jnp.asarray(kernel)))
  # torch weight [out, in, kh, kw].view(out, -1): column i * 16 + y * 4 + x.
  assert w.shape == (8, 48) and w[5, 2 * 16 + 1 * 4 + 3] == kernel[1, 3, 2, 5]


def test_spectral_norm_converges_to_the_largest_singular_value():
  conv = _spectral_conv()
  w = np.asarray(spectral_norm.weight_matrix(conv.kernel[...]))
  u0 = np.asarray(conv.u[...])
  assert np.linalg.norm(u0) == pytest.approx(1.0, rel=1e-6)
  frozen = conv.sigma(train=False)
  np.testing.assert_array_equal(conv.u[...], u0)  # eval mode does not iterate
  iterate = nnx.jit(lambda c: c.sigma(train=True))
  for _ in range(200):
    sigma = iterate(conv)
  top = np.linalg.svd(w, compute_uv=False)[0]
  assert float(sigma) == pytest.approx(top, rel=1e-4)
  assert abs(float(frozen) - top) > 1e-3  # a random start is not there yet
  u = np.asarray(conv.u[...])
  x = np.random.default_rng(1).uniform(size=(1, 8, 8, 3)).astype(np.float32)
  y = conv(x, train=False)
  np.testing.assert_array_equal(conv.u[...], u)
  # The kernel used is W / sigma: the output of W itself, divided.
  plain = jax.lax.conv_general_dilated(
      x, conv.kernel[...], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  np.testing.assert_allclose(y, plain / float(conv.sigma()), rtol=1e-5, atol=1e-6)


def test_sigma_is_differentiated_through_w_alone():
  conv = _spectral_conv()
  grads = nnx.grad(lambda c: c.sigma(train=True))(conv)
  u, v = np.asarray(conv.u[...]), np.asarray(conv.v[...])  # this call's iteration, stored
  # d(u^T W v) / dW = u v^T with u, v constants (the iteration runs without gradient).
  want = np.outer(u, v).reshape(8, 3, 4, 4).transpose(2, 3, 1, 0)
  np.testing.assert_allclose(grads["kernel"][...], want, rtol=1e-5, atol=1e-7)


def test_patchgan_grid_follows_pytorchs_padding_arithmetic():
  disc = nnx.eval_shape(lambda: registry.create_model("patchgan.full"))  # shapes only
  graphdef, state = nnx.split(disc)
  kernels = [c.kernel.shape for c in disc.convs]
  assert kernels == [(4, 4, 3, 64), (4, 4, 64, 128), (4, 4, 128, 256), (4, 4, 256, 512)] + [
      (4, 4, 512, 1)
  ]
  assert [(c.u.shape, c.v.shape) for c in disc.convs][-1] == ((1,), (512 * 16,))
  for size in (32, 64, 256):
    x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    y = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x, train=True), state, x)
    assert y.shape == (2, patchgan.patch_grid(size), patchgan.patch_grid(size), 1)
  # n -> floor((n + 2 - 4) / s) + 1 through strides 2, 2, 2, 1, 1: 256 -> 30 (EdgeConnect's 30x30).
  assert [patchgan.patch_grid(n) for n in (32, 64, 128, 256)] == [2, 6, 14, 30]
  assert all(patchgan.patch_grid(n) == n // 8 - 2 for n in range(24, 300))


# ----------------------------------------------------------------- samples ---


def _record(height: int = 48, width: int = 56) -> dict:
  """A train record (its stored mask empty) from an arbitrary non-square image."""
  image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
  empty = np.zeros((height, width), bool)
  return inpainting.make_record("train-000000", image, empty, "test", "strokes")


def test_a_sample_is_a_crop_its_flip_and_a_fresh_mask():
  record, kw = _record(), dict(size=32, scale=(0.5, 1.0))
  kept = task.make_sample(record, np.random.default_rng(3), flip_p=0.0, **kw)
  flipped = task.make_sample(record, np.random.default_rng(3), flip_p=1.0, **kw)
  assert kept["image"].shape == (32, 32, 3) and kept["image"].dtype == np.uint8
  assert kept["mask"].shape == (32, 32, 1) and kept["mask"].dtype == np.uint8
  np.testing.assert_array_equal(flipped["image"], kept["image"][:, ::-1])
  np.testing.assert_array_equal(flipped["mask"], kept["mask"])
  ratios = []
  for seed in range(12):
    mask = task.make_sample(record, np.random.default_rng(seed), flip_p=0.5, **kw)["mask"]
    assert set(np.unique(mask)) <= {0, 1}
    ratios.append(float(mask.mean()))
  # Fresh masks over the bins' whole range, not the record's empty one.
  assert all(RATIO_BINS[0][0] < r <= RATIO_BINS[-1][1] for r in ratios) and len(set(ratios)) > 6


def test_a_whole_square_crop_at_its_own_size_is_the_image():
  image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
  crop = task.square_crop(image, np.random.default_rng(0), size=40, scale=(1.0, 1.0))
  np.testing.assert_array_equal(crop, image)


# ---------------------------------------------------------------- the step ---


class StandIn(nnx.Module):
  """The generator's contract (provjax.models.safepaint): one conv, a BatchNorm, a linear code."""

  def __init__(self, rngs: nnx.Rngs):
    self.conv = nnx.Conv(4, 6, (3, 3), use_bias=False, rngs=rngs)  # a bias before BN: no gradient
    self.norm = nnx.BatchNorm(6, rngs=rngs)
    self.code = nnx.Linear(3, 16, rngs=rngs)

  def __call__(self, images, masks, *, train: bool = False) -> dict:
    x = self.conv(jnp.concatenate([images * (1 - masks) + masks, masks], axis=-1))
    y = jax.nn.sigmoid(self.norm(x, use_running_average=not train))
    o1, o2 = y[..., :3], y[..., 3:]
    c1, c2 = merge(images, masks, o1), merge(images, masks, o2)
    code = lambda x, region: self.code(jnp.mean(x * region, axis=(1, 2)))
    return dict(
        o1=o1,
        o2=o2,
        c1=c1,
        c2=c2,
        z_b=code(images, 1 - masks),
        z_gt=code(images, masks),
        z_c=code(c1, masks),
        z_r=code(c2, masks),
    )


class StandInD(nnx.Module):
  """The discriminator's contract (provjax.models.patchgan): patch probabilities, and state that
  moves on every training-mode call, as the spectral norms' u and v do."""

  def __init__(self, rngs: nnx.Rngs):
    self.conv = nnx.Conv(3, 1, (4, 4), strides=(2, 2), rngs=rngs)
    self.calls = nnx.BatchStat(jnp.zeros((), jnp.int32))

  def __call__(self, x, *, train: bool = False):
    if train:
      self.calls[...] += 1
    return jax.nn.sigmoid(self.conv(x))


class StandInVGG(nnx.Module):
  """The feature network's contract (provjax.models.vgg): a map per asked tap."""

  def __init__(self, rngs: nnx.Rngs):
    self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)

  def __call__(self, x, taps):
    f = nnx.relu(self.conv(x))
    return {tap: f * (i + 1) for i, tap in enumerate(taps)}


def _arrays(module, kind=nnx.Param) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(module, kind))]


def _batch(size: int = 32, count: int = 2) -> dict:
  rng = np.random.default_rng(0)
  return {
      "image": rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8),
      "mask": (rng.random((count, size, size, 1)) < 0.3).astype(np.uint8),
  }


# XLA's CPU backend at -O0: these steps compile in a third less time and run in milliseconds.
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.fixture(scope="module")
def stand_in_steps():
  """One step in each mode from the same stand-in models, both in one compiled program (the slow
  tests below run the real modules): (before, {joint: (models, metrics)})."""
  configs = {}
  for joint in (False, True):
    configs[joint] = load_config(f"{CONFIG}:tiny,quick", [f"loss.joint_backward={joint}"])
  rngs = _rngs()
  models = {"generator": StandIn(rngs), "discriminator": StandInD(rngs), "vgg": StandInVGG(rngs)}
  before = {name: (_arrays(m), _arrays(m, nnx.BatchStat)) for name, m in models.items()}
  specs = task.optimizers(configs[False])
  runs = {joint: nnx.clone(models) for joint in configs}
  opts = {j: {n: s.make(runs[j][s.module]) for n, s in specs.items()} for j in configs}
  graphdef, state = nnx.split((runs, opts))

  @functools.partial(jax.jit, compiler_options=_FAST_COMPILE)
  def both(state, batch):
    runs, opts = nnx.merge(graphdef, state)
    metrics = {j: task.train_step(runs[j], opts[j], batch, None, c) for j, c in configs.items()}
    return nnx.state((runs, opts)), metrics

  state, metrics = jax.device_get(both(state, _batch()))
  runs, _ = nnx.merge(graphdef, state)
  return before, {joint: (runs[joint], metrics[joint]) for joint in configs}


def test_a_step_trains_both_and_leaves_the_vgg_alone(stand_in_steps):
  before, after = stand_in_steps
  models, metrics = after[False]
  for name in ("generator", "discriminator"):
    for old, new in zip(before[name][0], _arrays(models[name])):
      assert not np.array_equal(old, new), name
  for old, new in zip(before["vgg"][0], _arrays(models["vgg"])):
    np.testing.assert_array_equal(old, new)
  # Three discriminator calls in training mode (I, stop_gradient(O2), O2), each kept its update.
  assert int(models["discriminator"].calls[...]) == 3
  terms = ("l_dom", "l_adv", "l_1", "l_perc", "l_style", "l_d")
  assert metrics["loss"] == pytest.approx(sum(metrics[k] for k in terms), rel=1e-6)
  assert all(np.isfinite(v) and v > 0 for v in metrics.values())
  assert 0 < metrics["d_real"] < 1 and 0 < metrics["d_fake"] < 1


def test_joint_backward_changes_the_discriminator_update_only(stand_in_steps):
  _, after = stand_in_steps
  (clean, m_clean), (joint, m_joint) = after[False], after[True]
  for a, b in zip(_arrays(clean["generator"]), _arrays(joint["generator"])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
  differ = [
      not np.allclose(a, b, rtol=1e-5, atol=1e-8)
      for a, b in zip(_arrays(clean["discriminator"]), _arrays(joint["discriminator"]))
  ]
  assert all(differ)  # every conv also descends L_adv,G in the official update
  # The same forward and losses; the discriminator's state moved alike.
  assert int(clean["discriminator"].calls[...]) == int(joint["discriminator"].calls[...]) == 3
  assert m_clean["loss"] == m_joint["loss"] and m_clean["grad_norm_g"] == pytest.approx(
      m_joint["grad_norm_g"], rel=1e-6
  )
  assert m_clean["grad_norm_d"] != pytest.approx(m_joint["grad_norm_d"], rel=1e-3)


def test_inpainted_pixels_outside_the_hole_are_the_input(stand_in_steps):
  _, after = stand_in_steps
  batch = _batch()
  holes = batch["mask"][..., 0] > 0
  c1, c2 = task.inpaint(after[False][0]["generator"], batch["image"], holes)
  for merged in (c1, c2):
    np.testing.assert_array_equal(merged[~holes], batch["image"][~holes])
    assert not np.array_equal(merged[holes], batch["image"][holes])


def test_the_vgg_comes_from_released_weights_or_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setenv("PROVJAX_CHECKPOINTS", str(tmp_path))
  config = load_config(f"{CONFIG}:tiny,quick", ["vgg=vgg.missing"])
  with pytest.raises(ValueError, match=r"'vgg\.missing'.*provjax convert vgg19"):
    task.frozen_vgg(config, _rngs())
  widths = [8] * 5
  released = registry.create_model("vgg.tiny", rngs=_rngs(1), widths=widths)
  weights.export(released, "vgg.test", arch="vgg.tiny", overrides={"widths": widths})
  config.vgg = "vgg.test"
  for a, b in zip(_arrays(released), _arrays(task.frozen_vgg(config, _rngs(2)))):
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------ the real modules ---


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  """The `,quick` run's models before and after one trainer step (random VGG features)."""
  root = tmp_path_factory.mktemp("safepaint")
  config = load_config(f"{CONFIG}:tiny,quick", ["vgg=", f"data.data_dir={root / 'tfds'}"])
  config.train.steps = 0  # the starting models, built as the trainer builds them
  start = trainer.train(config, root / "start", progress=False)
  config.train.steps = 1
  return config, start.models, trainer.train(config, root / "run", progress=False), root / "run"


def _moved(before, after) -> dict[str, float]:
  """The fraction of each top-level part's parameter arrays that a step changed."""
  old = nnx.to_flat_state(nnx.state(before, nnx.Param))
  new = dict(nnx.to_flat_state(nnx.state(after, nnx.Param)))
  changed = {}
  for path, value in old:
    changed.setdefault(path[0], []).append(not np.array_equal(value[...], new[path][...]))
  return {part: float(np.mean(flags)) for part, flags in changed.items()}


@pytest.mark.slow
def test_one_real_step_through_the_trainer(quick_run):
  _, start, result, workdir = quick_run
  assert set(_moved(start["discriminator"], result.models["discriminator"]).values()) == {1.0}
  # All of the generator moves but for a gate hidden unit the ReLU shuts at init (the tiny
  # RWSA gates have C / 16 = 2 of them), whose weights get no gradient.
  moved = _moved(start["generator"], result.models["generator"])
  assert set(moved) == {"coarse_generator", "fine_generator", "extractor"}
  assert min(moved.values()) > 0.95, moved
  for old, new in zip(_arrays(start["vgg"]), _arrays(result.models["vgg"])):
    np.testing.assert_array_equal(old, new)
  m = result.metrics
  assert result.step == 1 and all(np.isfinite(v) for v in m.values())
  assert m["l_d"] > 0 and m["l_1"] > 0 and 0 < m["d_real"] < 1
  assert 0 < m["eval/ssim"] <= 1 and m["eval/psnr"] > 0
  assert (workdir / "eval" / "1" / "example.png").is_file()


@pytest.mark.slow
def test_the_real_generator_keeps_the_pixels_outside_the_hole(quick_run):
  config, _, result, _ = quick_run
  images, holes = task.held_back(config)
  assert images.shape == (2, 64, 64, 3) and holes.any()
  c1, c2 = task.inpaint(result.models["generator"], images, holes)
  for merged in (c1, c2):
    np.testing.assert_array_equal(merged[~holes], images[~holes])


@pytest.mark.slow
def test_training_batches_resume_where_they_stopped(quick_run):
  config = quick_run[0]
  batches = task.train_data(config)
  next(batches)
  second, resumed = next(batches), next(task.train_data(config, start_step=1))
  check_batch(second, task.SCHEMA, task="safepaint", sizes={"B": 4, "S": 64})
  for key in task.SCHEMA:
    np.testing.assert_array_equal(second[key], resumed[key])
