"""Honest splits: the one place that says which image source belongs to which split.

A *source* is what a model could memorise: a photograph (all crops of one photo,
and both views of a stereo pair, are one source) or one procedural seed. Every
source belongs to exactly one split, so train, test, the held-back benchmark's
originals ("gallery") and its distractors never share one:

- bundled photos: the explicit table :data:`BUNDLED_SPLITS` below;
- a user's photo folder (:mod:`provjax.data.folder`): each group of
  near-identical files goes to the split chosen by :func:`assign_groups`, a
  stable hash of the group key;
- procedural images: the i-th image of a split is drawn from
  ``np.random.default_rng([seed, SPLIT_ID[split], i])``, so the split id is part
  of every procedural seed and no seed is in two splits.

Every generated image carries a :func:`photo_source` or
:func:`procedural_source` string, so tests can check disjointness directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

SPLITS = ("train", "test", "gallery", "distractors")
# Part of every procedural seed; train/test keep the ids they had before splits.py.
SPLIT_ID = {"train": 0, "test": 1, "gallery": 2, "distractors": 3}

# Bundled photographs (photos.sample_photos names) per split, with varied content in
# each: natural colour photos, gray photos, textures and scientific images.
BUNDLED_SPLITS = {
    "train": (
        "astronaut",
        "brick",
        "cell",
        "clock",
        "grass",
        "hubble_deep_field",
        "immunohistochemistry",
        "moon",
        "page",
        "retina",
        "motorcycle_left",  # a stereo pair: one source, one split
        "motorcycle_right",
        "china",
        "grace_hopper",
    ),
    "test": ("coffee", "camera", "gravel"),
    "gallery": ("chelsea", "rocket", "coins"),
    "distractors": ("flower", "text"),
}
# Bundled photos that are views of one scene, so one source.
_BUNDLED_GROUPS = {"motorcycle_left": "motorcycle", "motorcycle_right": "motorcycle"}

# Target fractions of a photo folder's groups per split (see assign_groups).
FOLDER_FRACTIONS = {"train": 0.8, "test": 0.1, "gallery": 0.05, "distractors": 0.05}

# Procedural images drawn at random (donors, unrelated queries) use indices from
# here up, far above any dataset's image count, so they never repeat a stored image.
_DRAWN_INDEX_START = 1 << 24


def check_split(split: str) -> str:
  """Returns `split`, or raises ValueError naming the valid splits."""
  if split not in SPLIT_ID:
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
  return split


def bundled_group(name: str) -> str:
  """The source group of a bundled photo (its name, except for stereo views)."""
  return _BUNDLED_GROUPS.get(name, name)


def bundled_split(name: str) -> str:
  """The split a bundled photo belongs to; KeyError for an unknown name."""
  for split, names in BUNDLED_SPLITS.items():
    if name in names:
      return split
  raise KeyError(f"bundled photo {name!r} has no split in splits.BUNDLED_SPLITS")


def photo_source(group: str) -> str:
  """Source id of a crop of any photo in `group`."""
  return f"photo:{group}"


def procedural_source(seed: int, split: str, index: int) -> str:
  """Source id of the `index`-th procedural image of `split` (see procedural_rng)."""
  return f"procedural:{seed}/{SPLIT_ID[check_split(split)]}/{index}"


def procedural_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """The generator of the `index`-th procedural image of `split`: the split id is in the seed."""
  return np.random.default_rng([seed, SPLIT_ID[check_split(split)], index])


def draw_procedural(rng: np.random.Generator, size: int, split: str) -> np.ndarray:
  """A random procedural image from `split`'s seed namespace (a donor, an unrelated query).

  The index is drawn from `rng` above any dataset's image count, so the image is
  never one of the split's stored images, and never from another split.
  """
  from provjax.data import photos  # pylint: disable=g-import-not-at-top

  index = int(rng.integers(_DRAWN_INDEX_START, 1 << 31))
  return photos.procedural_image(procedural_rng(0, split, index), size)


def _unit_hash(key: str) -> float:
  """A stable number in [0, 1) from sha256 of `key` (same on every machine and run)."""
  return int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) / float(1 << 64)


def _interval(split: str) -> tuple[float, float]:
  """The [lo, hi) slice of [0, 1) that FOLDER_FRACTIONS gives `split`."""
  lo = 0.0
  for name in SPLITS:
    hi = lo + FOLDER_FRACTIONS[name]
    if name == split:
      return lo, hi
    lo = hi
  raise ValueError(split)


def _split_of_hash(u: float) -> str:
  for split in SPLITS:
    if u < _interval(split)[1]:
      return split
  return SPLITS[-1]  # float rounding at the top end


def assign_groups(keys: Iterable[str]) -> dict[str, str]:
  """Assigns photo-folder group keys to splits by a stable hash.

  Each key goes to the split whose FOLDER_FRACTIONS interval holds
  sha256(key) mapped to [0, 1): adding or removing other files never moves a
  group. With 4 or more groups every split gets at least one: an empty split
  takes the group nearest its interval from a split that has more than one.

  Returns:
    {group key: split}.
  """
  hashes = {k: _unit_hash(k) for k in sorted(set(keys))}
  out = {k: _split_of_hash(u) for k, u in hashes.items()}
  if len(out) < len(SPLITS):
    return out
  for split in SPLITS:
    if split in out.values():
      continue
    lo, hi = _interval(split)
    counts = {s: list(out.values()).count(s) for s in SPLITS}
    movable = [k for k in hashes if counts[out[k]] > 1]
    nearest = min(movable, key=lambda k: (max(lo - hashes[k], hashes[k] - hi, 0.0), k))
    out[nearest] = split
  return out


def photo_pool(split: str, photo_dir: str | None = None) -> list[tuple[str, np.ndarray]]:
  """The photos `split` may crop from, as (source group, image) pairs.

  Args:
    split: one of SPLITS.
    photo_dir: a folder of photographs (provjax.data.folder); None means the
      bundled sample photos.

  Returns:
    Possibly empty (a split whose photos could not be loaded); callers then use
    procedural images only.
  """
  check_split(split)
  if photo_dir:
    from provjax.data import folder  # pylint: disable=g-import-not-at-top

    return list(folder.load_split(photo_dir, split))
  from provjax.data import photos  # pylint: disable=g-import-not-at-top

  return [(bundled_group(name), image) for name, image in photos.split_photos(split)]
