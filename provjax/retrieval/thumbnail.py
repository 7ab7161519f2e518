"""The classical reference descriptor every learned one is measured against.

A side x side grayscale thumbnail, mean removed, L2-normalised, searched by
cosine: what any user could write in ten lines. Provenance and copy
detection report it as a row of their benchmarks, and can mix it into a
learned descriptor's similarity (`with_thumbnail`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def thumbnail(images: list[np.ndarray], side: int = 16) -> np.ndarray:
  """float32 [N, side^2] unit vectors of RGB uint8 images."""
  out = []
  for im in images:
    gray = Image.fromarray(im).convert("L").resize((side, side), Image.Resampling.BILINEAR)
    v = np.asarray(gray, np.float32).ravel()
    v -= v.mean()
    out.append(v / max(float(np.linalg.norm(v)), 1e-6))
  return np.stack(out).astype(np.float32)


def with_thumbnail(descriptors: np.ndarray, thumbs: np.ndarray, weight: float) -> np.ndarray:
  """Unit vectors whose inner products are (1 - w) x descriptor cosine + w x thumbnail cosine.

  The two are complementary: a learned descriptor trained on few images keeps
  geometry (crops, overlays, image-in-image) and a mean-removed grayscale
  thumbnail keeps photometric changes (colour, blur, JPEG). Concatenating
  sqrt(1 - w) d and sqrt(w) t (both unit vectors) gives a unit vector, so any
  search and score normalisation runs on the mixed similarity unchanged.
  """
  if weight == 0.0:
    return descriptors
  return np.concatenate([np.sqrt(1.0 - weight) * descriptors, np.sqrt(weight) * thumbs], axis=1)
