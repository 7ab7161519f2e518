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

from typing import Callable

import numpy as np

from provjax import transforms
from provjax.data import photos, splits
from provjax.transforms import pixtrace, recipes

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


# Geometric families of the warp pre-training pairs (the paper pre-trains its
# STN on synthetic affine warps; perspective, crops and resizes added).
WARP_FAMILIES = ("affine", "perspective", "rotate", "resize", "aspect", "crop", "pad", "flip")


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
    recipe: str = "moderate",
    negative: Callable[[np.random.Generator], np.ndarray | None] | None = None,
) -> dict:
  """One training/eval pair at `size` x `size`; `label` drawn uniformly if None.

  Distinct images and donors are drawn from `split`'s sources (of `photo_dir`,
  or the bundled photos): pass the split `original` came from. `recipe` is
  "moderate" (`benign_max` ops), "paper" (transforms.recipes) or "warp"
  (benign pairs under 1-2 geometric families, for warp pre-training).

  `edit_mask` is the heatmap target at the pair's own resolution (size x
  size coverage of the edit in the reference's frame; the finer heatmap's
  target is its pooling). The pair's `flow` is the exact alignment target: for each reference pixel,
  the (y, x) query pixel that shows it (PixTrace `correspondence` of the two
  views' geometric tables, so an edited region still has its position), -1
  where the query does not show it and everywhere for distinct pairs.

  `negative(rng)`, called for distinct pairs only, may return the other image
  (a hard negative, `provjax.data.hard_negatives`); when it returns None, or
  is None, the other image is a random distractor of the split.
  """
  label = int(rng.integers(3)) if label is None else label
  if recipe == "warp":
    label = BENIGN
    benign = lambda e, r: transforms.random_benign(e, r, n_max=2, families=WARP_FAMILIES)
    manipulate = None
  elif recipe == "paper":
    benign, manipulate = recipes.paper_benign, recipes.paper_manipulation
  else:  # the donor is drawn before the kind, as the released pairs were made
    manipulate = lambda e, r, donors: transforms.random_manipulation(e, r, donors=[donors()])
    benign = lambda e, r: transforms.random_benign(e, r, n_max=benign_max)
  e = transforms.identity(original)
  ref = transforms.to_size(e, size)
  heatmap = np.zeros((grid, grid), np.float32)
  edit_mask = np.zeros((size, size), np.float32)
  if label == DISTINCT:
    other = negative(rng) if negative is not None else None
    if other is None:
      other = distractor(rng, max(original.shape[:2]), split, photo_dir)
    other = transforms.identity(other)
    query = benign(other, rng)
    heatmap[:] = 1.0
    edit_mask[:] = 1.0
  elif label == MANIPULATED:
    donor = lambda: distractor(rng, max(original.shape[:2]), split, photo_dir)
    query = benign(manipulate(e, rng, donors=donor), rng)
    heatmap = transforms.heatmap_target(query, original.shape[:2], grid)
    edit_mask = transforms.heatmap_target(query, original.shape[:2], size)
    if heatmap.max() == 0:  # the benign edits cropped or covered the whole edit away
      label = BENIGN
  else:
    query = benign(e, rng)
  query = transforms.to_size(query, size)
  if label == DISTINCT:
    flow = np.full((size, size, 2), -1.0, np.float32)
  else:
    flow = pixtrace.correspondence(ref.geometry, query.geometry, original.shape[:2])
  return {
      "ref": ref.image,
      "query": query.image,
      "label": np.int32(label),
      "heatmap": heatmap.astype(np.float32),
      "edit_mask": edit_mask,
      "flow": flow.astype(np.float32),
  }
