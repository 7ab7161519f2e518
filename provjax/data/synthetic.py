"""`provjax_synthetic`: deterministic training originals, written as ArrayRecord by TFDS.

Half the images are random crops of the real photographs bundled with
scikit-image, scikit-learn and matplotlib (`photos.photo_crop`), half are
procedural images (textures, shapes, gradients, noise fields). Train and test
are disjoint: different seeds, and crops of opposite side parity, so no crop
box can appear in both. Images are stored as PNG bytes in a
`Tensor(shape=(), dtype=object)` feature, which TFDS can write and read
without TensorFlow; they are decoded with Pillow in the grain map.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
import sys

import numpy as np
import tensorflow_datasets as tfds

from provjax.data import photos
from provjax.data.images import encode_png

_SPLITS = {"train": 0, "test": 1}


class SyntheticConfig(tfds.core.BuilderConfig):
  """Resolution, image counts and seed; the name encodes all four."""

  def __init__(self, *, resolution: int, num_train: int, num_test: int, seed: int = 0):
    super().__init__(
        name=f"r{resolution}_n{num_train}_{num_test}_s{seed}",
        description="bundled-photo crops + procedural images",
    )
    self.resolution, self.num_train, self.num_test, self.seed = (
        resolution,
        num_train,
        num_test,
        seed,
    )


class ProvjaxSynthetic(tfds.core.GeneratorBasedBuilder):
  """Synthetic originals for provenance training (see module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Photo crops + procedural images, PNG bytes."}

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
            }
        ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: every image is made here
    return {split: self._generate_examples(split) for split in _SPLITS}

  def _generate_examples(self, split: str):
    cfg = self.builder_config
    count = cfg.num_train if split == "train" else cfg.num_test
    for i, (kind, image) in enumerate(generate_images(split, count, cfg.resolution, cfg.seed)):
      yield i, {"image": encode_png(image), "id": i, "kind": kind.encode()}


def generate_images(split: str, count: int, resolution: int, seed: int = 0):
  """(kind, image) pairs; the i-th depends only on (split, seed, i)."""
  for i in range(count):
    rng = np.random.default_rng([seed, _SPLITS[split], i])
    if i % 2 == 0:
      yield "photo", photos.photo_crop(rng, resolution, side_parity=_SPLITS[split])[1]
    else:
      yield "procedural", photos.procedural_image(rng, resolution)


def builder(
    data_dir: str | Path, *, resolution: int, count: int, seed: int = 0, test_fraction: float = 0.1
) -> ProvjaxSynthetic:
  """The builder for `count` training images (+ a held-back test split)."""
  config = SyntheticConfig(
      resolution=resolution,
      num_train=count,
      num_test=max(16, int(count * test_fraction)),
      seed=seed,
  )
  return ProvjaxSynthetic(config=config, data_dir=str(data_dir), file_format="array_record")


def load_source(split: str, *, data_dir: str | Path, resolution: int, count: int, seed: int = 0):
  """Random-access source of `split` (prepared on first use); records are dicts
  with `image` (PNG bytes), `id` and `kind`."""
  b = builder(data_dir, resolution=resolution, count=count, seed=seed)
  if not b.is_prepared():
    tfds.disable_progress_bar()
    # TFDS prints its progress on stdout, which carries the CLI's JSON.
    with contextlib.redirect_stdout(sys.stderr):
      b.download_and_prepare()
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
  )
