"""Attribution88 (RepMix, Bui et al. ECCV 2022) as a TFDS builder over the unpacked release.

The release cannot be downloaded automatically (30 GB behind a plain link):
the builder reads the folder the user unpacked (`manual_dir`, layout in the
builder's docstring) and writes one ArrayRecord split per split CSV.
Records keep the CSV's row order and hold `image`, the file's bytes
unchanged (never re-encoded, so generator traces survive), `label` (the
source: 0 real, 1..7 the GANs), `dlabel` (the semantic class) and `path` as
the CSV gives it. A row whose file is missing or does not decode is skipped
with one warning line on stderr naming the file and the CSV line.

The prepared dataset is named after a hash of `manual_dir`'s path and of the
names, sizes and modification times of its split CSVs. The CSVs alone, not
the million images, keep opening a prepared dataset cheap; they name every
record, so editing a CSV prepares again, while replacing an image file in
place (or adding one that was missing) needs a touch of its CSV.

    source = load("~/data/Attribution88", data_dir="~/tensorflow_datasets", split="test")
    labels = [int(source[i]["label"]) for i in range(len(source))]
"""

from __future__ import annotations

import os
from pathlib import Path
import re
import sys

import numpy as np
import tensorflow_datasets as tfds

from provjax.data import synthetic
from provjax.data.images import ImageError, read_image
from provjax.data.manual_dir import ManualDirConfig, open_csv

COLUMNS = ("path", "label", "dlabel")
_SPLIT_NAME = re.compile(r"\w+")  # TFDS split syntax ("test[:10%]") takes word characters


def split_csvs(root: Path) -> dict[str, Path]:
  """{split name: CSV} of the `<split>.csv` files directly in `root`, sorted by name."""
  return {path.stem: path for path in sorted(root.glob("*.csv")) if path.is_file()}


class Attribution88Config(ManualDirConfig):
  """The manual_dir the release is read from; its split CSVs decide the dataset."""

  files = staticmethod(split_csvs)


def _int(value: str, where: str, column: str) -> np.int64:
  try:
    return np.int64(value)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{where}: {column} {value!r} is not an integer") from e


def _records(root: Path, csv_path: Path):
  """(CSV line number, record) of each usable row, in file order; bad files warned and skipped."""
  handle, reader = open_csv(csv_path, COLUMNS)
  with handle:
    for row in reader:
      where = f"{csv_path.name}:{reader.line_num}"
      file = root / row["path"]
      try:
        read_image(file)  # decodes fully, so a truncated or corrupt file is caught here
      except ImageError as e:
        print(f"warning: {where}: {file}: {e.reason}; skipped", file=sys.stderr)
        continue
      yield reader.line_num, {
          "image": file.read_bytes(),
          "label": _int(row["label"], where, "label"),
          "dlabel": _int(row["dlabel"], where, "dlabel"),
          "path": row["path"].encode(),
      }


def _bytes_feature():
  return tfds.features.Tensor(shape=(), dtype=np.object_)


class ProvjaxAttribution88(tfds.core.GeneratorBasedBuilder):
  """Attribution88 (RepMix, ECCV 2022): 11 semantics x 8 sources (real + 7 GANs).

  Unpack Attribution88.tar.gz (or the processed Attribution88_test.tar.gz)
  and give its folder as manual_dir:

  manual_dir/
    <image folders>/...   the images, any layout the CSVs point into
    train.csv             split CSVs, header path,label,dlabel:
    val.csv                 path    the image file, relative to manual_dir
    test.csv                label   the source, 0 = real, 1..7 = the GANs
    test_unseen.csv ...     dlabel  the semantic class, the seen (training) semantics first

  Every <split>.csv directly in manual_dir becomes the split of that name
  (letters, digits and underscores only); extra splits are welcome.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Source files unchanged, label and dlabel, one split per CSV."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__  # TFDS shows these when manual_dir is missing or empty

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo directly: `dataset_info_from_configs` reads package metadata files.
    return tfds.core.DatasetInfo(
        builder=self,
        description=type(self).__doc__,
        disable_shuffling=True,  # CSV order, so predictions line up with the CSV rows
        features=tfds.features.FeaturesDict(
            {
                "image": _bytes_feature(),  # the source file's bytes
                "label": tfds.features.Tensor(shape=(), dtype=np.int64),
                "dlabel": tfds.features.Tensor(shape=(), dtype=np.int64),
                "path": _bytes_feature(),  # relative to manual_dir, as in the CSV
            }
        ),
    )

  def _split_generators(self, dl_manager):
    root = Path(dl_manager.manual_dir)
    csvs = split_csvs(root)
    if not csvs:
      raise ValueError(f"{root}: no split CSVs (train.csv, test.csv, ...); see the docstring")
    for name, path in csvs.items():
      if not _SPLIT_NAME.fullmatch(name) or name.lower() == "all":
        raise ValueError(f"{path}: {name!r} cannot name a split; use letters, digits, _")
      open_csv(path, COLUMNS)[0].close()  # a bad header fails now, before any split is written
    return {name: self._generate_examples(root, path) for name, path in csvs.items()}

  def _generate_examples(self, root: Path, csv_path: Path):
    yield from _records(root, csv_path)


def builder(manual_dir: str | os.PathLike, *, data_dir: str | os.PathLike) -> ProvjaxAttribution88:
  """The Attribution88 builder over `manual_dir`, preparing under `data_dir`."""
  config = Attribution88Config(manual_dir)
  data_dir = Path(data_dir).expanduser()
  return ProvjaxAttribution88(config=config, data_dir=str(data_dir), file_format="array_record")


def load(manual_dir: str | os.PathLike, *, data_dir: str | os.PathLike, split: str = "test"):
  """Random-access source of `split` (every split prepared on first use)."""
  b = builder(manual_dir, data_dir=data_dir)
  download_config = tfds.download.DownloadConfig(manual_dir=str(b.builder_config.manual_dir))
  return synthetic.prepared_source(b, split, download_config=download_config)
