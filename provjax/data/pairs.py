"""SImProv comparator pairs: (reference, query, label, heatmap) with exact ground truth.

Labels follow specs/simprov.md section 2.9: 0 benign (the query is the
reference after benign edits), 1 manipulated (a malicious edit, then benign
edits), 2 distinct (a different image). The heatmap target lives in the
reference's frame and is derived from the transform's mask and coordinate
table (`transforms.heatmap_target`), never guessed. Distinct images and
manipulation donors come only from the pair's own split (`provjax.data.splits`),
so eval pairs never show a training source.
"""

from __future__ import annotations

import numpy as np

from provjax import transforms
from provjax.data import photos, splits

BENIGN, MANIPULATED, DISTINCT = 0, 1, 2
LABELS = ("benign", "manipulated", "distinct")


def distractor(
    rng: np.random.Generator, size: int, split: str = "train", photo_dir: str | None = None
) -> np.ndarray:
  """Another image of `split`: a crop of one of its photos or a procedural image of its seeds.

  Args:
    rng: the source of randomness.
    size: output side in pixels.
    split: whose sources to draw from (splits.SPLITS).
    photo_dir: the photo folder the data comes from; None for the bundled photos.
  """
  pool = splits.photo_pool(split, photo_dir)
  if pool and rng.random() < 0.5:
    return photos.photo_crop(rng, size, pool=pool)[1]
  return splits.draw_procedural(rng, size, split)


def make_pair(
    original: np.ndarray,
    rng: np.random.Generator,
    *,
    size: int,
    grid: int = 7,
    label: int | None = None,
    benign_max: int = 3,
    split: str = "train",
    photo_dir: str | None = None,
) -> dict:
  """One training/eval pair at `size` x `size`; `label` drawn uniformly if None.

  Distinct images and donors are drawn from `split`'s sources (of `photo_dir`,
  or the bundled photos): pass the split `original` came from.
  """
  label = int(rng.integers(3)) if label is None else label
  e = transforms.identity(original)
  ref = transforms.to_size(e, size).image
  heatmap = np.zeros((grid, grid), np.float32)
  if label == DISTINCT:
    other = transforms.identity(distractor(rng, max(original.shape[:2]), split, photo_dir))
    query = transforms.random_benign(other, rng, n_max=benign_max)
    heatmap[:] = 1.0
  elif label == MANIPULATED:
    donor = distractor(rng, max(original.shape[:2]), split, photo_dir)
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
