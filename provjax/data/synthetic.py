"""`provjax_synthetic`: deterministic training originals, written as ArrayRecord by TFDS.

Half the images are random crops of real photographs (`photos.photo_crop`):
by default those bundled with scikit-image, scikit-learn and matplotlib, or
those of a user's folder (`photo_dir`, see `provjax.data.folder`). Half are
procedural images (textures, shapes, gradients, noise fields). Splits are
honest (`provjax.data.splits`): a split's photo crops come only from that
split's photos and its procedural images only from that split's seed
namespace, and every record names its `source` so this can be checked. Images
are stored as PNG bytes in a `Tensor(shape=(), dtype=object)` feature, which
TFDS can write and read without TensorFlow; they are decoded with Pillow in
the grain map.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
import sys

import numpy as np
import tensorflow_datasets as tfds

from provjax.data import folder, photos, splits
from provjax.data.images import encode_png

# Written to TFDS; generate_images also makes the benchmark's "gallery" and "distractors".
_SPLITS = ("train", "test")


class SyntheticConfig(tfds.core.BuilderConfig):
  """Resolution, image counts, seed and photo folder; the name encodes them all.

  A photo folder adds a short hash of its path and file list to the name, so
  two folders (or one folder after files changed) never share a prepared dataset.
  """

  def __init__(
      self,
      *,
      resolution: int,
      num_train: int,
      num_test: int,
      seed: int = 0,
      photo_dir: str | None = None,
  ):
    name = f"r{resolution}_n{num_train}_{num_test}_s{seed}"
    if photo_dir:
      name += f"_dir{folder.fingerprint(photo_dir)}"
    super().__init__(
        name=name, description=f"crops of {photo_dir or 'the bundled photos'} + procedural images"
    )
    self.resolution, self.num_train, self.num_test, self.seed = (
        resolution,
        num_train,
        num_test,
        seed,
    )
    self.photo_dir = photo_dir


class ProvjaxSynthetic(tfds.core.GeneratorBasedBuilder):
  """Synthetic originals for provenance training (see module docstring)."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "Photo crops + procedural images, PNG bytes.",
      "1.1.0": "Honest splits (provjax.data.splits), a `source` per record, photo folders.",
  }

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo directly: `dataset_info_from_configs` reads package metadata files.
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(), dtype=np.object_),  # PNG bytes
                "id": tfds.features.Tensor(shape=(), dtype=np.int64),
                "kind": tfds.features.Tensor(
                    shape=(), dtype=np.object_
                ),  # b"photo" | b"procedural"
                # b"photo:<group>" | b"procedural:<seed>/<split id>/<i>" (splits.py)
                "source": tfds.features.Tensor(shape=(), dtype=np.object_),
            }
        ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: every image is made here
    return {split: self._generate_examples(split) for split in _SPLITS}

  def _generate_examples(self, split: str):
    cfg = self.builder_config
    count = cfg.num_train if split == "train" else cfg.num_test
    records = generate_records(split, count, cfg.resolution, cfg.seed, photo_dir=cfg.photo_dir)
    for i, (kind, source, image) in enumerate(records):
      yield i, {
          "image": encode_png(image),
          "id": i,
          "kind": kind.encode(),
          "source": source.encode(),
      }


def generate_records(
    split: str, count: int, resolution: int, seed: int = 0, *, photo_dir: str | None = None
):
  """(kind, source, image) triples of `split`; the i-th depends only on (split, seed, i).

  Even i: a crop of one of the split's photos (procedural if it has none); odd i:
  the procedural image of seed (seed, split id, i). `split` is any of
  splits.SPLITS ("gallery" and "distractors" feed the held-back benchmark).
  """
  pool = splits.photo_pool(split, photo_dir)
  for i in range(count):
    rng = splits.procedural_rng(seed, split, i)
    if i % 2 == 0 and pool:
      group, image = photos.photo_crop(rng, resolution, pool=pool)
      yield "photo", splits.photo_source(group), image
    else:
      source = splits.procedural_source(seed, split, i)
      yield "procedural", source, photos.procedural_image(rng, resolution)


def generate_images(
    split: str, count: int, resolution: int, seed: int = 0, *, photo_dir: str | None = None
):
  """(kind, image) pairs of `split` (see generate_records)."""
  for kind, _, image in generate_records(split, count, resolution, seed, photo_dir=photo_dir):
    yield kind, image


def builder(
    data_dir: str | Path,
    *,
    resolution: int,
    count: int,
    seed: int = 0,
    test_fraction: float = 0.1,
    photo_dir: str | None = None,
) -> ProvjaxSynthetic:
  """The builder for `count` training images (+ a held-back test split)."""
  config = SyntheticConfig(
      resolution=resolution,
      num_train=count,
      num_test=max(16, int(count * test_fraction)),
      seed=seed,
      photo_dir=os.path.expanduser(photo_dir) if photo_dir else None,
  )
  return ProvjaxSynthetic(config=config, data_dir=str(data_dir), file_format="array_record")


def load_source(
    split: str,
    *,
    data_dir: str | Path,
    resolution: int,
    count: int,
    seed: int = 0,
    photo_dir: str | None = None,
):
  """Random-access source of `split` (prepared on first use); records are dicts
  with `image` (PNG bytes), `id`, `kind` and `source`."""
  b = builder(data_dir, resolution=resolution, count=count, seed=seed, photo_dir=photo_dir)
  return prepared_source(b, split)


def prepared_source(b: tfds.core.DatasetBuilder, split: str, **prepare_kwargs):
  """`split` of builder `b` as a random-access source, prepared on first use."""
  if not b.is_prepared():
    tfds.disable_progress_bar()
    # TFDS prints its progress on stdout, which carries the CLI's JSON.
    with contextlib.redirect_stdout(sys.stderr):
      b.download_and_prepare(**prepare_kwargs)
  return b.as_data_source(split=split)


def source_from_config(data_config, split: str):
  """`load_source` with the `config.data` fields every task config carries."""
  d = data_config
  return load_source(
      split,
      data_dir=os.path.expanduser(d.data_dir),
      resolution=d.resolution,
      count=d.count,
      seed=d.seed,
      photo_dir=d.get("photo_dir"),
  )
