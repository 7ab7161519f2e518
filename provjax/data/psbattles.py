"""PSBattles (Heller et al. 2018) original/photoshop pairs as the TFDS builder `psbattles`.

PSBattles is 15 GB of Reddit images that provjax cannot download (the
release is a list of URLs, specs/simprov.md section 1): the builder reads the
folder the user downloaded and unpacked (`manual_dir`), as the PS-Battles
repository's download.sh lays it out, with the pair lists SImProv trains and
tests on (`TuBui/deep_image_comparator`'s psbattles.tar) beside it:

    manual_dir/
      originals/<id>.<ext>                   one original per Reddit submission
      photoshops/<id>/<photoshop id>.<ext>   its photoshops (download.sh; downloader.py
                                             writes them flat as photoshops/<photoshop id>.<ext>)
      train_pairs.csv                        header original,photoshop: one row per pair,
      test_pairs.csv                           each a path relative to manual_dir

Every `<split>_pairs.csv` directly in manual_dir becomes the split of that
name (`train`, `test`; extra ones are welcome); the rows may point anywhere
under manual_dir, the folders above are only the usual layout. Other columns
(pandas' unnamed index) are ignored. An original with several photoshops is
listed once per photoshop.

Records keep the CSV's row order and hold `original` and `photoshop` (the
files' bytes unchanged, never re-encoded), `original_id` and `photoshop_id`
(the files' stems) and `original_path` and `photoshop_path` as the CSV gives
them. Each record carries its original's bytes, so a pair is read with one
lookup, at the price of storing an original once per photoshop. A row whose
original or photoshop is missing or does not decode is skipped with one
warning line on stderr naming the file and the CSV line; the rest goes on.

The prepared dataset is named after a hash of `manual_dir`'s path and of the
names, sizes and modification times of its pair CSVs: they name every
record, so editing a CSV prepares again, while replacing an image in place
(or adding one that was missing) needs a touch of its CSV.

    pairs = load("~/data/psbattles", data_dir="~/.cache/provjax/tensorflow_datasets")
    original = read_image(bytes(pairs[0]["original"]))
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

COLUMNS = ("original", "photoshop")
PAIRS_SUFFIX = "_pairs.csv"
_SPLIT_NAME = re.compile(r"\w+")  # TFDS split syntax ("test[:10%]") takes word characters


def pair_csvs(root: Path) -> dict[str, Path]:
  """{split name: CSV} of the `<split>_pairs.csv` files directly in `root`, sorted by name."""
  found = sorted(root.glob(f"*{PAIRS_SUFFIX}"))
  return {p.name[: -len(PAIRS_SUFFIX)]: p for p in found if p.is_file()}


class PsbattlesConfig(ManualDirConfig):
  """The manual_dir PSBattles is read from; its pair CSVs decide the dataset."""

  files = staticmethod(pair_csvs)


def _check(path: Path, seen: dict[Path, str | None]) -> str | None:
  """Why `path` is unusable (None if it decodes); each file is decoded once per split,
  though an original is listed once per photoshop."""
  if path not in seen:
    try:
      read_image(path)  # decodes fully, so a truncated or corrupt file is caught here
      seen[path] = None
    except ImageError as e:
      seen[path] = e.reason
  return seen[path]


def _records(root: Path, csv_path: Path):
  """(CSV line number, record) of each usable pair, in file order; bad files warned and skipped."""
  handle, reader = open_csv(csv_path, COLUMNS)
  seen: dict[Path, str | None] = {}
  with handle:
    for row in reader:
      names = {c: (row[c] or "").strip() for c in COLUMNS}
      files = {c: root / names[c] for c in COLUMNS}
      bad = [(f, _check(f, seen)) for f in files.values()]
      bad = [(f, reason) for f, reason in bad if reason is not None]
      if bad:
        file, reason = bad[0]
        print(
            f"warning: {csv_path.name}:{reader.line_num}: {file}: {reason}; skipped",
            file=sys.stderr,
        )
        continue
      yield reader.line_num, {
          "original": files["original"].read_bytes(),
          "photoshop": files["photoshop"].read_bytes(),
          "original_id": files["original"].stem.encode(),
          "photoshop_id": files["photoshop"].stem.encode(),
          "original_path": names["original"].encode(),
          "photoshop_path": names["photoshop"].encode(),
      }


def _bytes_feature():
  return tfds.features.Tensor(shape=(), dtype=np.object_)


class Psbattles(tfds.core.GeneratorBasedBuilder):
  """PSBattles (Reddit r/photoshopbattles): originals paired with their photoshops.

  Download the images with the PS-Battles repository's download.sh, put the
  pair lists beside them, and give that folder as manual_dir:

  manual_dir/
    originals/<id>.<ext>                   originals
    photoshops/<id>/<photoshop id>.<ext>   their photoshops
    train_pairs.csv                        header original,photoshop: paths relative
    test_pairs.csv                           to manual_dir, one row per pair

  Every <split>_pairs.csv directly in manual_dir becomes the split of that
  name (letters, digits and underscores only).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Source files unchanged, one split per pair CSV."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__  # TFDS shows these when manual_dir is missing or empty

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo directly: `dataset_info_from_configs` reads package metadata files.
    return tfds.core.DatasetInfo(
        builder=self,
        description=type(self).__doc__,
        disable_shuffling=True,  # CSV order, so results line up with the CSV rows
        features=tfds.features.FeaturesDict(
            {
                "original": _bytes_feature(),  # the original file's bytes
                "photoshop": _bytes_feature(),  # the photoshop file's bytes
                "original_id": _bytes_feature(),  # the original file's stem
                "photoshop_id": _bytes_feature(),  # the photoshop file's stem
                "original_path": _bytes_feature(),  # relative to manual_dir, as in the CSV
                "photoshop_path": _bytes_feature(),
            }
        ),
    )

  def _split_generators(self, dl_manager):
    root = Path(dl_manager.manual_dir)
    csvs = pair_csvs(root)
    if not csvs:
      raise ValueError(f"{root}: no pair CSVs (train_pairs.csv, test_pairs.csv); see the docstring")
    for name, path in csvs.items():
      if not _SPLIT_NAME.fullmatch(name) or name.lower() == "all":
        raise ValueError(f"{path}: {name!r} cannot name a split; use letters, digits, _")
      open_csv(path, COLUMNS)[0].close()  # a bad header fails now, before any split is written
    return {name: self._generate_examples(root, path) for name, path in csvs.items()}

  def _generate_examples(self, root: Path, csv_path: Path):
    yield from _records(root, csv_path)


def builder(manual_dir: str | os.PathLike, *, data_dir: str | os.PathLike) -> Psbattles:
  """The PSBattles builder over `manual_dir`, preparing under `data_dir`."""
  config = PsbattlesConfig(manual_dir)
  data_dir = Path(data_dir).expanduser()
  return Psbattles(config=config, data_dir=str(data_dir), file_format="array_record")


def load(manual_dir: str | os.PathLike, *, data_dir: str | os.PathLike, split: str = "test"):
  """Random-access source of `split` (every split prepared on first use).

  Raises:
    ValueError: when manual_dir has no `<split>_pairs.csv`.
  """
  b = builder(manual_dir, data_dir=data_dir)
  root = b.builder_config.manual_dir
  if _SPLIT_NAME.fullmatch(split) and split not in pair_csvs(root):
    raise ValueError(f"{root}: no {split}{PAIRS_SUFFIX}, so no {split!r} split")
  download_config = tfds.download.DownloadConfig(manual_dir=str(root))
  return synthetic.prepared_source(b, split, download_config=download_config)
