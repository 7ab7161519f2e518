"""Public forgery benchmarks (CASIA, Columbia, Coverage, NIST16, DSO-1, CocoGlide) as TFDS builders.

None of these can be downloaded automatically: each builder reads a folder
the user unpacked (`manual_dir`) and writes its `test` split as ArrayRecord.
A further builder, `folder` (provjax_forgery_folder), reads only the generic
layout: any folder of forgeries made elsewhere (e.g. SafePaint fills written
by provjax.inpainting.fills), as an evaluation benchmark or as TruFor's
training source (`config.data.folder`, provjax.tasks.trufor_loc).
Every other builder accepts two layouts, tried in this order:

* the generic layout, chosen whenever `manual_dir` holds both `fake/` and
  `masks/`: forged images in `fake/`, each with a mask of the same stem (any
  image extension) in `masks/`, white (>= 128 after averaging the channels)
  = forged; authentic images in `real/` (optional). Any dataset converted
  to this form works with any builder;
* the dataset's own layout, documented in each builder's docstring (the
  layout its public archive unpacks to, as far as known).

Folder names are matched without regard to case; images are found by
extension (jpg jpeg png bmp gif tif tiff webp). Records follow the agreed
forgery record format (provjax.data.forgery): `image` holds the source
file's bytes unchanged (never re-encoded, so JPEG traces survive), `mask` a
PNG of the uint8 mask (255 = forged, all zero for authentic images),
`label` 1 forged / 0 authentic, `name` the file name, and `kind` the
dataset's own category where it has one (b"splice", b"copy_move",
b"inpainting"), else b"forged" / b"authentic". Records are stored in
sorted path order. A forged image whose mask is missing, unreadable or of
another size than the image, and any unreadable image, is skipped with one
warning line on stderr naming the file.

The prepared dataset is named after a hash of `manual_dir`'s path and of the
names, sizes and modification times of its files, so changing the folder
prepares it again.

    source = load_benchmark("casia1", "~/data/CASIA1", data_dir="~/tensorflow_datasets")
    image, mask, label = decode_record(source[0])
"""

from __future__ import annotations

import abc
import dataclasses
import os
from pathlib import Path
import re
import sys

import numpy as np
import tensorflow_datasets as tfds

from provjax.data import synthetic
from provjax.data.images import IMAGE_EXTENSIONS, ImageError, encode_png, list_images, read_image
from provjax.data.manual_dir import ManualDirConfig

SPLIT = "test"
GENERIC_LAYOUT = """Any builder also reads the generic layout:
  manual_dir/fake/...    forged images
  manual_dir/masks/...   one mask per fake, same stem, any image extension, white = forged
  manual_dir/real/...    authentic images (optional)"""
MASK_THRESHOLD = 128  # mask files are binarised at this grey level

# How a mask file marks forged pixels, applied to its HxWx3 uint8 decoding.
MASK_RULES = {
    "white": lambda rgb: rgb.mean(axis=-1) >= MASK_THRESHOLD,
    "black": lambda rgb: rgb.mean(axis=-1) < MASK_THRESHOLD,  # DSO-1: inverted masks
    "green": lambda rgb: rgb[..., 1] >= MASK_THRESHOLD,  # Columbia edge masks
}


@dataclasses.dataclass(frozen=True)
class Entry:
  """One image a layout found: its file, label, kind and (forged only) mask file."""

  path: Path
  label: int  # 1 forged, 0 authentic
  kind: str
  mask: Path | None = None  # None for authentic images, and for forged ones without a mask
  mask_rule: str = "white"  # a key of MASK_RULES


# ----------------------------------------------------------------- reading ---


def read_mask(path: str | os.PathLike, rule: str = "white") -> np.ndarray:
  """HxW bool (True = forged) from a mask file under one of MASK_RULES.

  Raises:
    ImageError: if the file cannot be decoded.
  """
  return MASK_RULES[rule](read_image(path))


def decode_record(record) -> tuple[np.ndarray, np.ndarray, int]:
  """(image HxWx3 uint8, mask HxW bool with True = forged, label 1/0) of a benchmark record."""
  name = bytes(record["name"]).decode(errors="replace")
  image = read_image(bytes(record["image"]), name=name)
  mask = read_image(bytes(record["mask"]), name=f"{name} (mask)")[..., 0] > 127
  return image, mask, int(record["label"])


def _warn(path: Path, reason: str) -> None:
  print(f"warning: {path}: {reason}; skipped", file=sys.stderr)


def make_record(entry: Entry) -> dict | None:
  """The TFDS record of `entry`, or None (after one warning line) if it cannot be used."""
  try:
    height, width = read_image(entry.path).shape[:2]
  except ImageError as e:
    _warn(entry.path, e.reason)
    return None
  mask = np.zeros((height, width), bool)
  if entry.label:
    if entry.mask is None:
      _warn(entry.path, "no mask found")
      return None
    try:
      mask = read_mask(entry.mask, entry.mask_rule)
    except ImageError as e:
      _warn(entry.path, f"mask {entry.mask.name}: {e.reason}")
      return None
    if mask.shape != (height, width):
      shape = f"{mask.shape[1]}x{mask.shape[0]}"
      _warn(entry.path, f"mask {entry.mask.name} is {shape}, the image {width}x{height}")
      return None
  return {
      "image": entry.path.read_bytes(),
      "mask": encode_png(mask.astype(np.uint8) * 255),
      "label": np.int64(entry.label),
      "name": entry.path.name.encode(),
      "kind": entry.kind.encode(),
  }


# ----------------------------------------------------------------- layouts ---


def _child(root: Path | None, *names: str) -> Path | None:
  """The first subfolder of `root` named like one of `names` (any case), or None."""
  if root is None or not root.is_dir():
    return None
  folders = {p.name.lower(): p for p in sorted(root.iterdir()) if p.is_dir()}
  return next((folders[n.lower()] for n in names if n.lower() in folders), None)


def _images(folder: Path | None, *, recursive: bool = True) -> list[Path]:
  """Image files in `folder` (and below it if `recursive`), sorted; [] for no folder."""
  if folder is None:
    return []
  if recursive:
    return list_images(folder)
  return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _by_stem(folder: Path | None) -> dict[str, Path]:
  """{stem: path} of the images under `folder`; the first path wins a shared stem."""
  found = {}
  for path in _images(folder):
    found.setdefault(path.stem, path)
  return found


def generic_entries(root: Path) -> list[Entry]:
  """The generic layout: fake/ + masks/ (same stem) + real/; [] if fake/ or masks/ is absent."""
  fake, masks = _child(root, "fake"), _child(root, "masks")
  if fake is None or masks is None:
    return []
  by_stem = _by_stem(masks)
  forged = [Entry(p, 1, "forged", by_stem.get(p.stem)) for p in _images(fake)]
  return forged + [Entry(p, 0, "authentic") for p in _images(_child(root, "real"))]


def _casia_kind(stem: str) -> str:
  """CASIA names say the edit: Tp_D_/Sp_D_ (two images: splice), Tp_S_/Sp_S_ (one: copy-move)."""
  prefix = stem.split("_")[:2]
  if len(prefix) == 2 and prefix[0] in ("Tp", "Sp"):
    return {"D": "splice", "S": "copy_move"}.get(prefix[1], "forged")
  return "forged"


def casia_entries(root: Path) -> list[Entry]:
  """Tp/ forged (searched recursively), Au/ authentic, gt/ masks <stem>_gt.* (or <stem>.*)."""
  masks = _by_stem(_child(root, "gt", "groundtruth"))
  forged = [
      Entry(p, 1, _casia_kind(p.stem), masks.get(f"{p.stem}_gt") or masks.get(p.stem))
      for p in _images(_child(root, "Tp"))
  ]
  return forged + [Entry(p, 0, "authentic") for p in _images(_child(root, "Au"))]


# ----------------------------------------------------------------- builders ---


def _all_files(root: Path) -> dict[str, Path]:
  """Every file under `root`, by relative path: any of them may decide the dataset."""
  return {str(p.relative_to(root)): p for p in sorted(p for p in root.rglob("*") if p.is_file())}


class BenchmarkConfig(ManualDirConfig):
  """The manual_dir a benchmark is read from; every file in it counts."""

  files = staticmethod(_all_files)


def _bytes_feature():
  return tfds.features.Tensor(shape=(), dtype=np.object_)


class _Benchmark(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """What every benchmark builder shares; a subclass gives its layout in `_layout`."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Source files unchanged, binary PNG masks, a test split."}

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    # TFDS shows these when manual_dir is missing or empty.
    cls.MANUAL_DOWNLOAD_INSTRUCTIONS = f"{cls.__doc__}\n{GENERIC_LAYOUT}"

  @abc.abstractmethod
  def _layout(self, root: Path) -> list[Entry]:
    """The entries of the dataset's own layout under `root` ([] if it is not there)."""

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo directly: `dataset_info_from_configs` reads package metadata files.
    return tfds.core.DatasetInfo(
        builder=self,
        description=type(self).__doc__,
        disable_shuffling=True,  # sorted path order, stable across preparations
        features=tfds.features.FeaturesDict(
            {
                "image": _bytes_feature(),  # the source file's bytes
                "mask": _bytes_feature(),  # PNG of a uint8 mask, 255 = forged
                "label": tfds.features.Tensor(shape=(), dtype=np.int64),
                "name": _bytes_feature(),  # the file name
                "kind": _bytes_feature(),
            }
        ),
    )

  def _split_generators(self, dl_manager):
    return {SPLIT: self._generate_examples(Path(dl_manager.manual_dir))}

  def entries(self, root: Path) -> list[Entry]:
    """The generic layout if `root` has one, else the dataset's own layout."""
    return generic_entries(root) or self._layout(root)

  def _generate_examples(self, root: Path):
    entries = self.entries(root)
    if not entries:
      raise ValueError(
          f"{root}: no images in the {self.name} layout or the generic layout"
          " (fake/ + masks/ + real/); see the builder's docstring"
      )
    records = (make_record(entry) for entry in entries)
    yield from enumerate(r for r in records if r is not None)


class ProvjaxCasia1(_Benchmark):
  """CASIA v1.0 (CASIA v1+ when Au/ holds the COREL reals MVSS-Net++ substitutes).

  manual_dir/
    Tp/...        forged images, searched recursively (the archive's CM/ and Sp/);
                  Sp_D_* are splices, Sp_S_* copy-moves
    Au/...        authentic images
    gt/...        masks <stem>_gt.png (the public CASIA 1.0 groundtruth), white = forged
  """

  def _layout(self, root: Path) -> list[Entry]:
    return casia_entries(root)


class ProvjaxCasia2(_Benchmark):
  """CASIA v2.0.

  manual_dir/
    Tp/...        forged images (Tp_D_* splices, Tp_S_* copy-moves)
    Au/...        authentic images
    gt/...        masks <stem>_gt.png (the public CASIA 2.0 groundtruth), white = forged
  """

  def _layout(self, root: Path) -> list[Entry]:
    return casia_entries(root)


class ProvjaxColumbia(_Benchmark):
  """Columbia Uncompressed Image Splicing Detection.

  manual_dir/
    4cam_splc/*.tif                        spliced images
    4cam_splc/edgemask/<stem>_edgemask.*   colour masks: the spliced region is green
                                           (forged = green channel >= 128), the rest red
    4cam_auth/*.tif                        authentic images (their edgemask/ is unused)
  """

  def _layout(self, root: Path) -> list[Entry]:
    splc = _child(root, "4cam_splc")
    masks = {
        stem.removesuffix("_edgemask"): path
        for stem, path in _by_stem(_child(splc, "edgemask")).items()
    }
    forged = [
        Entry(p, 1, "splice", masks.get(p.stem), "green") for p in _images(splc, recursive=False)
    ]
    authentic = _images(_child(root, "4cam_auth"), recursive=False)
    return forged + [Entry(p, 0, "authentic") for p in authentic]


class ProvjaxCoverage(_Benchmark):
  """COVERAGE (copy-move).

  manual_dir/
    image/NNt.tif         forged images
    image/NN.tif          authentic images
    mask/NNforged.tif     masks of the pasted region, white = forged
                          (mask/NNcopy.tif and mask/NNpaste.tif are unused)
  """

  def _layout(self, root: Path) -> list[Entry]:
    masks = _by_stem(_child(root, "mask"))
    entries = []
    for path in _images(_child(root, "image")):
      forged = re.fullmatch(r"(\d+)t", path.stem)
      if forged:
        entries.append(Entry(path, 1, "copy_move", masks.get(f"{forged[1]}forged")))
      elif path.stem.isdigit():
        entries.append(Entry(path, 0, "authentic"))
    return entries


class ProvjaxNist16(_Benchmark):
  """NIST Nimble 2016 (NC2016), in a simple layout without NIST's reference.csv index.

  manual_dir/
    probe/...       forged images
    mask/...        one mask per probe, same stem, white = manipulated. NIST's own
                    reference masks mark manipulated pixels BLACK: invert them first
                    (the SPAN/MVSS-Net test subsets are usually shared already inverted)
    authentic/...   authentic images
  """

  def _layout(self, root: Path) -> list[Entry]:
    masks = _by_stem(_child(root, "mask"))
    forged = [Entry(p, 1, "forged", masks.get(p.stem)) for p in _images(_child(root, "probe"))]
    return forged + [Entry(p, 0, "authentic") for p in _images(_child(root, "authentic"))]


class ProvjaxDso1(_Benchmark):
  """DSO-1 (splicing, Carvalho et al.); its masks are inverted: BLACK = forged.

  manual_dir/
    images/splicing-XX.png    forged images   (or the archive's DSO-1/)
    images/normal-XX.png      authentic images
    masks/splicing-XX.png     masks, black = spliced (or DSO-1-Fake-Images-Masks/)
  """

  def _layout(self, root: Path) -> list[Entry]:
    masks = _by_stem(_child(root, "masks", "DSO-1-Fake-Images-Masks"))
    entries = []
    for path in _images(_child(root, "images", "DSO-1")):
      if path.stem.startswith("splicing"):
        entries.append(Entry(path, 1, "splice", masks.get(path.stem), "black"))
      elif path.stem.startswith("normal"):
        entries.append(Entry(path, 0, "authentic"))
    return entries


class ProvjaxCocoglide(_Benchmark):
  """CocoGlide (GLIDE inpainting of COCO val2017 images).

  manual_dir/
    fake/glide_inpainting_val2017_<id>_up.png   inpainted images
    mask/<class>_<id>_mask.png                  masks, white = inpainted, paired with the
                                                fake by the COCO <id> (table.csv is unused)
    real/<class>_<id>.png                       authentic images
  """

  def _layout(self, root: Path) -> list[Entry]:
    masks = {}
    for stem, path in _by_stem(_child(root, "mask")).items():
      match = re.search(r"_(\d+)_mask$", stem)
      if match:
        masks.setdefault(match[1], path)
    entries = []
    for path in _images(_child(root, "fake")):
      match = re.search(r"_(\d+)_up$", path.stem)
      entries.append(Entry(path, 1, "inpainting", masks.get(match[1]) if match else None))
    return entries + [Entry(p, 0, "authentic") for p in _images(_child(root, "real"))]


class ProvjaxForgeryFolder(_Benchmark):
  """Any folder of forgeries in the generic layout, and nothing else.

  Forgeries made by provjax itself (provjax.inpainting.fills writes SafePaint
  fills this way) or converted from any dataset. Kinds are b"forged" and
  b"authentic"; the single split is named `test` like every benchmark's, also
  when TruFor trains on it.
  """

  def _layout(self, root: Path) -> list[Entry]:
    return []  # the generic layout is tried first; there is no other


BENCHMARKS = {
    "casia1": ProvjaxCasia1,
    "casia2": ProvjaxCasia2,
    "columbia": ProvjaxColumbia,
    "coverage": ProvjaxCoverage,
    "nist16": ProvjaxNist16,
    "dso1": ProvjaxDso1,
    "cocoglide": ProvjaxCocoglide,
    "folder": ProvjaxForgeryFolder,
}


def builder(name: str, manual_dir: str | os.PathLike, *, data_dir: str | os.PathLike) -> _Benchmark:
  """The builder of benchmark `name` (a key of BENCHMARKS) over `manual_dir`."""
  if name not in BENCHMARKS:
    raise ValueError(f"unknown benchmark {name!r}; expected one of {', '.join(BENCHMARKS)}")
  config = BenchmarkConfig(manual_dir)
  data_dir = Path(data_dir).expanduser()
  return BENCHMARKS[name](config=config, data_dir=str(data_dir), file_format="array_record")


def load_benchmark(
    name: str, manual_dir: str | os.PathLike, *, data_dir: str | os.PathLike, split: str = SPLIT
):
  """Random-access source of benchmark `name` (prepared on first use); see decode_record."""
  b = builder(name, manual_dir, data_dir=data_dir)
  download_config = tfds.download.DownloadConfig(manual_dir=str(b.builder_config.manual_dir))
  return synthetic.prepared_source(b, split, download_config=download_config)
