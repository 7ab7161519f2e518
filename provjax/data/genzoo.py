"""`provjax_genzoo`: the offline stand-in for Attribution88 (specs/repmix.md, section 12).

A sources x semantics grid at 64 px. Class 0 is real content; classes 1..K-1
are the released generators of `provjax.models.genzoo` (each reconstructs
fresh real content of the same semantic, so content is shared by every class
and only the generator's upsampling path tells them apart).

Semantics (`dlabel`, the seen ones first, as the official analysis expects):

    0 photo     crops of real photographs (bundled, or a user's folder)  seen
    1 fractal   1/f noise textures                                        seen
    2 shapes    random ellipses, rectangles, polygons                     seen
    3 blobs     smooth colour gradients + Gaussian blobs                  seen
    4 gabor     plane waves and Gabor patches                             unseen
    5 digits    scikit-learn's 8x8 digits, upscaled and colourised        unseen

Splits are honest (`provjax.data.splits`): `train` crops the train photos,
`val` (held back for thresholds) the gallery and distractor photos, `test`
the test photos, of the bundled photographs and of a photo folder when one is
given; procedural seeds carry the split id; digits are split by index. Train
and val hold the seen semantics only; test holds all six and
comes three times, like the official processed test set: `test` (clean),
`test_seen` (one of the 15 training corruptions per image) and `test_unseen`
(one of the 4 held-out corruptions), at a fixed severity.

Every class is stored the same way, PNG at 64 px with no JPEG step, so the
file format carries no label (the DIRE / "Fake or JPEG?" shortcut).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from provjax import weights
from provjax.data import photos, splits, synthetic
from provjax.data.images import encode_png
from provjax.transforms import corruptions

SEMANTICS = ("photo", "fractal", "shapes", "blobs", "gabor", "digits")
NUM_SEEN = 4
# The released generators, class 1.. in this order (class 0 is real). Two share an
# architecture and differ only by their training seed: a fine-grained pair (Yu et al.).
GENERATORS = (
    "genzoo.tconv-s0",
    "genzoo.nearest-s0",
    "genzoo.bilinear-s0",
    "genzoo.pixelshuffle-s0",
    "genzoo.vae-s0",
    "genzoo.tconv-s1",
)
# Which photographs each split crops from (splits.SPLITS names).
PHOTO_SPLITS = {"train": ("train",), "val": ("gallery", "distractors"), "test": ("test",)}
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
TEST_SEVERITY = 3
_DIGIT_PARTS = {"train": range(0, 8), "val": range(8, 9), "test": range(9, 10)}


def class_names(generators=GENERATORS) -> tuple[str, ...]:
  """Class names by label: "real", then each generator's arch.tag."""
  return ("real",) + tuple(generators)


def split_semantics(split: str) -> range:
  """The semantic ids a split holds (train and val: the seen ones only)."""
  return range(NUM_SEEN) if split in ("train", "val") else range(len(SEMANTICS))


# ------------------------------------------------------------------ content ---


def _blobs(rng: np.random.Generator, size: int) -> np.ndarray:
  """A smooth gradient with 2-6 soft Gaussian blobs of colour over it."""
  image = photos.style_image("gradient", rng, size).astype(np.float32) / 255.0
  axis = (np.arange(size) + 0.5) / size
  y, x = np.meshgrid(axis, axis, indexing="ij")
  for _ in range(rng.integers(2, 7)):
    cy, cx = rng.random(2)
    width = rng.uniform(0.05, 0.3)
    alpha = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))[..., None]
    image = image * (1 - alpha) + rng.random(3) * alpha
  return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


@functools.cache
def _digits(split: str) -> np.ndarray:
  """`split`'s share of scikit-learn's digits (by index mod 10), as uint8 [N, 8, 8]."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  images = load_digits().images  # [1797, 8, 8] in 0..16
  keep = [i for i in range(len(images)) if i % 10 in _DIGIT_PARTS[split]]
  return (images[keep] / 16.0 * 255).astype(np.uint8)


def _digit(rng: np.random.Generator, size: int, split: str) -> np.ndarray:
  """A digit of `split`'s share, upscaled bicubically and colourised."""
  images = _digits(split)
  small = Image.fromarray(images[rng.integers(len(images))])
  t = np.asarray(small.resize((size, size), Image.Resampling.BICUBIC), np.float32)[..., None]
  fg, bg = rng.random(3), rng.random(3)
  return np.clip(np.round((bg + (fg - bg) * t / 255.0) * 255), 0, 255).astype(np.uint8)


def photo_pool(split: str, photo_dir: str | None = None) -> list:
  """`split`'s photographs: its bundled ones, plus its share of `photo_dir` when given.

  The bundled photos always take part (the real class needs all the variety it can
  get); a folder adds its own, split by its own stable hash (splits.assign_groups).
  """
  pool = []
  for s in PHOTO_SPLITS[split]:
    pool += splits.photo_pool(s)
    if photo_dir:
      pool += splits.photo_pool(s, photo_dir)
  return pool


def draw_content(
    semantic: int, rng: np.random.Generator, size: int, split: str, pool=None
) -> tuple[str, np.ndarray]:
  """(source id, size x size x 3 uint8 image) of one semantic, from `split`'s sources only."""
  name = SEMANTICS[semantic]
  if name == "photo":
    pool = photo_pool(split) if pool is None else pool
    if pool:
      group, image = photos.photo_crop(rng, size, pool=pool)
      return splits.photo_source(group), image
    name = "fractal"  # a split without photos (an empty folder split) stays procedural
  if name == "digits":
    return f"digits:{split}", _digit(rng, size, split)
  if name == "blobs":
    return f"procedural:{split}", _blobs(rng, size)
  style = {"fractal": "fractal", "shapes": "shapes", "gabor": "sinusoids"}[name]
  return f"procedural:{split}", photos.style_image(style, rng, size)


def content_rng(seed: int, split: str, semantic: int, label: int, index: int):
  """The generator of one record's content: split, semantic and class are in the seed."""
  return np.random.default_rng([seed, SPLIT_IDS[split], semantic, label, index])


# --------------------------------------------------------------- generation ---


@nnx.jit
def _generate(model, images, key):
  out, _ = model(images.astype(jnp.float32) / 255.0, key=key)
  return jnp.clip(jnp.round(out * 255.0), 0, 255).astype(jnp.uint8)


@functools.cache
def _generator(name: str):
  """A released generator, loaded once per process (a build reads it for five splits)."""
  return weights.load(name)


def generate(model, images: np.ndarray, seed: int) -> np.ndarray:
  """A generator's reconstructions of uint8 images [N, S, S, 3] (a VAE samples z from `seed`)."""
  return np.asarray(_generate(model, jnp.asarray(images), jax.random.key(seed)))


def generate_records(
    split: str,
    per_class: int,
    *,
    resolution: int = 64,
    seed: int = 0,
    generators=GENERATORS,
    photo_dir: str | None = None,
):
  """Clean records of `split`: dicts with image (uint8), label, dlabel, source.

  Each (semantic, class) cell holds `per_class` images; record content is a
  pure function of (seed, split, semantic, class, index).
  """
  models = [_generator(name) for name in generators]
  pool = photo_pool(split, photo_dir)
  for semantic in split_semantics(split):
    for label in range(len(generators) + 1):
      drawn = [
          draw_content(
              semantic, content_rng(seed, split, semantic, label, i), resolution, split, pool
          )
          for i in range(per_class)
      ]
      images = np.stack([image for _, image in drawn])
      if label:
        cell = np.random.SeedSequence([seed, SPLIT_IDS[split], semantic, label])
        images = generate(models[label - 1], images, int(cell.generate_state(1)[0] >> 1))
      for (source, _), image in zip(drawn, images):
        yield {"image": image, "label": label, "dlabel": semantic, "source": source}


def corrupted_copy(record: dict, index: int, ids, seed: int) -> dict:
  """`record` with one corruption from `ids` at TEST_SEVERITY, drawn from (seed, index)."""
  rng = np.random.default_rng([seed, 7, index])
  name = corruptions.NAMES[ids[int(rng.integers(len(ids)))]]
  image = corruptions.corrupt(record["image"], name, TEST_SEVERITY, rng)
  return {**record, "image": image, "corruption": name}


# ------------------------------------------------------------------ builder ---

_SPLITS = ("train", "val", "test", "test_seen", "test_unseen")


def generators_fingerprint(generators) -> str:
  """A short hash of the generators' names and weights (weights.params_sha256): new weights
  make a new dataset, a re-written card does not."""
  digest = hashlib.sha256()
  for name in generators:
    digest.update(f"{name}:{weights.read_config(name).get('params_sha256', '')}\0".encode())
  return digest.hexdigest()[:8]


class GenzooConfig(tfds.core.BuilderConfig):
  """Resolution, images per (semantic, class) cell per split, seed, photo folder, generators."""

  def __init__(
      self,
      *,
      resolution: int,
      per_class: dict,
      seed: int = 0,
      photo_dir: str | None = None,
      generators=GENERATORS,
  ):
    counts = "_".join(str(per_class[s]) for s in ("train", "val", "test"))
    name = f"r{resolution}_n{counts}_s{seed}_g{generators_fingerprint(generators)}"
    if photo_dir:
      from provjax.data import folder  # pylint: disable=g-import-not-at-top

      name += f"_dir{folder.fingerprint(photo_dir)}"
    super().__init__(name=name, description=f"{len(generators)} generators x {SEMANTICS}")
    self.resolution, self.per_class, self.seed = resolution, dict(per_class), seed
    self.photo_dir, self.generators = photo_dir, tuple(generators)


class ProvjaxGenzoo(tfds.core.GeneratorBasedBuilder):
  """The generator zoo (see module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Real + 6 generators x 6 semantics, PNG, corrupted test copies."}

  def _info(self) -> tfds.core.DatasetInfo:
    obj = lambda: tfds.features.Tensor(shape=(), dtype=np.object_)
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict(
            {
                "image": obj(),  # PNG bytes
                "label": tfds.features.Tensor(shape=(), dtype=np.int64),  # 0 = real
                "dlabel": tfds.features.Tensor(shape=(), dtype=np.int64),  # semantic
                "source": obj(),  # the content's source (splits.py ids)
                "corruption": obj(),  # b"" for clean records
                # Position in the clean split: TFDS shuffles records when it writes them,
                # so this is what ties a corrupted copy to its clean record.
                "index": tfds.features.Tensor(shape=(), dtype=np.int64),
            }
        ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split) for split in _SPLITS}

  def _generate_examples(self, split: str):
    cfg = self.builder_config
    base = "test" if split.startswith("test") else split
    records = generate_records(
        base,
        cfg.per_class[base],
        resolution=cfg.resolution,
        seed=cfg.seed,
        generators=cfg.generators,
        photo_dir=cfg.photo_dir,
    )
    ids = {"test_seen": corruptions.TRAIN_IDS, "test_unseen": corruptions.UNSEEN_IDS}.get(split)
    for i, record in enumerate(records):
      record = corrupted_copy(record, i, ids, cfg.seed) if ids else {**record, "corruption": ""}
      yield i, {
          "image": encode_png(record["image"]),
          "label": record["label"],
          "dlabel": record["dlabel"],
          "source": record["source"].encode(),
          "corruption": record["corruption"].encode(),
          "index": i,
      }


def builder(
    data_dir, *, resolution=64, per_class=None, seed=0, photo_dir=None, generators=GENERATORS
) -> ProvjaxGenzoo:
  per_class = per_class or {"train": 300, "val": 40, "test": 60}
  config = GenzooConfig(
      resolution=resolution,
      per_class=per_class,
      seed=seed,
      photo_dir=os.path.expanduser(photo_dir) if photo_dir else None,
      generators=generators,
  )
  return ProvjaxGenzoo(
      config=config, data_dir=str(Path(data_dir).expanduser()), file_format="array_record"
  )


def source_from_config(data_config, split: str):
  """Random-access source of `split` (prepared on first use) from a task's `config.data`."""
  d = data_config
  b = builder(
      d.data_dir,
      resolution=d.resolution,
      per_class=dict(d.per_class),
      seed=d.seed,
      photo_dir=d.get("photo_dir"),
      generators=tuple(d.generators),
  )
  return synthetic.prepared_source(b, split)
