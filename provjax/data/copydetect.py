"""`provjax_copydetect`: an offline ISC2021-style copy-detection benchmark (DISC21's stand-in).

Six splits, each from sources of its own (`provjax.data.splits`), so no photo
or procedural seed is in two of the four parts below:

    split          ids      what                                        splits.py sources
    train          T000000  images to train descriptors on (the task    train
                            makes its views on the fly)
    background     B000000  score normalisation and PCA-whitening       distractors
                            (ISC's training set; never the references)
    val_refs       R000000  held back: operating points and thresholds  gallery
    val_queries    Q000000    are chosen here
    test_refs      R000000  the reported figures                        test
    test_queries   Q000000

`train` and `background` alternate random crops of their photos (bundled, plus
a user's `photo_dir` when given) with procedural images of their seed
namespace, at `resolution` x `resolution`. They share nothing with the
held-back parts, whose references are never used for normalisation.

A held-back part (`val`, `test`) draws `num_refs + num_unmatched + NUM_DONORS`
source images: the references first, then the originals of the non-matching
queries, then the donors that image-in-image queries hide a copy in. Up to
half of them, spread evenly over the three, are photo crops, each inside its
own cell of a grid laid over the part's photos, so no two share a photo pixel:
a non-matching query holds no reference's content, and a query of one
reference matches no other one. (Only the first photo of a folder group is
tiled: the rest are near-copies of it.) The rest are procedural images of the
part's namespace. Photo crops keep a random aspect (shorter side
`resolution`); procedural ones are square.

Queries are `copy_recipe.make_query` copies, one family each, the families
cycled so each has about equal counts: `num_matched` of a random subset of the
references (their `reference_id`) and `num_unmatched` of the non-matching
originals (`reference_id` ""), shuffled together, so a query's id says nothing.
Queries keep the size the edit gives them. Every record has `id`, `image` (PNG
bytes), `source` (the `splits.py` id of the content it shows), `region` (the
photo box "top,left,height,width" of a held-back photo crop, else ""),
`reference_id` and `family` ("" except for queries).

    refs = load("val_refs", data_dir="~/tensorflow_datasets", resolution=64)
    queries = load("val_queries", data_dir="~/tensorflow_datasets", resolution=64)
    pairs, query_ids = ground_truth(queries[i] for i in range(len(queries)))
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from provjax.data import folder, photos, splits, synthetic
from provjax.data.images import encode_png
from provjax.transforms import copy_recipe

SPLITS = ("train", "background", "val_refs", "val_queries", "test_refs", "test_queries")
# The splits.py namespace (photos and procedural seeds) each part draws from.
SOURCE_SPLITS = {"train": "train", "background": "distractors", "val": "gallery", "test": "test"}
NUM_DONORS = 16  # image-in-image donors per held-back part
DEFAULTS = {
    "resolution": 128,
    "num_train": 1000,
    "num_background": 200,
    "num_refs": 200,
    "num_matched": 100,
    "num_unmatched": 100,
    "seed": 0,
}
# Queries are made by the copy recipe's code: a change to it must not reuse queries made by
# the old one, so the prepared dataset's name carries a hash of that file.
RECIPE_FINGERPRINT = hashlib.sha256(Path(copy_recipe.__file__).read_bytes()).hexdigest()[:8]
_CROP_FRACTION = (0.7, 1.0)  # each side of a held-back photo crop, as a fraction of its cell
# Fourth seed words of the held-back parts' other random streams. Non-zero, so no stream equals
# a procedural image's (seed, split id, i), which numpy pads with zeros.
_CELL_STREAM, _PLAN_STREAM, _QUERY_STREAM = 1, 2, 3


def text(value) -> str:
  """A record's string field (bytes from a data source, or str) as str."""
  return value.decode() if isinstance(value, (bytes, np.bytes_)) else str(value)


def ground_truth(records) -> tuple[list[tuple[str, str]], list[str]]:
  """(pairs, queries) of query records, as provjax.metrics.isc.evaluate takes them.

  Args:
    records: query records with `id` and `reference_id` (this builder's or
      provjax.data.disc21's), in any order.

  Returns:
    pairs: (query id, reference id) of each matching query, in record order;
    queries: every query id, non-matching ones included (their predictions
    are false positives, as in the DrivenData scoring).
  """
  pairs, queries = [], []
  for record in records:
    query, ref = text(record["id"]), text(record["reference_id"])
    queries.append(query)
    if ref:
      pairs.append((query, ref))
  return pairs, queries


# ------------------------------------------------------------------ sources ---


def photo_pool(part: str, photo_dir: str | None = None) -> list[tuple[str, np.ndarray]]:
  """`part`'s photographs as (group, image): its bundled ones, plus its share of `photo_dir`."""
  split = SOURCE_SPLITS[part]
  pool = splits.photo_pool(split)
  if photo_dir:
    pool += splits.photo_pool(split, photo_dir)
  return pool


def cells(pool, resolution: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray, tuple]]:
  """Disjoint square cells over the first photo of each group, in a random order.

  A cell's side is a quarter of the photo's short side, but at least 3/4 of
  `resolution` (so crops are not blown up much) and at most the short side.

  Returns:
    (group, photo, (top, left, side)) triples.
  """
  out, seen = [], set()
  for group, photo in pool:
    if group in seen:
      continue
    seen.add(group)
    height, width = photo.shape[:2]
    side = min(min(height, width), max(3 * resolution // 4, min(height, width) // 4))
    rows, cols = height // side, width // side
    top0, left0 = (height - rows * side) // 2, (width - cols * side) // 2  # centre the grid
    out += [
        (group, photo, (top0 + r * side, left0 + c * side, side))
        for r in range(rows)
        for c in range(cols)
    ]
  return [out[i] for i in rng.permutation(len(out))]


def cell_crop(
    photo: np.ndarray, cell: tuple, rng: np.random.Generator, resolution: int
) -> tuple[tuple[int, int, int, int], np.ndarray]:
  """A random box inside `cell`, flipped half the time, resized to shorter side `resolution`.

  Returns:
    ((top, left, height, width) of the box in the photo, HxWx3 uint8 crop).
  """
  top, left, side = cell
  height, width = (max(1, round(side * rng.uniform(*_CROP_FRACTION))) for _ in range(2))
  top += int(rng.integers(side - height + 1))
  left += int(rng.integers(side - width + 1))
  crop = photo[top : top + height, left : left + width]
  if rng.random() < 0.5:
    crop = crop[:, ::-1]
  scale = resolution / min(height, width)
  size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
  resized = Image.fromarray(np.ascontiguousarray(crop)).resize(
      size, Image.Resampling.BICUBIC, reducing_gap=2.0
  )
  return (top, left, height, width), np.asarray(resized)


def plain_sources(part: str, count: int, resolution: int, seed: int, photo_dir=None):
  """`train` or `background` images as dicts with source, region ("") and image.

  Even i: a square crop of one of the part's photos (procedural if it has none);
  odd i: the procedural image of seed (seed, split id, i). Crops may overlap:
  nothing is matched against these.
  """
  split = SOURCE_SPLITS[part]
  pool = photo_pool(part, photo_dir)
  for i in range(count):
    rng = splits.procedural_rng(seed, split, i)
    if i % 2 == 0 and pool:
      group, image = photos.photo_crop(rng, resolution, pool=pool)
      yield {"source": splits.photo_source(group), "region": "", "image": image}
    else:
      source = splits.procedural_source(seed, split, i)
      yield {"source": source, "region": "", "image": photos.procedural_image(rng, resolution)}


def held_back_sources(part: str, indices, cfg: CopydetectConfig):
  """The held-back part's source images at `indices`, as dicts with source, region, image.

  Of its `num_sources(cfg)` sources, P = min(cells, half of them) are photo
  crops, each of its own cell, spread evenly over the index range, so the
  references, the non-matching originals and the donors each hold photos in
  the same proportion (a query's content says nothing about whether it
  matches). The others are the procedural images of seed (seed, split id, i).
  Source i is a pure function of i, so queries re-make exactly the references
  they copy.
  """
  split = SOURCE_SPLITS[part]
  rng = np.random.default_rng([cfg.seed, splits.SPLIT_ID[split], 0, _CELL_STREAM])
  grid = cells(photo_pool(part, cfg.photo_dir), cfg.resolution, rng)
  total = num_sources(cfg)
  num_photos = min(len(grid), total // 2)
  for i in indices:
    rng = splits.procedural_rng(cfg.seed, split, i)
    cell = i * num_photos // total
    if (i + 1) * num_photos // total > cell:  # i is where the spread puts a photo
      group, photo, box = grid[cell]
      box, image = cell_crop(photo, box, rng, cfg.resolution)
      yield {
          "source": splits.photo_source(group),
          "region": ",".join(map(str, box)),
          "image": image,
      }
    else:
      source = splits.procedural_source(cfg.seed, split, i)
      yield {"source": source, "region": "", "image": photos.procedural_image(rng, cfg.resolution)}


def num_sources(cfg: CopydetectConfig) -> int:
  """Source images per held-back part: references, non-matching originals, donors."""
  return cfg.num_refs + cfg.num_unmatched + NUM_DONORS


def query_plan(
    part: str, num_refs: int, num_matched: int, num_unmatched: int, seed: int
) -> list[tuple[int, str, str]]:
  """(source index, reference id or "", family) of each query, in query id order.

  Matched queries copy a random subset of the references; non-matching ones
  copy sources num_refs, num_refs + 1, ...; families cycle within each kind.
  """
  families = copy_recipe.QUERY_FAMILIES
  rng = np.random.default_rng([seed, splits.SPLIT_ID[SOURCE_SPLITS[part]], 0, _PLAN_STREAM])
  matched = np.sort(rng.choice(num_refs, size=num_matched, replace=False))
  plan = [(int(r), ref_id(int(r)), families[j % len(families)]) for j, r in enumerate(matched)]
  plan += [(num_refs + j, "", families[j % len(families)]) for j in range(num_unmatched)]
  return [plan[i] for i in rng.permutation(len(plan))]


def ref_id(index: int) -> str:
  return f"R{index:06d}"


def query_id(index: int) -> str:
  return f"Q{index:06d}"


# ------------------------------------------------------------------ builder ---


class CopydetectConfig(tfds.core.BuilderConfig):
  """Resolution, counts (per held-back part for refs and queries), seed and photo folder.

  The name encodes them all; a photo folder adds a short hash of its path and
  file list, so two folders never share a prepared dataset.
  """

  def __init__(
      self,
      *,
      resolution: int = DEFAULTS["resolution"],
      num_train: int = DEFAULTS["num_train"],
      num_background: int = DEFAULTS["num_background"],
      num_refs: int = DEFAULTS["num_refs"],
      num_matched: int = DEFAULTS["num_matched"],
      num_unmatched: int = DEFAULTS["num_unmatched"],
      seed: int = DEFAULTS["seed"],
      photo_dir: str | None = None,
  ):
    if not 0 <= num_matched <= num_refs:
      raise ValueError(f"num_matched {num_matched} must be in [0, num_refs = {num_refs}]")
    name = (
        f"r{resolution}_t{num_train}_b{num_background}"
        f"_q{num_refs}_{num_matched}_{num_unmatched}_s{seed}_recipe{RECIPE_FINGERPRINT}"
    )
    if photo_dir:
      name += f"_dir{folder.fingerprint(photo_dir)}"
    super().__init__(
        name=name,
        description=f"ISC-style copies of {photo_dir or 'the bundled photos'} + procedural",
    )
    self.resolution, self.seed, self.photo_dir = resolution, seed, photo_dir
    self.num_train, self.num_background = num_train, num_background
    self.num_refs, self.num_matched, self.num_unmatched = num_refs, num_matched, num_unmatched


def _bytes_feature():
  return tfds.features.Tensor(shape=(), dtype=np.object_)


class ProvjaxCopydetect(tfds.core.GeneratorBasedBuilder):
  """The synthetic copy-detection benchmark (see module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Train, background, val and test refs/queries on honest splits."}

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo directly: `dataset_info_from_configs` reads package metadata files.
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        disable_shuffling=True,  # id order: record i has id i
        features=tfds.features.FeaturesDict(
            {
                "id": _bytes_feature(),  # T000000 | B000000 | R000000 | Q000000
                "image": _bytes_feature(),  # PNG bytes
                "source": _bytes_feature(),  # b"photo:<group>" | b"procedural:<seed>/<split>/<i>"
                "region": _bytes_feature(),  # b"top,left,height,width" in the photo, or b""
                "reference_id": _bytes_feature(),  # a matched query's reference, else b""
                "family": _bytes_feature(),  # a query's copy_recipe family, else b""
            }
        ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: every image is made here
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split: str):
    cfg = self.builder_config
    if split in ("train", "background"):
      count = cfg.num_train if split == "train" else cfg.num_background
      records = plain_sources(split, count, cfg.resolution, cfg.seed, cfg.photo_dir)
      prefix = split[0].upper()
      records = ({**r, "id": f"{prefix}{i:06d}"} for i, r in enumerate(records))
    elif split.endswith("_refs"):
      part = split.removesuffix("_refs")
      records = held_back_sources(part, range(cfg.num_refs), cfg)
      records = ({**r, "id": ref_id(i)} for i, r in enumerate(records))
    else:
      records = make_queries(split.removesuffix("_queries"), cfg)
    for i, record in enumerate(records):
      yield i, {
          "id": record["id"].encode(),
          "image": encode_png(record["image"]),
          "source": record["source"].encode(),
          "region": record["region"].encode(),
          "reference_id": record.get("reference_id", "").encode(),
          "family": record.get("family", "").encode(),
      }


def make_queries(part: str, cfg: CopydetectConfig):
  """The queries of held-back `part`, as dicts with id, image, source, region, reference_id,
  family; query k's edit is drawn from (seed, split id, k, _QUERY_STREAM)."""
  split_id = splits.SPLIT_ID[SOURCE_SPLITS[part]]
  first_donor = cfg.num_refs + cfg.num_unmatched
  donor_range = range(first_donor, first_donor + NUM_DONORS)
  donors = [d["image"] for d in held_back_sources(part, donor_range, cfg)]
  plan = query_plan(part, cfg.num_refs, cfg.num_matched, cfg.num_unmatched, cfg.seed)
  originals = held_back_sources(part, [index for index, _, _ in plan], cfg)
  for k, ((_, reference, family), original) in enumerate(zip(plan, originals)):
    rng = np.random.default_rng([cfg.seed, split_id, k, _QUERY_STREAM])
    edited = copy_recipe.make_query(original["image"], rng, family, donors=donors)
    yield {
        **original,
        "id": query_id(k),
        "image": edited.image,
        "reference_id": reference,
        "family": family,
    }


def builder(data_dir: str | Path, *, photo_dir: str | None = None, **config) -> ProvjaxCopydetect:
  """The builder for `config` (CopydetectConfig's fields; DEFAULTS for the rest)."""
  config = CopydetectConfig(
      photo_dir=os.path.expanduser(photo_dir) if photo_dir else None, **config
  )
  return ProvjaxCopydetect(
      config=config, data_dir=str(Path(data_dir).expanduser()), file_format="array_record"
  )


def load(split: str, *, data_dir: str | Path, photo_dir: str | None = None, **config):
  """Random-access source of `split` (all six prepared on first use).

  Args:
    split: one of SPLITS.
    data_dir: the TFDS data folder.
    photo_dir: a folder of photographs added to the bundled ones.
    **config: resolution, num_train, num_background, num_refs, num_matched,
      num_unmatched, seed (DEFAULTS for the rest).

  Returns:
    A sequence of dicts of bytes (see the module docstring); `text` decodes
    the string fields, `provjax.data.images.read_image` the image.
  """
  return synthetic.prepared_source(builder(data_dir, photo_dir=photo_dir, **config), split)


def source_from_config(data_config, split: str):
  """`load` with a task's `config.data`: data_dir, photo_dir and any of DEFAULTS' keys."""
  d = data_config
  config = {key: d.get(key, default) for key, default in DEFAULTS.items()}
  return load(split, data_dir=d.data_dir, photo_dir=d.get("photo_dir"), **config)
