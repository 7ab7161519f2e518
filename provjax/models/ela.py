"""Error level analysis (ELA): the classical, training-free reference row of the forgery benchmarks.

ELA re-saves an image as JPEG and looks at how much each part changes. Parts
with another compression history than the rest change by another amount:
content that was never compressed loses more to a quality-90 re-save than
content already quantised by a coarser JPEG, and a region pasted from a
different source differs from its host either way. So the map here is not
the raw error level but its deviation from the image's typical level:

1. error: |image - JPEG_90(image)| (Pillow, default chroma subsampling),
   averaged over the three channels;
2. smoothed with a 15x15 box filter (about two JPEG blocks; mirrored at the
   frame), which averages out the per-block quantisation pattern;
3. deviation: |smoothed - median(smoothed)|, the median standing for the
   host, which is the larger part of a forged image;
4. scaled to [0, 1) by the fixed rule d / (d + 1 grey level): monotone, so
   no ranking is lost to clipping (F1_best sweeps every value), the same for
   every image, so maps and scores compare across images, and 0.5 (the
   fixed-threshold F1) means a deviation of one grey level.

Image score: the mean of the top 1 % of the map. A forged region of a few
per cent of the image fills that top percentile, while the mean over it is
steadier than the single maximum, which one bright edge can set.

Limits: the error level follows texture as much as compression history
(edges and fine texture lose more to any JPEG), and a forged region larger
than half the image becomes the "typical" level, so the host is marked
instead (the inverted F1 of the protocol still scores that map).
"""

from __future__ import annotations

import numpy as np

from provjax import transforms

QUALITY = 90  # JPEG quality of the re-save
WINDOW = 15  # side of the box filter, pixels
SCALE = 1.0  # grey levels of deviation that map to 0.5
TOP_FRACTION = 0.01  # the image score averages this fraction of the highest map values


def error_level(image: np.ndarray, quality: int = QUALITY) -> np.ndarray:
  """HxW float32: |image - JPEG(image)| at `quality`, the mean over the RGB channels."""
  # The transforms' Pillow round trip (models sit below provjax.data, whose codec is the same).
  resaved = transforms.jpeg(transforms.identity(image), quality=quality).image
  return np.abs(image.astype(np.float32) - resaved.astype(np.float32)).mean(axis=-1)


def box_filter(values: np.ndarray, size: int = WINDOW) -> np.ndarray:
  """Mean over a size x size window (odd size) centred on each pixel, mirrored at the frame."""
  r = size // 2
  padded = np.pad(values.astype(np.float64), r, mode="symmetric")
  sums = np.pad(padded.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # summed-area table
  window = sums[size:, size:] - sums[:-size, size:] - sums[size:, :-size] + sums[:-size, :-size]
  return (window / (size * size)).astype(np.float32)


def ela(image: np.ndarray) -> tuple[np.ndarray, float]:
  """(map HxW float32 in [0, 1), score) of an HxWx3 uint8 RGB image (see module docstring)."""
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"expected an HxWx3 uint8 image, got {image.dtype} {image.shape}")
  smoothed = box_filter(error_level(image))
  deviation = np.abs(smoothed - np.median(smoothed))
  score_map = (deviation / (deviation + SCALE)).astype(np.float32)
  top = max(1, int(round(score_map.size * TOP_FRACTION)))
  score = float(np.partition(score_map.ravel(), score_map.size - top)[-top:].mean())
  return score_map, score
