"""The classical reference descriptor every learned one is measured against.

A side x side grayscale thumbnail, mean removed, L2-normalised, searched by
cosine: what any user could write in ten lines. Provenance and copy
detection report it as a row of their benchmarks.
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
