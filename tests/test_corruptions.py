"""Tests for provjax.transforms.corruptions (ImageNet-C corruptions)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import provjax.transforms as T
from provjax.transforms import corruptions as C

SEVERITIES = (1, 2, 3, 4, 5)


def textured(h=64, w=64, seed=0):
  """Smooth colour blobs plus fine texture, away from 0 and 255."""
  rng = np.random.default_rng(seed)
  small = rng.integers(40, 216, size=(6, 6, 3), dtype=np.uint8)
  base = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), np.float32)
  return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def high_freq_energy(image):
  image = image.astype(np.float32)
  lap = np.stack([ndimage.laplace(image[..., k], mode="nearest") for k in range(3)], -1)
  return float(np.mean(lap[2:-2, 2:-2] ** 2))


@pytest.mark.parametrize("shape", [(64, 64), (37, 50)])
@pytest.mark.parametrize("name", C.NAMES)
def test_shape_and_dtype_every_severity(name, shape):
  image = textured(*shape)
  for severity in SEVERITIES:
    out = C.corrupt(image, name, severity, np.random.default_rng(severity))
    assert out.shape == image.shape and out.dtype == np.uint8, (name, severity)


@pytest.mark.parametrize("shape", [(224, 224), (32, 32), (16, 20)])
def test_shape_at_other_sizes(shape):
  image = textured(*shape)
  for name in C.NAMES:
    for severity in (1, 5):
      out = C.corrupt(image, name, severity, np.random.default_rng(0))
      assert out.shape == image.shape and out.dtype == np.uint8, (name, severity)


@pytest.mark.parametrize("name", C.NAMES)
def test_changes_the_image(name):
  image = textured()
  out = C.corrupt(image, name, 3, np.random.default_rng(0))
  assert np.abs(out.astype(int) - image).mean() > 0.5, name


@pytest.mark.parametrize("name", C.NAMES)
def test_deterministic_given_the_rng_state(name):
  image = textured()
  a = C.corrupt(image, name, 4, np.random.default_rng(7))
  b = C.corrupt(image, name, 4, np.random.default_rng(7))
  np.testing.assert_array_equal(a, b)


def test_input_is_not_modified():
  image = textured()
  copy = image.copy()
  for name in C.NAMES:
    C.corrupt(image, name, 5, np.random.default_rng(0))
  np.testing.assert_array_equal(image, copy)


def _by_severity(name, measure, image):
  return [measure(C.corrupt(image, name, s, np.random.default_rng(0))) for s in SEVERITIES]


def test_noise_error_grows_with_severity():
  image = textured()
  for name in ("gaussian_noise", "shot_noise", "speckle_noise", "impulse_noise"):
    err = _by_severity(name, lambda out: np.std(out.astype(float) - image), image)
    assert np.all(np.diff(err) > 0), (name, err)


def test_blurs_remove_more_detail_with_severity():
  image = textured()
  for name in ("gaussian_blur", "defocus_blur", "motion_blur"):
    energy = _by_severity(name, high_freq_energy, image)
    assert energy[0] < high_freq_energy(image), name
    assert energy[-1] < 0.5 * energy[0], (name, energy)
  energy = _by_severity("gaussian_blur", high_freq_energy, image)
  assert np.all(np.diff(energy) < 0), energy


def test_contrast_brightness_and_jpeg_are_monotone():
  image = textured()
  stds = _by_severity("contrast", lambda out: out.astype(float).std(), image)
  assert np.all(np.diff(stds) < 0) and stds[0] < image.std(), stds
  means = _by_severity("brightness", lambda out: out.astype(float).mean(), image)
  assert np.all(np.diff(means) > 0) and means[0] > image.mean(), means
  errors = _by_severity("pixelate", lambda out: np.abs(out.astype(float) - image).mean(), image)
  assert np.all(np.diff(errors) > 0), errors


def test_bad_name_or_severity_raises():
  image = textured()
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="blurry"):
    C.corrupt(image, "blurry", 3, rng)
  for severity in (0, 6, 2.5):
    with pytest.raises(ValueError, match="severity"):
      C.corrupt(image, "fog", severity, rng)


def test_names_and_id_split():
  assert len(C.NAMES) == 19 and len(set(C.NAMES)) == 19
  assert C.NAMES[0] == "gaussian_noise" and C.NAMES[12] == "elastic_transform"
  assert C.NAMES[18] == "saturate"
  assert not set(C.TRAIN_IDS) & set(C.UNSEEN_IDS)
  assert sorted(C.TRAIN_IDS + C.UNSEEN_IDS) == list(range(19))
  assert [C.NAMES[i] for i in C.UNSEEN_IDS] == ["glass_blur", "motion_blur", "zoom_blur", "snow"]


def test_random_corruption_probability():
  image = textured()
  rng = np.random.default_rng(0)
  for _ in range(5):
    out, name = C.random_corruption(image, rng, p=0.0)
    assert name is None
    np.testing.assert_array_equal(out, image)
  allowed = {C.NAMES[i] for i in C.UNSEEN_IDS}
  for _ in range(20):
    out, name = C.random_corruption(image, rng, ids=C.UNSEEN_IDS, p=1.0)
    assert name in allowed and out.shape == image.shape and out.dtype == np.uint8


def test_corruption_op_keeps_coords_and_mask():
  e = T.identity(textured())
  out = C.corruption(e, np.random.default_rng(0), name="elastic_transform", severity=2)
  assert not np.array_equal(out.image, e.image)
  assert out.coords is e.coords and out.mask is e.mask and out.geo is e.geo
  drawn = C.corruption(e, np.random.default_rng(1))
  assert drawn.image.shape == e.image.shape and drawn.coords is e.coords
