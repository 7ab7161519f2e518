"""Fast hole filling for the `remove` manipulation (no OpenCV).

Push-pull (pyramid) interpolation: average the known pixels down a 2x
pyramid until the holes vanish, then fill each level's holes from the
bilinearly upsampled coarser level. It costs O(H*W), unlike biharmonic
inpainting, which is far too slow for holes covering a quarter of the image.
Fine-scale grain matching the image is added so the fill is not a
suspiciously flat patch.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _downsample(img: np.ndarray, known: np.ndarray):
  """Known-weighted 2x2 averages; a coarse pixel is known if any input was."""
  h, w = known.shape
  ph, pw = h % 2, w % 2
  img = np.pad(img * known[..., None], ((0, ph), (0, pw), (0, 0)))
  wgt = np.pad(known.astype(np.float32), ((0, ph), (0, pw)))
  hs, ws = img.shape[0] // 2, img.shape[1] // 2
  total = img.reshape(hs, 2, ws, 2, -1).sum((1, 3))
  count = wgt.reshape(hs, 2, ws, 2).sum((1, 3))
  coarse = total / np.maximum(count, 1e-6)[..., None]
  return coarse.astype(np.float32), count > 0


def _upsample(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """Bilinear 2x upsampling (pixel-centre aligned), cropped to `shape`."""
  up = ndimage.zoom(img, (2, 2, 1), order=1, mode="nearest", grid_mode=True)
  return up[: shape[0], : shape[1]]


def push_pull(img: np.ndarray, known: np.ndarray) -> np.ndarray:
  """Fills pixels where `known` is False from their known surroundings.

  Args:
    img: HxWxC float32 image.
    known: HxW bool, pixels to keep.

  Returns:
    HxWxC float32, equal to `img` on known pixels.
  """
  if known.all():
    return img
  if not known.any():
    return np.zeros_like(img)
  if min(known.shape) <= 2:
    mean = img[known].mean(0)
    return np.where(known[..., None], img, mean)
  coarse, coarse_known = _downsample(img, known)
  filled = _upsample(push_pull(coarse, coarse_known), known.shape)
  return np.where(known[..., None], img, filled)


def inpaint(
    image: np.ndarray, hole: np.ndarray, rng: np.random.Generator | None = None
) -> np.ndarray:
  """Fills `hole` (HxW bool) of an HxWx3 uint8 image; the rest is untouched.

  With `rng`, monochrome Gaussian grain of the image's own high-frequency
  strength is added inside the hole.
  """
  img = image.astype(np.float32)
  fill = push_pull(img, ~hole)
  # Smooth the pyramid's residual seams inside the hole only.
  fill = np.where(hole[..., None], ndimage.gaussian_filter(fill, (1.5, 1.5, 0)), img)
  if rng is not None and (~hole).any():
    detail = img - ndimage.gaussian_filter(img, (1.0, 1.0, 0))
    std = 0.5 * float(detail[~hole].std())  # half: edges inflate the std
    # Monochrome grain: independent per-channel noise looks like confetti.
    grain = rng.normal(0, std, img.shape[:2]).astype(np.float32)
    fill = fill + (hole * grain)[..., None]
  out = np.clip(np.rint(fill), 0, 255).astype(np.uint8)
  return np.where(hole[..., None], out, image)
