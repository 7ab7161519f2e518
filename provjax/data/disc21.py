"""DISC21 (the ISC2021 dataset, specs/copy_detection.md section 1) as a TFDS builder `disc21`.

DISC21 cannot be downloaded automatically (it is behind a licence page): the
builder reads the folder the user unpacked (`manual_dir`):

    manual_dir/
      references/R000000.jpg ...   the 1 M reference images (R000000-R999999)
      training/T000000.jpg ...     the 1 M training images, disjoint from the references
                                   (the background for score normalisation and whitening)
      queries/Q00000.jpg ...       the dev queries (Q00000-Q49999)
      public_ground_truth.csv      header query_id,reference_id; one row per query, the
                                   reference empty for a non-matching query

Each of the three folders that is there becomes the split of that name
(`references`, `training`, `queries`); any image format Pillow reads is taken
and the record id is the file's stem. Records hold `id`, `image` (the file's
bytes unchanged, never re-encoded) and `reference_id`: for a query its ground
truth reference from the CSV, "" when the CSV gives none or does not list it
(and for every reference and training image). Records are in id order. A file
that does not decode is skipped with one warning line on stderr naming it.

`subset` restricts the queries to an id range: "dev1" (Q00000-Q24999, the
public ground truth's half, 4 991 positives; CopyNCE fine-tunes on it),
"dev2" (Q25000-Q49999, 5 009 positives; CopyNCE's dev set II, where it
reports its figures) or "phase2" (Q50000-Q99999); "full" keeps every query.
public_ground_truth.csv covers Q00000-Q24999 only: for dev2 (or phase2) put the
ground truth of those queries, in the same format, beside it and name it with
`ground_truth`.

The prepared dataset is named after a hash of `manual_dir`'s path, the subset,
and the sizes and modification times of the three folders and the CSV: adding
or removing files changes a folder's time and prepares again, while replacing
an image in place needs a touch of its folder.

    queries = load("~/data/disc21", data_dir="~/tensorflow_datasets", split="queries")
    pairs, query_ids = copydetect.ground_truth(queries[i] for i in range(len(queries)))
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
import re
import sys

import numpy as np
import tensorflow_datasets as tfds

from provjax.data import synthetic
from provjax.data.images import IMAGE_EXTENSIONS, ImageError, read_image

FOLDERS = ("references", "training", "queries")
GROUND_TRUTH = "public_ground_truth.csv"
GT_COLUMNS = ("query_id", "reference_id")
# Query id ranges (inclusive) of the dev and test halves (specs/copy_detection.md, section 1).
SUBSETS = {"full": None, "dev1": (0, 24999), "dev2": (25000, 49999), "phase2": (50000, 99999)}
_QUERY_ID = re.compile(r"Q(\d+)")


def _fingerprint(root: Path, subset: str, ground_truth: str) -> str:
  """A short hash of the folder's path, the subset and the folders' and CSV's sizes and mtimes."""
  digest = hashlib.sha256(f"{root}\0{subset}\0{ground_truth}".encode())
  for name in FOLDERS + (ground_truth,):
    path = root / name
    if path.exists():
      stat = path.stat()
      digest.update(f"\0{name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
  return digest.hexdigest()[:10]


class Disc21Config(tfds.core.BuilderConfig):
  """The manual_dir DISC21 is read from, the query subset and the ground-truth CSV's name."""

  def __init__(
      self, manual_dir: str | os.PathLike, subset: str = "full", ground_truth: str = GROUND_TRUTH
  ):
    if subset not in SUBSETS:
      raise ValueError(f"unknown DISC21 subset {subset!r}; expected one of {tuple(SUBSETS)}")
    manual_dir = Path(manual_dir).expanduser().resolve()
    if not manual_dir.is_dir():
      raise NotADirectoryError(f"{manual_dir}: not a directory")
    super().__init__(
        name=f"{subset}_dir{_fingerprint(manual_dir, subset, ground_truth)}",
        description=f"read from {manual_dir}, {subset} queries",
    )
    self.manual_dir, self.subset, self.ground_truth = manual_dir, subset, ground_truth


def read_ground_truth(csv_path: Path) -> dict[str, str]:
  """{query id: reference id ("" for a non-matching query)} of a DISC21 ground-truth CSV.

  Raises:
    ValueError: for a header without query_id and reference_id, or a query
      listed twice with different references (DISC21 has at most one each).
  """
  with csv_path.open(newline="", encoding="utf-8") as handle:
    reader = csv.DictReader(handle)
    missing = [c for c in GT_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
      raise ValueError(
          f"{csv_path}: header lacks {', '.join(missing)}; expected query_id,reference_id"
      )
    out: dict[str, str] = {}
    for row in reader:
      query, ref = (row["query_id"] or "").strip(), (row["reference_id"] or "").strip()
      if out.get(query, ref) != ref:
        raise ValueError(
            f"{csv_path.name}:{reader.line_num}: query {query} has two references,"
            f" {out[query]} and {ref}"
        )
      out[query] = ref
  return out


def in_subset(image_id: str, subset: str) -> bool:
  """Whether query `image_id` (Q<number>) lies in `subset`'s id range."""
  bounds = SUBSETS[subset]
  if bounds is None:
    return True
  match = _QUERY_ID.fullmatch(image_id)
  return bool(match) and bounds[0] <= int(match.group(1)) <= bounds[1]


def list_files(folder: Path) -> list[tuple[str, str]]:
  """(id, file name) of the image files directly in `folder`, sorted by id.

  Only names are held (a million short strings), never images. A second file
  with an id already taken (R000001.png beside R000001.jpg) is skipped with a
  warning.
  """
  with os.scandir(folder) as entries:
    names = sorted(
        e.name
        for e in entries
        if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file()
    )
  out: dict[str, str] = {}
  for name in names:
    image_id = os.path.splitext(name)[0]
    if image_id in out:
      print(
          f"warning: {folder / name}: id {image_id} taken by {out[image_id]}; skipped",
          file=sys.stderr,
      )
      continue
    out[image_id] = name
  return sorted(out.items())


def _records(folder: Path, keep, gt: dict[str, str]):
  """(id, record) of each readable image of `folder` whose id `keep` accepts (None: all), one
  at a time; unreadable files warned and skipped. `gt` gives the reference ids."""
  for image_id, name in list_files(folder):
    if keep is not None and not keep(image_id):
      continue
    path = folder / name
    try:
      read_image(path)  # decodes fully, so a truncated or corrupt file is caught here
    except ImageError as e:
      print(f"warning: {path}: {e.reason}; skipped", file=sys.stderr)
      continue
    yield image_id, {
        "id": image_id.encode(),
        "image": path.read_bytes(),
        "reference_id": gt.get(image_id, "").encode(),
    }


def _bytes_feature():
  return tfds.features.Tensor(shape=(), dtype=np.object_)


class Disc21(tfds.core.GeneratorBasedBuilder):
  """DISC21 (ISC2021, Douze et al. 2021): references, training images and dev queries.

  Unpack the images and give their folder as manual_dir:

  manual_dir/
    references/R000000.jpg ...   reference images
    training/T000000.jpg ...     training images (score normalisation, whitening)
    queries/Q00000.jpg ...       dev queries
    public_ground_truth.csv      query_id,reference_id (empty reference: no match)

  Each folder present becomes a split of its name; the CSV is optional (without
  it every query's reference_id is empty).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Source files unchanged; queries carry their ground-truth reference."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__  # TFDS shows these when manual_dir is missing or empty

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo directly: `dataset_info_from_configs` reads package metadata files.
    return tfds.core.DatasetInfo(
        builder=self,
        description=type(self).__doc__,
        disable_shuffling=True,  # id order, so records line up with the ids
        features=tfds.features.FeaturesDict(
            {
                "id": _bytes_feature(),  # the file's stem: R000000, T000000, Q00000
                "image": _bytes_feature(),  # the file's bytes
                "reference_id": _bytes_feature(),  # a query's GT reference, b"" for none
            }
        ),
    )

  def _split_generators(self, dl_manager):
    root = Path(dl_manager.manual_dir)
    cfg = self.builder_config
    folders = [name for name in FOLDERS if (root / name).is_dir()]
    if not folders:
      raise ValueError(f"{root}: none of the folders {', '.join(FOLDERS)}; see the docstring")
    gt_path = root / cfg.ground_truth
    gt = read_ground_truth(gt_path) if gt_path.is_file() else {}  # a bad CSV fails now
    in_queries = lambda image_id: in_subset(image_id, cfg.subset)
    return {
        name: self._generate_examples(root / name, in_queries, gt)
        if name == "queries"
        else self._generate_examples(root / name, None, {})
        for name in folders
    }

  def _generate_examples(self, folder: Path, keep, gt: dict[str, str]):
    yield from _records(folder, keep, gt)


def builder(
    manual_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike,
    subset: str = "full",
    ground_truth: str = GROUND_TRUTH,
) -> Disc21:
  """The DISC21 builder over `manual_dir`, preparing under `data_dir`."""
  config = Disc21Config(manual_dir, subset, ground_truth)
  data_dir = Path(data_dir).expanduser()
  return Disc21(config=config, data_dir=str(data_dir), file_format="array_record")


def load(
    manual_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike,
    split: str = "queries",
    subset: str = "full",
    ground_truth: str = GROUND_TRUTH,
):
  """Random-access source of `split` (every split prepared on first use).

  Records are dicts of bytes: `id`, `image` (the file's bytes) and `reference_id`.
  """
  b = builder(manual_dir, data_dir=data_dir, subset=subset, ground_truth=ground_truth)
  download_config = tfds.download.DownloadConfig(manual_dir=str(b.builder_config.manual_dir))
  return synthetic.prepared_source(b, split, download_config=download_config)
