"""Inpainting quality metrics (specs/safepaint.md sections 3 and 6) and the hole-ratio bins.

* `psnr`: 10 log10(255^2 / MSE) over all pixels and channels of two uint8
  images, as the official `src/metrics.py` (max 255 on integer images). Two
  identical images score +inf; the official returns 0 there, which would
  pull a mean down for a perfect result.
* `ssim`: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1
  0.01, K2 0.03, L 255, population (co)variances, averaged over the pixels
  whose window lies inside the image, then over the channels: the value of
  skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255, channel_axis=-1).
* `mae`: sum |a - b| / sum a, a the ground truth, as the official training
  log (`src/run.py`) computes it on [0, 1] images; the ratio does not
  depend on the scale, so uint8 images give the same value.
* `frechet_distance`: the Frechet distance of two Gaussians, FID's formula.
* `per_bin`: means per hole-ratio bin, labelled like "10-20%".

The bins (`RATIO_BINS`) are those of the irregular-mask benchmarks (Liu et
al., ECCV 2018): six 10 %-wide hole-to-image area ratios (lo, hi]. Which
bins the SafePaint paper reports is not known (specs/safepaint.md section
0); these are the usual ones, not necessarily the paper's.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

RATIO_BINS = ((0.01, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6))
MAX_VALUE = 255.0
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # 3.5 sigma: a radius of int(3.5 * 1.5 + 0.5) = 5, so an 11-tap window
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
SSIM_K1, SSIM_K2 = 0.01, 0.03


# -------------------------------------------------------------------- bins ---


def bin_of_ratio(ratio: float) -> int | None:
  """The index of the bin (lo, hi] of RATIO_BINS holding `ratio`, None outside every bin."""
  for i, (lo, hi) in enumerate(RATIO_BINS):
    if lo < ratio <= hi:
      return i
  return None


def ratio_bin(mask) -> int | None:
  """The bin of a hole mask's hole ratio (the fraction of nonzero pixels), None outside all."""
  mask = np.asarray(mask)
  if mask.size == 0:
    raise ValueError("ratio_bin: empty mask")
  return bin_of_ratio(float(np.count_nonzero(mask) / mask.size))


def bin_label(index: int) -> str:
  """ "1-10%", "10-20%", ... for bin `index` of RATIO_BINS."""
  lo, hi = RATIO_BINS[index]
  return f"{round(lo * 100)}-{round(hi * 100)}%"


def per_bin(values: Iterable[float], bins: Iterable[int | None]) -> dict[str, float]:
  """{bin label: mean of the values in that bin}, in bin order; empty bins are left out.

  Args:
    values: one number per image (a PSNR, an F1 ...).
    bins: each image's bin index (ratio_bin); None (or -1, a record's "no
      bin") leaves the image out.
  """
  values, bins = list(values), list(bins)
  if len(values) != len(bins):
    raise ValueError(f"{len(values)} values but {len(bins)} bins")
  groups: dict[int, list[float]] = {}
  for value, index in zip(values, bins):
    if index is not None and index >= 0:
      groups.setdefault(int(index), []).append(float(value))
  return {bin_label(i): float(np.mean(groups[i])) for i in sorted(groups)}


# --------------------------------------------------------- image quality ---


def _integer_pair(a, b, name: str) -> tuple[np.ndarray, np.ndarray]:
  """Both images as float64, after checking they are integer images of one shape."""
  a, b = np.asarray(a), np.asarray(b)
  if a.shape != b.shape:
    raise ValueError(f"{name}: images differ in shape, {a.shape} and {b.shape}")
  for image in (a, b):
    if not np.issubdtype(image.dtype, np.integer):
      raise TypeError(f"{name} takes uint8 images (0-255), got {image.dtype}")
  return a.astype(np.float64), b.astype(np.float64)


def psnr(a, b) -> float:
  """PSNR in dB of two uint8 images (any shape, one for both), peak 255; +inf if identical."""
  a, b = _integer_pair(a, b, "psnr")
  mse = float(np.mean((a - b) ** 2))
  if mse == 0.0:
    return float("inf")
  return float(20.0 * np.log10(MAX_VALUE) - 10.0 * np.log10(mse))


def _ssim_channel(x: np.ndarray, y: np.ndarray) -> float:
  """Mean SSIM of two HxW float64 channels over the pixels whose window is inside."""
  blur = lambda z: ndimage.gaussian_filter(z, SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")
  mu_x, mu_y = blur(x), blur(y)
  var_x = blur(x * x) - mu_x * mu_x
  var_y = blur(y * y) - mu_y * mu_y
  cov = blur(x * y) - mu_x * mu_y
  c1, c2 = (SSIM_K1 * MAX_VALUE) ** 2, (SSIM_K2 * MAX_VALUE) ** 2
  ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
      (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
  )
  r = SSIM_RADIUS
  return float(ssim_map[r:-r, r:-r].mean())


def ssim(a, b) -> float:
  """SSIM of two uint8 images, HxW or HxWxC (channel mean); each side at least 11 pixels."""
  a, b = _integer_pair(a, b, "ssim")
  if a.ndim not in (2, 3):
    raise ValueError(f"ssim takes HxW or HxWxC images, got shape {a.shape}")
  if min(a.shape[:2]) < 2 * SSIM_RADIUS + 1:
    raise ValueError(f"ssim needs images of at least 11x11 pixels, got {a.shape[:2]}")
  if a.ndim == 2:
    return _ssim_channel(a, b)
  return float(np.mean([_ssim_channel(a[..., c], b[..., c]) for c in range(a.shape[-1])]))


def mae(a, b) -> float:
  """sum |a - b| / sum a, `a` the ground truth (nan when both sums are 0, inf when only a's is)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise ValueError(f"mae: images differ in shape, {a.shape} and {b.shape}")
  with np.errstate(divide="ignore", invalid="ignore"):
    return float(np.sum(np.abs(a - b)) / np.sum(a))


# --------------------------------------------------------------- features ---


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
  """The symmetric square root of a symmetric positive semi-definite matrix."""
  eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), the Frechet distance of two Gaussians.

  Tr (S1 S2)^(1/2) is computed as the sum of the square roots of the
  eigenvalues of S1^(1/2) S2 S1^(1/2), which has the same eigenvalues as
  S1 S2 but is symmetric, so no complex square root (FID's usual sqrtm
  route) arises for singular covariances.

  Args:
    mu1, mu2: (D,) feature means.
    sigma1, sigma2: (D, D) feature covariances.
  """
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(
      np.float64
  )
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(
        f"frechet_distance: means {mu1.shape}, {mu2.shape} and covariances"
        f" {sigma1.shape}, {sigma2.shape} do not match"
    )
  root1 = _sqrt_psd(sigma1)
  product = root1 @ sigma2 @ root1
  trace_root = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)))
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_root)
