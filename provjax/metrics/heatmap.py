"""Heatmap IoU and emptiness of the SImProv comparator (specs/simprov.md 2.11).

The reference (`AlexBlck/icn:src/utils.py`, `grid_to_binary`, `heatmap_iou`,
`heatmap_emptiness`) scores a 7x7 map by:

  1. (IoU only) min-max normalising the prediction;
  2. `torchvision.transforms.functional.to_pil_image` on the float map, which
     quantises with `mul(255).byte()` (float32 product, truncation) into an
     8-bit 'L' image;
  3. PIL `resize((1024, 1024), Image.BICUBIC)` of that 8-bit image;
  4. binarising at > 80 (i.e. > 80/255);
  5. IoU = |pred & gt| / |pred | gt|, or 0 when the union is empty;
     emptiness = fraction of zero pixels of the binarised prediction.

This module reproduces that pipeline exactly with numpy + Pillow, including
the uint8 quantisation before the resize (resizing float 'F' images instead
shifts the > 80 boundary by up to a pixel row and would not reproduce the
published numbers). Two documented departures, both on inputs where the
reference is undefined:
  * values outside [0, 1] are clipped before quantisation (torch's float ->
    uint8 cast wraps or is undefined there);
  * a constant prediction, whose min-max normalisation is 0/0 (NaN) in the
    reference, normalises to all ones if its value is > 0 and to all zeros
    otherwise. The comparator's test-time rule emits an all-one map for
    "distinct" pairs, and that map must stay full rather than vanish.
Emptiness uses the prediction as given (no min-max), as the reference does;
pass the test-time heatmap, which is already in [0, 1].
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SIZE = 1024
THRESHOLD = 80  # on the 0..255 scale of the resized 8-bit map: "> 80/255"


def minmax_normalize(pred) -> np.ndarray:
  """(x - min) / (max - min) in float32; constant maps -> 1 if > 0 else 0."""
  pred = np.asarray(pred, np.float32)
  lo, hi = pred.min(), pred.max()
  if hi > lo:
    return (pred - lo) / (hi - lo)
  return np.full_like(pred, 1.0 if hi > 0 else 0.0)


def quantize(grid) -> np.ndarray:
  """torchvision's float -> 8-bit conversion: float32 x * 255, truncated."""
  scaled = np.clip(np.asarray(grid, np.float32), 0.0, 1.0) * np.float32(255)
  return scaled.astype(np.uint8)


def binarize(grid, size: int | tuple[int, int] = SIZE, threshold: int = THRESHOLD) -> np.ndarray:
  """[g, g] map in [0, 1] -> bool [size, size] (or [h, w] for size (h, w)) after 8-bit
  bicubic resampling."""
  h, w = (size, size) if isinstance(size, int) else size
  image = Image.fromarray(quantize(grid)).resize((w, h), Image.BICUBIC)
  return np.asarray(image) > threshold


def heatmap_iou(pred, gt, size: int = SIZE) -> float:
  """IoU of the binarised min-max-normalised prediction and the binarised GT.

  Args:
    pred: [g, g] predicted heatmap (any range; it is min-max normalised).
    gt: [g, g] ground-truth heatmap in [0, 1].
    size: side of the upsampled maps (1024 in the reference).

  Returns:
    |pred & gt| / |pred | gt|, or 0.0 when both binarised maps are empty.
  """
  p = binarize(minmax_normalize(pred), size)
  t = binarize(gt, size)
  union = np.count_nonzero(p | t)
  return float(np.count_nonzero(p & t) / union) if union else 0.0


def mask_iou(pred, mask) -> float:
  """`heatmap_iou` at native resolution: the prediction binarised at the exact
  mask's own size (same normalisation, quantisation, bicubic resampling and
  threshold) against that bool mask; 0.0 when both are empty."""
  mask = np.asarray(mask, bool)
  p = binarize(minmax_normalize(pred), mask.shape)
  union = np.count_nonzero(p | mask)
  return float(np.count_nonzero(p & mask) / union) if union else 0.0


def emptiness(pred, size: int = SIZE) -> float:
  """Fraction of zero pixels in the binarised prediction (1.0 = empty map)."""
  return 1.0 - np.count_nonzero(binarize(pred, size)) / float(size * size)


def batch_heatmap_iou(preds, gts, size: int = SIZE) -> np.ndarray:
  """`heatmap_iou` per sample of [B, g, g] arrays."""
  return np.asarray([heatmap_iou(p, t, size) for p, t in zip(np.asarray(preds), np.asarray(gts))])


def batch_emptiness(preds, size: int = SIZE) -> np.ndarray:
  """`emptiness` per sample of a [B, g, g] array."""
  return np.asarray([emptiness(p, size) for p in np.asarray(preds)])
