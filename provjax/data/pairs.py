"""SImProv comparator pairs: (reference, query, label, heatmap) with exact ground truth.

Labels follow specs/simprov.md section 2.9: 0 benign (the query is the
reference after benign edits), 1 manipulated (a malicious edit, then benign
edits), 2 distinct (a different image). The heatmap target lives in the
reference's frame and is derived from the transform's mask and coordinate
table (`transforms.heatmap_target`), never guessed.
"""

from __future__ import annotations

import numpy as np

from provjax import transforms
from provjax.data import photos

BENIGN, MANIPULATED, DISTINCT = 0, 1, 2
LABELS = ("benign", "manipulated", "distinct")


def distractor(rng: np.random.Generator, size: int) -> np.ndarray:
  """Another image: a crop of a bundled photo or a procedural image."""
  if rng.random() < 0.5:
    return photos.photo_crop(rng, size)[1]
  return photos.procedural_image(rng, size)


def make_pair(
    original: np.ndarray,
    rng: np.random.Generator,
    *,
    size: int,
    grid: int = 7,
    label: int | None = None,
    benign_max: int = 3,
) -> dict:
  """One training/eval pair at `size` x `size`; `label` drawn uniformly if None."""
  label = int(rng.integers(3)) if label is None else label
  e = transforms.identity(original)
  ref = transforms.to_size(e, size).image
  heatmap = np.zeros((grid, grid), np.float32)
  if label == DISTINCT:
    other = transforms.identity(distractor(rng, max(original.shape[:2])))
    query = transforms.random_benign(other, rng, n_max=benign_max)
    heatmap[:] = 1.0
  elif label == MANIPULATED:
    donor = distractor(rng, max(original.shape[:2]))
    edited = transforms.random_manipulation(e, rng, donors=[donor])
    query = transforms.random_benign(edited, rng, n_max=benign_max)
    heatmap = transforms.heatmap_target(query, original.shape[:2], grid)
    if heatmap.max() == 0:  # the benign edits cropped or covered the whole edit away
      label = BENIGN
  else:
    query = transforms.random_benign(e, rng, n_max=benign_max)
  return {
      "ref": ref,
      "query": transforms.to_size(query, size).image,
      "label": np.int32(label),
      "heatmap": heatmap.astype(np.float32),
  }
