"""`provjax_inpainting`: images with free-form hole masks for SafePaint, written as ArrayRecord by TFDS.

Three splits on honest sources (`provjax.data.splits`): `train` draws from
the train photos and seeds, `val` from the held-back "gallery" ones and
`test` from the "test" ones, so no photograph or procedural seed is in two
splits. Record i of a split shows image i of `provjax.data.synthetic`'s
recipe: even i a random square crop of one of the split's photos (30-100 %
of its shorter side, flipped half the time, resized to `resolution`; the
bundled photos, or a user's `photo_dir` instead; procedural when the split
has no photo), odd i the split's procedural image i.

Each record carries a hole mask made by `provjax.transforms.masks`, from its
own random stream (seed, split id, i, _MASK_STREAM), so a val or test mask is
never a training one. The masks follow a fixed plan (`mask_plan`): record i
has ratio bin (i // 2) % 6 and kind KINDS[(i // 12) % 2], so every 24
consecutive records hold each (photo or procedural, bin, kind) once, and
splits of a multiple of 24 records have every bin and kind equally often.
Training records carry a mask too, but the SafePaint task draws a fresh one
per sample (provjax.tasks.safepaint).

Records (`record_features`, shared with provjax.data.places2): `name`
(b"<split>-000000"), `image` (PNG bytes, resolution x resolution RGB),
`mask` (PNG of a uint8 mask, 255 = hole), `ratio_bin` (int32, the mask's
RATIO_BINS index, -1 outside every bin), `source` (the splits.py id of the
photo group or procedural seed) and `mask_source` (b"strokes" / b"blobs",
or for a mask file its path).

The prepared dataset's name carries the sizes, the seed, a hash of
provjax/transforms/masks.py (a change to the mask recipe never reuses masks
made by the old one) and, with a photo folder, a hash of its file list.

    source = load("test", data_dir="~/tensorflow_datasets")
    image, hole = decode(source[0])       # HxWx3 uint8, HxW bool (True = hole)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from provjax.data import folder, synthetic
from provjax.data.copydetect import text  # a record's string field as str
from provjax.data.images import encode_png, read_image
from provjax.data.splits import SPLIT_ID
from provjax.transforms import masks

SPLITS = ("train", "val", "test")
# The splits.py namespace (photos and procedural seeds) each split draws from.
SOURCE_SPLITS = {"train": "train", "val": "gallery", "test": "test"}
DEFAULTS = {"resolution": 256, "num_train": 1000, "num_val": 120, "num_test": 240, "seed": 0}
MASK_FINGERPRINT = hashlib.sha256(Path(masks.__file__).read_bytes()).hexdigest()[:8]
# Fourth seed word of the mask streams: non-zero, so no mask stream equals a procedural
# image's (seed, split id, i), which numpy pads with zeros.
_MASK_STREAM = 1


# ------------------------------------------------------------------ records ---


def record_features() -> tfds.features.FeaturesDict:
  """The features of an inpainting record (this builder's and provjax.data.places2's)."""
  as_bytes = lambda: tfds.features.Tensor(shape=(), dtype=np.object_)
  return tfds.features.FeaturesDict(
      {
          "name": as_bytes(),
          "image": as_bytes(),  # PNG bytes, RGB
          "mask": as_bytes(),  # PNG of a uint8 mask, 255 = hole
          "ratio_bin": tfds.features.Tensor(shape=(), dtype=np.int32),  # -1: outside every bin
          "source": as_bytes(),  # the photo / procedural seed id, or the image file
          "mask_source": as_bytes(),  # b"strokes" | b"blobs" | the mask file
      }
  )


def make_record(name: str, image: np.ndarray, hole: np.ndarray, source: str, mask_source: str):
  """The TFDS record of an HxWx3 uint8 image and its HxW bool hole."""
  index = masks.ratio_bin(hole)
  return {
      "name": name.encode(),
      "image": encode_png(image),
      "mask": encode_png(hole.astype(np.uint8) * 255),
      "ratio_bin": np.int32(-1 if index is None else index),
      "source": source.encode(),
      "mask_source": mask_source.encode(),
  }


def decode_mask(data, *, name: str = "<mask>") -> np.ndarray:
  """HxW bool (True = hole) from a record's `mask` PNG bytes (`name` names it in errors)."""
  return read_image(bytes(data), name=name)[..., 0] > 127


def decode(record) -> tuple[np.ndarray, np.ndarray]:
  """(image HxWx3 uint8, hole HxW bool with True = hole) of a record."""
  name = text(record["name"])
  image = read_image(bytes(record["image"]), name=name)
  return image, decode_mask(record["mask"], name=f"{name} (mask)")


def mask_plan(index: int) -> tuple[int, str]:
  """(ratio bin, kind) of record `index`'s mask: each (image kind, bin, kind) once per 24."""
  return (index // 2) % len(masks.RATIO_BINS), masks.KINDS[(index // 12) % len(masks.KINDS)]


def planned_mask(split: str, index: int, resolution: int, seed: int) -> tuple[np.ndarray, str]:
  """(hole, kind) of record `index` of `split`: mask_plan's bin and kind, from its own stream."""
  ratio_bin, kind = mask_plan(index)
  rng = np.random.default_rng([seed, SPLIT_ID[SOURCE_SPLITS[split]], index, _MASK_STREAM])
  return masks.free_form_mask(rng, resolution, resolution, ratio_bin=ratio_bin, kind=kind), kind


def generate_records(
    split: str, count: int, resolution: int, seed: int = 0, *, photo_dir: str | None = None
):
  """The first `count` records of `split` (one of SPLITS), in order (see the module docstring)."""
  images = synthetic.generate_records(
      SOURCE_SPLITS[split], count, resolution, seed, photo_dir=photo_dir
  )
  for i, (_, source, image) in enumerate(images):
    hole, kind = planned_mask(split, i, resolution, seed)
    yield make_record(f"{split}-{i:06d}", image, hole, source, kind)


# ------------------------------------------------------------------ builder ---


class InpaintingConfig(tfds.core.BuilderConfig):
  """Resolution, record counts, seed and photo folder; the name encodes them and the mask recipe."""

  def __init__(
      self,
      *,
      resolution: int = DEFAULTS["resolution"],
      num_train: int = DEFAULTS["num_train"],
      num_val: int = DEFAULTS["num_val"],
      num_test: int = DEFAULTS["num_test"],
      seed: int = DEFAULTS["seed"],
      photo_dir: str | None = None,
  ):
    name = f"r{resolution}_n{num_train}_{num_val}_{num_test}_s{seed}_masks{MASK_FINGERPRINT}"
    if photo_dir:
      name += f"_dir{folder.fingerprint(photo_dir)}"
    super().__init__(
        name=name, description=f"{photo_dir or 'the bundled photos'} + procedural, free-form holes"
    )
    self.resolution, self.seed, self.photo_dir = resolution, seed, photo_dir
    self.counts = {"train": num_train, "val": num_val, "test": num_test}


class ProvjaxInpainting(tfds.core.GeneratorBasedBuilder):
  """Inpainting images with free-form hole masks on honest splits (see module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Photo crops + procedural images, planned free-form masks."}

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo directly: `dataset_info_from_configs` reads package metadata files.
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        disable_shuffling=True,  # record i stays at index i, so its mask plan is mask_plan(i)
        features=record_features(),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: every image is made here
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split: str):
    cfg = self.builder_config
    records = generate_records(
        split, cfg.counts[split], cfg.resolution, cfg.seed, photo_dir=cfg.photo_dir
    )
    yield from enumerate(records)


def builder(
    data_dir: str | Path | None = None, *, photo_dir: str | None = None, **config
) -> ProvjaxInpainting:
  """The builder for `config` (InpaintingConfig's fields; DEFAULTS for the rest).

  Args:
    data_dir: the TFDS data folder; None for TFDS's default (~/tensorflow_datasets).
    photo_dir: a folder of photographs used instead of the bundled ones.
    **config: resolution, num_train, num_val, num_test, seed.
  """
  config = InpaintingConfig(
      photo_dir=os.path.expanduser(photo_dir) if photo_dir else None, **config
  )
  data_dir = str(Path(data_dir).expanduser()) if data_dir else None
  return ProvjaxInpainting(config=config, data_dir=data_dir, file_format="array_record")


def load(split: str, *, photo_dir: str | None = None, data_dir: str | Path | None = None, **config):
  """Random-access source of `split` (all three prepared on first use).

  Args:
    split: one of SPLITS.
    photo_dir: a folder of photographs used instead of the bundled ones.
    data_dir: the TFDS data folder; None for TFDS's default.
    **config: resolution, num_train, num_val, num_test, seed (DEFAULTS for the rest).

  Returns:
    A sequence of record dicts (see the module docstring); `decode` gives a
    record's image and hole.
  """
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
  return synthetic.prepared_source(builder(data_dir, photo_dir=photo_dir, **config), split)


def source_from_config(data_config, split: str):
  """`load` with a task's `config.data`: data_dir, photo_dir and any of DEFAULTS' keys."""
  d = data_config
  config = {key: d.get(key, default) for key, default in DEFAULTS.items()}
  return load(split, data_dir=d.get("data_dir"), photo_dir=d.get("photo_dir"), **config)
