"""Inpainting quality metrics (provjax.metrics.inpainting) against scikit-image, scipy and hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import linalg, ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from provjax.metrics import inpainting as m


def _pair(seed: int, shape=(48, 40, 3)):
  rng = np.random.default_rng(seed)
  a = rng.integers(0, 256, shape, dtype=np.uint8)
  b = np.clip(a.astype(int) + rng.integers(-40, 41, shape), 0, 255).astype(np.uint8)
  return a, b


def _structured(seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
  """A smooth gradient image with a square, and a blurred, shifted, noisier copy of it."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:size, :size]
  image = np.stack([x * 4, y * 3, (x + y) * 2], -1) % 256
  image[16:40, 20:44] = rng.integers(0, 256, 3)
  other = ndimage.gaussian_filter(np.roll(image, 2, axis=1).astype(float), (1.0, 1.0, 0))
  other += rng.normal(0, 6, other.shape)
  return image.astype(np.uint8), np.clip(np.round(other), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- PSNR ---


@pytest.mark.parametrize("seed", range(3))
def test_psnr_matches_skimage(seed):
  a, b = _pair(seed)
  assert m.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)


def test_psnr_hand_case_and_identical_images():
  a = np.zeros((4, 4, 3), np.uint8)
  b = a.copy()
  b[0, 0, 0] = 12  # MSE = 144 / 48 = 3
  assert m.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 3.0))
  assert m.psnr(a, a) == math.inf
  assert m.psnr(b, a) == m.psnr(a, b)


def test_psnr_refuses_float_images_and_shape_mismatch():
  a, b = _pair(0)
  with pytest.raises(TypeError, match="uint8"):
    m.psnr(a / 255.0, b / 255.0)
  with pytest.raises(ValueError, match="shape"):
    m.psnr(a, b[:-1])


# ---------------------------------------------------------------- SSIM ---


def _skimage_ssim(a, b):
  return structural_similarity(
      a,
      b,
      gaussian_weights=True,
      sigma=1.5,
      use_sample_covariance=False,
      data_range=255,
      channel_axis=-1 if a.ndim == 3 else None,
  )


@pytest.mark.parametrize("seed", range(3))
def test_ssim_matches_skimage_on_random_images(seed):
  a, b = _pair(seed)
  assert m.ssim(a, b) == pytest.approx(_skimage_ssim(a, b), abs=1e-6)
  assert m.ssim(a[..., 0], b[..., 0]) == pytest.approx(
      _skimage_ssim(a[..., 0], b[..., 0]), abs=1e-6
  )


@pytest.mark.parametrize("seed", range(2))
def test_ssim_matches_skimage_on_structured_images(seed):
  a, b = _structured(seed)
  value = m.ssim(a, b)
  assert value == pytest.approx(_skimage_ssim(a, b), abs=1e-6)
  assert 0.2 < value < 0.99  # similar, not equal: the check is not at a trivial end


def test_ssim_hand_cases():
  a, b = _structured(0)
  assert m.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
  # A constant image against a constant one: SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1).
  x, y = np.full((16, 16), 100, np.uint8), np.full((16, 16), 60, np.uint8)
  c1 = (0.01 * 255) ** 2
  assert m.ssim(x, y) == pytest.approx((2 * 100 * 60 + c1) / (100**2 + 60**2 + c1), abs=1e-9)
  with pytest.raises(ValueError, match="11x11"):
    m.ssim(a[:10], b[:10])


# ----------------------------------------------------------------- MAE ---


def test_mae_is_the_official_ratio_on_either_scale():
  a, b = _pair(1)
  expected = np.abs(a.astype(float) - b).sum() / a.astype(float).sum()
  assert m.mae(a, b) == pytest.approx(expected)
  assert m.mae(a / 255.0, b / 255.0) == pytest.approx(expected)  # the official [0, 1] form
  assert m.mae(a, a) == 0.0
  assert m.mae(np.array([2.0, 2.0]), np.array([1.0, 4.0])) == pytest.approx(3.0 / 4.0)


# ---------------------------------------------------------------- bins ---


def test_bins_labels_and_ratio_bin_edges():
  assert [m.bin_label(i) for i in range(len(m.RATIO_BINS))] == [
      "1-10%",
      "10-20%",
      "20-30%",
      "30-40%",
      "40-50%",
      "50-60%",
  ]
  mask = np.zeros(100, bool)
  for count, expected in ((0, None), (1, None), (2, 0), (10, 0), (11, 1), (60, 5), (61, None)):
    mask[:] = False
    mask[:count] = True
    assert m.ratio_bin(mask) == expected, count  # bins are (lo, hi]


def test_per_bin_means_in_bin_order_without_empty_bins():
  values = [10.0, 20.0, 30.0, 5.0, 7.0, 100.0, 1.0]
  bins = [3, 0, 3, 0, 0, None, -1]
  assert list(m.per_bin(values, bins).items()) == [("1-10%", 32.0 / 3), ("30-40%", 20.0)]
  with pytest.raises(ValueError):
    m.per_bin([1.0], [0, 1])


# ----------------------------------------------------------------- FID ---


def test_frechet_distance_diagonal_hand_case():
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  d1, d2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
  # Diagonal covariances: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt d1 - sqrt d2)^2 = 1 + 1 + 0.
  expected = 1 + 0 + 4 + 2
  assert m.frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(expected)
  assert m.frechet_distance(mu1, np.diag(d1), mu1, np.diag(d1)) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_frechet_distance_matches_scipy_sqrtm(seed):
  rng = np.random.default_rng(seed)
  x, y = rng.normal(size=(200, 6)), rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6)) + 0.5
  mu1, mu2 = x.mean(0), y.mean(0)
  s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
  assert m.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(direct, rel=1e-8)


def test_frechet_distance_singular_covariance_and_shape_check():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 5))  # 3 samples in 5 dimensions: a rank-2 covariance
  s = np.cov(x, rowvar=False)
  assert m.frechet_distance(x.mean(0), s, x.mean(0), s) == pytest.approx(0.0, abs=1e-6)
  with pytest.raises(ValueError):
    m.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
