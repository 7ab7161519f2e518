"""Places2 (Places365, Zhou et al. 2017) for inpainting, as the TFDS builder `provjax_places2`.

Places2 cannot be downloaded by provjax: the builder reads the folder the
user unpacked (`manual_dir`):

    manual_dir/
      train/...   training images, searched recursively (e.g. Places365-Standard's
                  data_256/ tree)
      val/...     validation images (e.g. val_256/, the usual inpainting test set)
      test/...    test images
      masks/...   optional: a hole-mask set, searched recursively (e.g. the irregular
                  masks of Liu et al. 2018), nonzero = hole

Each of `train`, `val` and `test` that is there becomes the split of that
name; images of any format Pillow reads count (jpg jpeg png bmp gif tif tiff
webp). Images are center-cropped to a square and resized to `resolution`
(bicubic), as the official src/dataset.py does, and stored as PNG.

Masks: with a `masks/` folder, image k of a split (in sorted path order)
takes mask file k % n of the sorted mask files, as the official test mode
pairs them by index (the official training mode draws a random file per
sample instead: the SafePaint task draws fresh masks while training). A mask
file is binarised first (nonzero = hole, as the official), then resized to
the image with nearest neighbours, so it stays binary (the official resizes
test masks bicubically after binarising, which leaves a soft edge). Without
a `masks/` folder image k gets the free-form mask that record k of
provjax.data.inpainting's split of that name gets (`planned_mask`: ratio
bin (k // 2) % 6, kind KINDS[(k // 12) % 2]), so every bin and kind are
equally represented.

Records have the features of provjax.data.inpainting (`record_features`):
`name` (the image's path under its split folder), `image`, `mask`,
`ratio_bin` (-1 when a mask file's hole ratio is outside every bin),
`source` (the image's path under manual_dir) and `mask_source` (b"strokes"
/ b"blobs", or the mask file's path under manual_dir). An image or mask
that does not decode is skipped with one warning line on stderr naming the
file; pairing stays by file index, so the other pairs do not move.

The prepared dataset is named after the resolution, the seed, the mask
recipe's hash and a hash of manual_dir's path and file list
(provjax.data.folder.fingerprint).

    source = load("~/data/places2", split="val", data_dir="~/tensorflow_datasets")
    image, hole = inpainting.decode(source[0])
"""

from __future__ import annotations

import os
from pathlib import Path
import sys

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from provjax.data import folder, inpainting, synthetic
from provjax.data.images import ImageError, list_images, read_image

SPLITS = ("train", "val", "test")
MASKS = "masks"
DEFAULTS = {"resolution": 256, "seed": 0}


def center_square(image: np.ndarray, resolution: int) -> np.ndarray:
  """The centred square of the shorter side, resized to resolution x resolution (bicubic)."""
  height, width = image.shape[:2]
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  crop = np.ascontiguousarray(image[top : top + side, left : left + side])
  if side == resolution:
    return crop
  return np.asarray(
      Image.fromarray(crop).resize((resolution, resolution), Image.Resampling.BICUBIC)
  )


def read_hole(path: Path, resolution: int) -> np.ndarray:
  """A mask file as an HxW bool hole (nonzero = hole), resized to resolution with nearest.

  Raises:
    ImageError: if the file does not decode.
  """
  hole = np.any(read_image(path) > 0, axis=-1)
  if hole.shape != (resolution, resolution):
    resized = Image.fromarray(hole).resize((resolution, resolution), Image.Resampling.NEAREST)
    hole = np.asarray(resized)
  return hole


def _warn(path: Path, reason: str) -> None:
  print(f"warning: {path}: {reason}; skipped", file=sys.stderr)


def _records(root: Path, split: str, resolution: int, seed: int):
  """The records of `split` under `root`, in sorted path order (bad files skipped)."""
  mask_dir = root / MASKS
  mask_files = list_images(mask_dir) if mask_dir.is_dir() else []
  for k, path in enumerate(list_images(root / split)):
    mask_file = mask_files[k % len(mask_files)] if mask_files else None
    try:
      image = center_square(read_image(path), resolution)
    except ImageError as e:
      _warn(path, e.reason)
      continue
    if mask_file is None:
      hole, mask_source = inpainting.planned_mask(split, k, resolution, seed)
    else:
      try:
        hole = read_hole(mask_file, resolution)
      except ImageError as e:
        _warn(path, f"its mask {e}")
        continue
      mask_source = mask_file.relative_to(root).as_posix()
    name = path.relative_to(root / split).as_posix()
    source = path.relative_to(root).as_posix()
    yield inpainting.make_record(name, image, hole, source, mask_source)


class Places2Config(tfds.core.BuilderConfig):
  """manual_dir, resolution and seed; the name encodes them and the mask recipe."""

  def __init__(self, manual_dir: str | os.PathLike, *, resolution: int, seed: int):
    manual_dir = Path(manual_dir).expanduser().resolve()
    if not manual_dir.is_dir():
      raise NotADirectoryError(f"{manual_dir}: not a directory")
    name = (
        f"r{resolution}_s{seed}_masks{inpainting.MASK_FINGERPRINT}"
        f"_dir{folder.fingerprint(manual_dir)}"
    )
    super().__init__(name=name, description=f"read from {manual_dir}")
    self.manual_dir, self.resolution, self.seed = manual_dir, resolution, seed


class ProvjaxPlaces2(tfds.core.GeneratorBasedBuilder):
  """Places2 images with hole masks (see the module docstring for the layout).

  manual_dir/
    train/...   val/...   test/...   images, searched recursively
    masks/...   optional hole masks, nonzero = hole, paired with images by index
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Center-cropped 256 px PNGs, masks by index or free-form."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__  # TFDS shows these when manual_dir is missing or empty

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo directly: `dataset_info_from_configs` reads package metadata files.
    return tfds.core.DatasetInfo(
        builder=self,
        description=type(self).__doc__,
        disable_shuffling=True,  # sorted path order, so the index pairing is visible
        features=inpainting.record_features(),
    )

  def _split_generators(self, dl_manager):
    root = Path(dl_manager.manual_dir)
    present = [split for split in SPLITS if (root / split).is_dir()]
    if not present:
      raise ValueError(f"{root}: none of the folders {', '.join(SPLITS)}; see the docstring")
    return {split: self._generate_examples(root, split) for split in present}

  def _generate_examples(self, root: Path, split: str):
    cfg = self.builder_config
    yield from enumerate(_records(root, split, cfg.resolution, cfg.seed))


def builder(
    manual_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    resolution: int = DEFAULTS["resolution"],
    seed: int = DEFAULTS["seed"],
) -> ProvjaxPlaces2:
  """The Places2 builder over `manual_dir`, preparing under `data_dir` (None: TFDS's default)."""
  config = Places2Config(manual_dir, resolution=resolution, seed=seed)
  data_dir = str(Path(data_dir).expanduser()) if data_dir else None
  return ProvjaxPlaces2(config=config, data_dir=data_dir, file_format="array_record")


def load(
    manual_dir: str | os.PathLike,
    *,
    split: str = "val",
    data_dir: str | os.PathLike | None = None,
    resolution: int = DEFAULTS["resolution"],
    seed: int = DEFAULTS["seed"],
):
  """Random-access source of `split` (every split there prepared on first use).

  Records are those of provjax.data.inpainting; `inpainting.decode` gives a
  record's image and hole.
  """
  b = builder(manual_dir, data_dir=data_dir, resolution=resolution, seed=seed)
  download_config = tfds.download.DownloadConfig(manual_dir=str(b.builder_config.manual_dir))
  return synthetic.prepared_source(b, split, download_config=download_config)
