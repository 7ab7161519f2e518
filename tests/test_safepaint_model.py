"""The SafePaint generator (provjax.models.safepaint) and its partial convolution.

Layers are checked against hand computations and independent numpy loops
(partial conv, PyTorch's ConvTranspose2d as a scatter-add), the RWSA block
against the region separation its formula implies, the two-stage model
against its contract (merge, size rule, region-only style codes, train mode),
and `full` against the official state dict's size. The faithfulness to the
official outputs is tests/test_safepaint_convert.py's.
"""

from __future__ import annotations

from pathlib import Path
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import provjax
from provjax.models import safepaint
from provjax.models.layers.partial_conv import PartialConv

sys.path.insert(0, str(Path(__file__).resolve().parent / "reference"))
import standin  # pylint: disable=g-import-not-at-top,wrong-import-position


def _built(make):
  """A module built outside any mesh (its sharding annotations stay metadata)."""
  with nnx.use_eager_sharding(False):
    return make()


def _partial_conv(kernel, bias, *, strides, padding):
  """A PartialConv holding `kernel` (kh, kw, I, O) and `bias` (or none)."""
  k, _, i, o = kernel.shape
  layer = _built(
      lambda: PartialConv(
          i,
          o,
          k,
          strides=strides,
          padding=padding,
          use_bias=bias is not None,
          kernel_init=nnx.initializers.zeros,  # replaced below; spares a random init
          rngs=nnx.Rngs(0),
      )
  )
  layer.kernel[...] = jnp.asarray(kernel)
  if bias is not None:
    layer.bias[...] = jnp.asarray(bias)
  return layer


def _numpy_partial_conv(x, mask, kernel, bias, *, strides, padding):
  """The partial conv window by window: sum(w x m) * k^2 / count (+ b), zero where count is 0."""
  k = kernel.shape[0]
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  xp, mp = np.pad(x * mask, pad), np.pad(mask, pad)
  rows = (xp.shape[1] - k) // strides + 1
  cols = (xp.shape[2] - k) // strides + 1
  out = np.zeros((x.shape[0], rows, cols, kernel.shape[3]))
  new_mask = np.zeros((x.shape[0], rows, cols, 1))
  for i in range(rows):
    for j in range(cols):
      window = (
          slice(None),
          slice(i * strides, i * strides + k),
          slice(j * strides, j * strides + k),
      )
      count = mp[window].sum(axis=(1, 2, 3))
      raw = np.einsum("bhwi,hwio->bo", xp[window], kernel)
      scaled = raw * np.where(count > 0, k * k / np.maximum(count, 1), 0.0)[:, None]
      if bias is not None:
        scaled = np.where(count[:, None] > 0, scaled + bias, 0.0)
      out[:, i, j] = scaled
      new_mask[:, i, j, 0] = np.minimum(count, 1)
  return out, new_mask


def test_partial_conv_rescales_by_the_valid_count_by_hand():
  """x = 1, an all-ones 3x3 kernel, bias 0.5: every window with a valid pixel gives 9 + 0.5."""
  mask = np.zeros((1, 4, 4, 1), np.float32)
  mask[0, :2, :2] = 1  # the top-left 2x2 is valid
  layer = _partial_conv(np.ones((3, 3, 1, 1), np.float32), np.array([0.5]), strides=1, padding=1)
  out, new_mask = layer(jnp.ones((1, 4, 4, 1)), jnp.asarray(mask))
  # Valid pixels under each window: (rows in reach) x (cols in reach), reach = [2, 2, 1, 0].
  count = np.outer([2, 2, 1, 0], [2, 2, 1, 0])
  np.testing.assert_array_equal(new_mask[0, ..., 0], (count > 0).astype(np.float32))
  np.testing.assert_allclose(out[0, ..., 0], np.where(count > 0, 9.5, 0.0), atol=1e-5)


@pytest.mark.parametrize("use_bias", [True, False])
def test_partial_conv_matches_a_window_by_window_reference(use_bias):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 7, 6, 2)).astype(np.float32)
  mask = (rng.random((2, 7, 6, 1)) < 0.4).astype(np.float32)
  mask[1, :4] = 0  # some windows see no valid pixel at all
  kernel = rng.standard_normal((3, 3, 2, 3)).astype(np.float32)
  bias = rng.standard_normal(3).astype(np.float32) if use_bias else None
  layer = _partial_conv(kernel, bias, strides=2, padding=1)
  out, new_mask = layer(jnp.asarray(x), jnp.asarray(mask))
  ref, ref_mask = _numpy_partial_conv(x, mask, kernel, bias, strides=2, padding=1)
  assert (ref_mask == 0).any() and (ref_mask == 1).any()
  np.testing.assert_array_equal(new_mask, ref_mask)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_partial_conv_with_an_all_ones_mask_is_the_plain_conv():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((1, 9, 9, 3)), jnp.float32)
  layer = _partial_conv(
      rng.standard_normal((3, 3, 3, 4)).astype(np.float32),
      rng.standard_normal(4).astype(np.float32),
      strides=2,
      padding=0,
  )
  out, new_mask = layer(x, jnp.ones((1, 9, 9, 1)))
  plain = nnx.Conv.__call__(layer, x)  # the same kernel and bias without the mask
  np.testing.assert_array_equal(new_mask, np.ones((1, 4, 4, 1)))
  np.testing.assert_allclose(out, plain, rtol=1e-5, atol=1e-5)


# Smaller than `tiny` (one ResBlock a stage); the layout is the same.
SMALL = dict(width=16, blocks=1, style_width=16)


def _random_values(path, var, rng) -> np.ndarray:
  """Stand-in values that keep activations of unit scale (the 0.02 init flattens them)."""
  shape, leaf = var.shape, path[-1]
  if isinstance(var, safepaint.Buffer):
    return safepaint.smoothing_kernel()[:, :, None, None]
  if leaf == "kernel":
    return rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
  if leaf == "var":
    return 1 + 0.5 * rng.random(shape)
  if leaf == "scale":
    return 1 + 0.1 * rng.standard_normal(shape)
  return 0.1 * rng.standard_normal(shape)  # biases, BN offsets and means


@pytest.fixture(scope="module")
def small():
  """`SMALL` filled from numpy (random init compiles per shape, slow on 2 cores; the init
  itself is checked on one RWSA block)."""
  abstract = nnx.eval_shape(lambda: provjax.create_model("safepaint.tiny", **SMALL))
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(0)
  flat = [
      (path, var.replace(jnp.asarray(_random_values(path, var, rng), var.dtype)))
      for path, var in nnx.to_flat_state(state)
  ]
  model = nnx.merge(graphdef, nnx.from_flat_state(flat))
  model.eval()
  return model


def test_conv_transpose_is_pytorchs_scatter_add(small):
  """ConvTranspose2d(k 4, s 2, p 1): input pixel (r, c) adds x W[i] at (2r - 1, 2c - 1); 2x size."""
  rng = np.random.default_rng(2)
  x = rng.standard_normal((2, 3, 5, 64)).astype(np.float32)
  weight = 0.1 * rng.standard_normal((64, 32, 4, 4)).astype(np.float32)  # PyTorch (in, out, kh, kw)
  bias = rng.standard_normal(32).astype(np.float32)
  full = np.zeros((2, (3 - 1) * 2 + 4, (5 - 1) * 2 + 4, 32))
  for r in range(3):
    for c in range(5):
      full[:, 2 * r : 2 * r + 4, 2 * c : 2 * c + 4] += np.einsum(
          "bi,iohw->bhwo", x[:, r, c], weight
      )
  expected = full[:, 1:-1, 1:-1] + bias  # padding 1 crops one row and column on each side
  up = nnx.clone(small.coarse_generator.decoder[0])
  up.kernel[...] = jnp.asarray(weight.transpose(2, 3, 1, 0))  # what the converter stores
  up.bias[...] = jnp.asarray(bias)
  out = up(jnp.asarray(x))
  assert out.shape == (2, 6, 10, 32)
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_smoothing_kernel_is_the_official_not_the_textbook_gaussian():
  kernel = safepaint.smoothing_kernel()
  assert kernel.shape == (5, 5)
  np.testing.assert_allclose(kernel.sum(), 1.0, rtol=1e-6)
  # exp(-((x - 2) / (2 sigma))^2): centre / neighbour = e^(1/4) (the textbook gives e^(1/2)).
  np.testing.assert_allclose(kernel[2, 2] / kernel[2, 3], np.exp(0.25), rtol=1e-6)
  np.testing.assert_allclose(kernel, kernel.T, rtol=1e-6)


_rwsa_apply = nnx.jit(lambda rwsa, x, masks: rwsa(x, masks))


def test_rwsa_resizes_the_mask_by_rounded_2x2_means(small):
  """16 -> 4: stride 4, a 2x2 window at every 4th pixel; 2 of 4 (0.5) rounds to even, 0."""
  rwsa = nnx.clone(small.fine_generator.att3)
  delta = np.zeros((5, 5, 1, 1), np.float32)
  delta[2, 2] = 1
  rwsa.gaussian_mask.kernel[...] = jnp.asarray(delta)  # smoothing off: the resize alone
  mask = np.zeros((1, 16, 16, 1), np.float32)
  mask[0, 0:2, 0:2] = 1  # 4 of 4
  mask[0, 4, 0:2] = 1  # 2 of 4
  mask[0, 8:10, 8] = mask[0, 8, 9] = 1  # 3 of 4
  mask[0, 12, 12] = 1  # 1 of 4
  mask[0, 2:4, :] = mask[0, :, 14:16] = 1  # between the windows: never read
  hole, background = nnx.jit(lambda r, m: r.region_masks(m, 4))(rwsa, jnp.asarray(mask))
  expected = np.zeros((4, 4), np.float32)
  expected[0, 0] = expected[2, 2] = 1
  np.testing.assert_array_equal(hole[0, ..., 0], expected)
  np.testing.assert_array_equal(background[0, ..., 0], 1 - expected)


def _perturbed(module: nnx.Module, part: str, seed: int) -> nnx.Module:
  """A copy of `module` whose `part` has noise added to every parameter."""
  module = nnx.clone(module)
  sub = getattr(module, part)
  rng = np.random.default_rng(seed)
  state = nnx.state(sub, nnx.Param)
  nnx.update(sub, jax.tree.map(lambda p: p + 0.5 * rng.standard_normal(p.shape), state))
  return module


def test_rwsa_separates_the_hole_from_the_background(small):
  """Hole branches act only where the smoothed hole reaches, the background gate only where
  the smoothed background does (the 5x5 smoothing spreads each region by 2 pixels)."""
  rwsa = small.fine_generator.att3
  hole = np.zeros((1, 32, 32, 1), bool)
  hole[0, 8:24, 10:26] = True
  x = jnp.asarray(np.random.default_rng(3).standard_normal((1, 32, 32, 16)), jnp.float32)
  masks = jnp.asarray(hole, jnp.float32)
  square = np.ones((5, 5), bool)
  outside = ~ndimage.binary_dilation(hole[0, ..., 0], square)  # beyond the smoothed hole
  deep = ndimage.binary_erosion(hole[0, ..., 0], square)  # where the smoothed background is 0
  base = np.asarray(_rwsa_apply(rwsa, x, masks))[0]
  for part in ("spliced_attention", "mixed_attention", "connection"):
    out = np.asarray(_rwsa_apply(_perturbed(rwsa, part, 4), x, masks))[0]
    np.testing.assert_array_equal(out[outside], base[outside], err_msg=part)
    assert np.abs(out[deep] - base[deep]).max() > 1e-3, part
  out = np.asarray(_rwsa_apply(_perturbed(rwsa, "background_attention", 5), x, masks))[0]
  np.testing.assert_array_equal(out[deep], base[deep])
  assert np.abs(out[outside] - base[outside]).max() > 1e-3


_forward = nnx.jit(lambda model, images, masks: model(images, masks))


@pytest.fixture(scope="module")
def inputs():
  images = np.random.default_rng(6).random((2, 64, 68, 3), np.float32)
  masks = np.zeros((2, 64, 68, 1), np.float32)
  masks[0, 10:40, 20:50] = 1
  masks[1, 30:60, 5:25] = masks[1, 5:9, :] = 1
  return jnp.asarray(images), jnp.asarray(masks)


@pytest.fixture(scope="module")
def outputs(small, inputs):
  return _forward(small, *inputs)


def test_outputs_and_merge(outputs, inputs):
  images, masks = np.asarray(inputs[0]), np.asarray(inputs[1])
  for key in ("o1", "o2", "c1", "c2"):
    assert outputs[key].shape == (2, 64, 68, 3), key
    assert 0 <= float(outputs[key].min()) and float(outputs[key].max()) <= 1, key
  for key in ("z_b", "z_gt", "z_c", "z_r"):
    assert outputs[key].shape == (2, safepaint.STYLE_DIM), key
  keep = np.broadcast_to(masks == 0, images.shape)
  for merged, raw in (("c1", "o1"), ("c2", "o2")):
    c, o = np.asarray(outputs[merged]), np.asarray(outputs[raw])
    np.testing.assert_array_equal(c[keep], images[keep])  # exactly the input outside the hole
    np.testing.assert_allclose(c[~keep], o[~keep], atol=1e-6)
  assert not np.allclose(outputs["o1"], outputs["o2"])


def test_merge_and_to_input():
  image = np.array([[[0, 51, 255]]], np.uint8)
  images, masks = safepaint.to_input(image, np.array([[True]]))
  np.testing.assert_allclose(images, [[[[0, 0.2, 1]]]], rtol=1e-6)
  assert masks.shape == (1, 1, 1, 1) and float(masks[0, 0, 0, 0]) == 1.0
  merged = safepaint.merge(
      np.zeros((1, 1, 2, 1)), np.array([[[[1.0], [0.0]]]]), np.ones((1, 1, 2, 1))
  )
  np.testing.assert_array_equal(merged[0, 0, :, 0], [1.0, 0.0])


@pytest.mark.parametrize(
    "size, message",
    [
        ((60, 64), r"got 60 x 64"),  # a multiple of 4 below MIN_SIZE (63)
        ((64, 66), r"got 64 x 66"),  # not a multiple of 4
    ],
)
def test_bad_sizes_are_refused(small, size, message):
  assert safepaint.MIN_SIZE == 63
  with pytest.raises(ValueError, match=r"multiples of 4 and at least 63, " + message):
    small(jnp.zeros((1, *size, 3)), jnp.zeros((1, *size, 1)))


def test_a_mask_of_another_shape_is_refused(small):
  with pytest.raises(ValueError, match=r"masks must be \(1, 64, 64, 1\)"):
    small(jnp.zeros((1, 64, 64, 3)), jnp.zeros((1, 64, 64, 3)))


def test_the_style_codes_read_only_their_region(small, inputs, outputs):
  """Repainting the hole leaves z_b = E(I, 1 - m) bit for bit and changes z_gt = E(I, m)."""
  images, masks = inputs
  noise = np.random.default_rng(7).random(images.shape, np.float32)
  repainted = jnp.where(masks > 0, noise, images)
  other = _forward(small, repainted, masks)
  np.testing.assert_array_equal(other["z_b"], outputs["z_b"])
  assert not np.allclose(other["z_gt"], outputs["z_gt"])


def test_train_mode_uses_and_updates_the_batch_statistics(small, inputs, outputs):
  extractor = nnx.clone(small.extractor)
  before = np.asarray(extractor.norm2f.mean[...])
  codes = nnx.jit(lambda e, x, r: e(x, r, train=True))(extractor, *inputs)
  assert np.abs(np.asarray(extractor.norm2f.mean[...]) - before).max() > 0  # momentum 0.9
  np.testing.assert_array_equal(small.extractor.norm2f.mean[...], before)  # eval never writes
  assert not np.allclose(codes, outputs["z_gt"])  # batch, not running, statistics


def test_init_follows_the_official_base_network():
  """Conv weights N(0, 0.02), biases 0, BN gamma N(1, 0.02) and beta 0, the official smoothing
  kernel. One layer of each kind (random init compiles once per shape, slow on 2 cores); every
  conv, ConvT and linear layer of the model shares the conv's initializer."""
  block = _built(lambda: safepaint.ResnetBlock(64, 2, rngs=nnx.Rngs(0)))
  norm = _built(lambda: safepaint._bn(4096, rngs=nnx.Rngs(1)))  # pylint: disable=protected-access
  kernels = np.concatenate([np.ravel(c.kernel[...]) for c in (block.conv1, block.conv2)])
  assert abs(kernels.mean()) < 1e-3 and kernels.std() == pytest.approx(0.02, rel=0.02)
  for conv in (block.conv1, block.conv2):
    np.testing.assert_array_equal(conv.bias[...], 0)
  scales = np.asarray(norm.scale[...])
  assert scales.mean() == pytest.approx(1.0, abs=1e-3)
  assert scales.std() == pytest.approx(0.02, rel=0.1)
  np.testing.assert_array_equal(norm.bias[...], 0)
  kernel = safepaint.GaussianSmoothing().kernel[...]
  np.testing.assert_array_equal(kernel[..., 0, 0], safepaint.smoothing_kernel())


def test_full_holds_the_official_state_dict_values():
  """eval_shape `full`: parameters, BN statistics and smoothing buffers are the tsv's 192 keys
  less the 9 num_batches_tracked counters (28,844,862 - 9 values)."""
  entries = standin.entries("safepaint")
  size = lambda keep: sum(int(np.prod(s)) for k, s, _ in entries if keep(k))
  assert size(lambda k: True) == 28_844_862
  model = nnx.eval_shape(lambda: provjax.create_model("safepaint.full"))
  count = lambda kind: sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, kind)))
  stats = size(lambda k: ".running_" in k)
  buffers = size(lambda k: ".gaussianMask." in k)
  counters = size(lambda k: k.endswith("num_batches_tracked"))
  assert (stats, buffers, counters) == (4480, 75, 9)
  assert count(nnx.Param) == 28_844_862 - stats - buffers - counters == 28_840_298
  assert count(nnx.BatchStat) == stats
  assert count(safepaint.Buffer) == buffers
