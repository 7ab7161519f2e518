"""TruFor's losses (provjax.tasks.forgery_losses) on tiny hand-computed cases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from provjax.tasks import forgery_losses as fl


def _logits_for(p1):
  """[..., 2] logits whose softmax gives forged probability `p1`."""
  p1 = np.asarray(p1, np.float32)
  return jnp.asarray(np.stack([np.zeros_like(p1), np.log(p1 / (1 - p1))], axis=-1))


def test_weighted_cross_entropy_ignores_padding_and_normalises_by_weights():
  # Three pixels: authentic at p1 = 1/2, forged at p1 = 3/4, and one ignored.
  labels = jnp.array([[[0, 1, -1]]])
  logits = _logits_for([[[0.5, 0.75, 0.01]]])
  want = (0.5 * np.log(2) + 2.5 * -np.log(0.75)) / (0.5 + 2.5)
  got = fl.weighted_cross_entropy(logits, labels, (0.5, 2.5))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # Whatever the ignored pixel predicts, the loss does not move.
  other = _logits_for([[[0.5, 0.75, 0.99]]])
  np.testing.assert_allclose(fl.weighted_cross_entropy(other, labels, (0.5, 2.5)), want, rtol=1e-6)


def test_dice_loss_by_hand():
  # Sample 1: forged p1 = .75, authentic p1 = .5, one ignored; sample 2: authentic only.
  labels = jnp.array([[1, 0, -1], [0, 0, 0]])
  logits = _logits_for([[0.75, 0.5, 0.9], [0.3, 0.2, 0.6]])
  dice1 = 2 * 0.75 / (0.75**2 + 0.5**2 + 1 + 1e-5)
  np.testing.assert_allclose(fl.dice_loss(logits, labels), 1 - (dice1 + 0.0) / 2, rtol=1e-6)
  loss, terms = fl.localization_loss(logits, labels)
  np.testing.assert_allclose(loss, 0.3 * terms["ce"] + 0.7 * terms["dice"], rtol=1e-6)


def test_tcp_target_band_border_and_ignore():
  labels = np.zeros((1, 41, 41), np.int32)
  labels[0, 10:31, 10:31] = 1  # a 21 x 21 forged square
  labels[0, 0, 40] = -1  # one ignored pixel, far from the square
  loc = jax.random.normal(jax.random.key(0), (1, 41, 41, 2))
  target, valid = fl.tcp_target(loc, jnp.asarray(labels))
  valid = np.asarray(valid)[0]
  # Erosion by 15 (radius 7) keeps the 7 x 7 centre; dilation by 11 (radius 5) grows to 31 x 31.
  inside = np.zeros((41, 41), bool)
  inside[17:24, 17:24] = True
  dilated = np.zeros((41, 41), bool)
  dilated[5:36, 5:36] = True
  expected = inside | ~dilated
  expected[0, 40] = False
  np.testing.assert_array_equal(valid, expected)
  p = np.asarray(jax.nn.softmax(loc, axis=-1))[0]
  np.testing.assert_allclose(np.asarray(target)[0][inside], p[..., 1][inside], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(target)[0][~dilated], p[..., 0][~dilated], rtol=1e-6)
  # The image border does not erode: a stripe over cols 0-9 keeps cols 0-2 inside; the
  # dilation reaches col 14, so cols 15-20 are outside.
  stripe = np.zeros((1, 21, 21), np.int32)
  stripe[:, :, :10] = 1
  _, v = fl.tcp_target(jnp.zeros((1, 21, 21, 2)), jnp.asarray(stripe))
  cols = np.arange(21)
  np.testing.assert_array_equal(np.asarray(v)[0, 10], (cols < 3) | (cols >= 15))


def test_confidence_loss_is_mse_over_the_defined_pixels():
  labels = np.zeros((1, 41, 41), np.int32)
  labels[0, 10:31, 10:31] = 1
  loc = jax.random.normal(jax.random.key(1), (1, 41, 41, 2))
  conf = jax.random.normal(jax.random.key(2), (1, 41, 41, 1))
  target, valid = fl.tcp_target(loc, jnp.asarray(labels))
  err = (jax.nn.sigmoid(conf[..., 0]) - target) ** 2
  want = np.asarray(err)[np.asarray(valid)].mean()
  np.testing.assert_allclose(fl.confidence_loss(conf, loc, jnp.asarray(labels)), want, rtol=1e-5)


def test_detection_labels_need_more_than_three_forged_pixels():
  labels = np.zeros((3, 8, 8), np.int32)
  labels[0].flat[:3] = 1
  labels[1].flat[:4] = 1
  labels[2].flat[:10] = -1  # padding is not forged
  np.testing.assert_array_equal(fl.detection_labels(jnp.asarray(labels)), [0.0, 1.0, 0.0])


def test_weighted_bce_by_hand_and_class_weights():
  fake_w, real_w = fl.detection_class_weights(0.7)
  assert fake_w == pytest.approx(0.5 / 0.7) and real_w == pytest.approx(0.5 / 0.3)
  # A fake scored 0 (loss log 2) and a real scored 2 (loss log(1 + e^2)).
  want = (fake_w * np.log(2) + real_w * np.log1p(np.exp(2.0))) / 2
  got = fl.weighted_bce(
      jnp.array([0.0, 2.0]), jnp.array([1.0, 0.0]), fake_weight=fake_w, real_weight=real_w
  )
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # In a stream of 70 % fakes each class weighs half: 0.7 * w_fake == 0.3 * w_real == 0.5.
  assert 0.7 * fake_w == pytest.approx(0.5) and 0.3 * real_w == pytest.approx(0.5)
  with pytest.raises(ValueError, match="fake_fraction"):
    fl.detection_class_weights(1.0)


def test_multi_positive_infonce_by_hand():
  logits = np.array(
      [[0, 2, 1, 0], [2, 0, 0, 1], [1, 0, 0, 3], [0, 1, 3, 0]], np.float32
  )  # symmetric similarities
  classes = np.array([0, 0, 1, 2])  # samples 2 and 3 have no positive
  # Anchor 0: positive 1 among {1, 2, 3}; anchor 1: positive 0 among {0, 2, 3}.
  l0 = -np.log(np.exp(2) / (np.exp(2) + np.exp(1) + np.exp(0)))
  l1 = -np.log(np.exp(2) / (np.exp(2) + np.exp(0) + np.exp(1)))
  got = fl.multi_positive_infonce(jnp.asarray(logits), jnp.asarray(classes))
  np.testing.assert_allclose(got, (l0 + l1) / 2, rtol=1e-6)
  grad = jax.grad(lambda x: fl.multi_positive_infonce(x, jnp.asarray(classes)))(logits)
  assert np.all(np.isfinite(grad))
  # Two positives per anchor: their probabilities add up (sample 3 has none).
  classes = np.array([0, 0, 0, 1])
  e = np.exp(logits)
  want = np.mean(
      [
          -np.log((e[i, pos].sum()) / (e[i].sum() - e[i, i]))
          for i, pos in ((0, [1, 2]), (1, [0, 2]), (2, [0, 1]))
      ]
  )
  got = fl.multi_positive_infonce(jnp.asarray(logits), jnp.asarray(classes))
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_neg_sq_distance_logits_match_brute_force():
  z = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
  want = -((z[:, None] - z[None]) ** 2).mean(-1) / 0.5
  np.testing.assert_allclose(fl.neg_sq_distance_logits(jnp.asarray(z), 0.5), want, atol=1e-5)
