"""`provjax_forgery`: synthetic forgeries with exact masks, written as ArrayRecord by TFDS.

Training and held-back data for TruFor (specs/trufor.md section 6), made
offline. Record i of a split is authentic when i is even; odd records cycle
through splice, copy_move and removal (`kind_of`), so half the records are
authentic and the rest split evenly across the three edits. Each record is
made in three stages:

1. sources: a host image (a crop of one of the split's photos, or one of its
   procedural images) and, for a splice, a donor from ANOTHER photograph of
   the same split (or a procedural image of the split's seeds); each is first
   JPEG-compressed at a quality q1 in [65, 100] with probability 1/2, and half
   the donors are then rescaled by 0.6-1.6 (bilinear), as a pasted object
   usually is, so its pixels carry resampling traces the host lacks;
2. the edit (`edit`): a region of 2-30 % of the area (rectangle, ellipse or
   polygon, hard or feathered edge) is spliced from the donor (colour-matched
   to the host half the time), copy-moved within the image, or removed
   (`provjax.transforms.malicious`): half the removals are filled by
   push-pull inpainting with grain, half by copying the other part of the
   image whose surrounding ring matches best (an exemplar fill, as
   content-aware and clone tools do); the mask is exactly the pixels the edit
   changed;
3. post-processing (`postprocess`), drawn from its own random stream so
   authentic and forged images get it with the same distribution: a resize by
   0.5-1.0 (probability 1/2; the mask follows with nearest neighbours), then
   JPEG at a quality that differs from every earlier one (probability 0.7),
   else PNG. The image is stored in the format that last step wrote, so the
   file format says nothing about the label.

Splits are honest (`provjax.data.splits`): hosts and donors come only from the
record's own split, and every record names them (`source`, `donor`).
Records follow the agreed forgery record format: `image` (PNG or JPEG bytes),
`mask` (PNG of a uint8 mask, 255 = forged), `label` (1 forged), `name`,
`kind`, plus `source` and `donor`.
"""

from __future__ import annotations

from concurrent import futures
import dataclasses
import functools
import io
import multiprocessing
import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
import tensorflow_datasets as tfds

from provjax import transforms
from provjax.data import folder, photos, splits, synthetic
from provjax.data.images import encode_jpeg, encode_png, read_image

EDIT_KINDS = ("splice", "copy_move", "removal")
KINDS = ("authentic",) + EDIT_KINDS
_CYCLE = ("authentic", "splice", "authentic", "copy_move", "authentic", "removal")

AREA_RANGE = (0.02, 0.30)  # edited region, as a fraction of the image area
MIN_CHANGED = 0.01  # an edit changing less than this fraction is redrawn
PHOTO_PROBABILITY = 0.75  # hosts and donors: photo crops, else procedural images
SOURCE_JPEG_PROBABILITY = 0.5
FINAL_JPEG_PROBABILITY = 0.7
RESIZE_PROBABILITY = 0.5
RESIZE_RANGE = (0.5, 1.0)
QUALITY_RANGE = (65, 100)
DONOR_RESCALE_PROBABILITY = 0.5
DONOR_SCALE_RANGE = (0.6, 1.6)
SPLICE_MATCH_PROBABILITY = 0.5  # colour-matched splices; the others keep the donor's colours
EXEMPLAR_PROBABILITY = 0.5  # removals filled from the best-matching other part of the image
EXEMPLAR_TRIES = 32  # candidate shifts an exemplar fill compares
_CHUNK = 16  # records per task of a parallel build
PARALLEL_FROM = 1000  # training records from which `builder` uses every core by default
# Procedural donors use indices from here up, which no stored image of the split uses.
_DONOR_INDEX_BASE = 1 << 40
# Independent random streams per record: which sources, which edit, which post-processing.
_SOURCES, _EDIT, _POST = 0, 1, 2


def kind_of(index: int) -> str:
  """The kind of record `index` of any split: even authentic, odd cycling through the edits."""
  return _CYCLE[index % len(_CYCLE)]


def _stream(seed: int, split: str, index: int, purpose: int) -> np.random.Generator:
  return np.random.default_rng([seed, splits.SPLIT_ID[splits.check_split(split)], index, purpose])


# ----------------------------------------------------------------- sources ---


def draw_source(
    rng: np.random.Generator,
    split: str,
    resolution: int,
    seed: int,
    procedural_index: int,
    pool,
    *,
    exclude: str | None = None,
) -> tuple[str, np.ndarray]:
  """(source id, image) of `split`: a photo crop, else its procedural image `procedural_index`.

  Args:
    rng: draws the choice and the crop.
    split: the split whose sources may be used.
    resolution: output side in pixels.
    seed: the dataset seed (part of every procedural seed).
    procedural_index: which of the split's procedural images to use when no photo is taken.
    pool: the split's (group, photo) pairs (splits.photo_pool).
    exclude: a source id whose photo group must not be used (the splice host).
  """
  choices = [p for p in pool if splits.photo_source(p[0]) != exclude]
  if choices and rng.random() < PHOTO_PROBABILITY:
    group, image = photos.photo_crop(rng, resolution, pool=choices)
    return splits.photo_source(group), image
  image = photos.procedural_image(splits.procedural_rng(seed, split, procedural_index), resolution)
  return splits.procedural_source(seed, split, procedural_index), image


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
  """The pixels a JPEG file of `image` at `quality` decodes to."""
  return read_image(encode_jpeg(image, quality))


def donor_scale(rng: np.random.Generator) -> float:
  """The splice donor's rescale factor: 1 (not rescaled) or one drawn from DONOR_SCALE_RANGE."""
  if rng.random() >= DONOR_RESCALE_PROBABILITY:
    return 1.0
  return float(rng.uniform(*DONOR_SCALE_RANGE))


def rescale(rng: np.random.Generator, image: np.ndarray, factor: float, size: int) -> np.ndarray:
  """`image` resized by `factor` (bilinear), then a random `size` x `size` window of it."""
  if factor != 1.0:
    side = max(size, round(image.shape[0] * factor))
    image = np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR))
  top, left = (int(rng.integers(image.shape[i] - size + 1)) for i in (0, 1))
  return image[top : top + size, left : left + size]


def maybe_compress(rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, int | None]:
  """JPEG round trip at q1 in QUALITY_RANGE with SOURCE_JPEG_PROBABILITY; (image, q1 or None)."""
  if rng.random() >= SOURCE_JPEG_PROBABILITY:
    return image, None
  quality = int(rng.integers(QUALITY_RANGE[0], QUALITY_RANGE[1] + 1))
  return jpeg_roundtrip(image, quality), quality


# -------------------------------------------------------------------- edits ---


def ring(region: np.ndarray, width: int) -> np.ndarray:
  """The band of `width` pixels around `region` (outside it); the complement if that is empty."""
  band = ndimage.binary_dilation(region, iterations=width) & ~region
  return band if band.any() else ~region


def match_colour(donor: np.ndarray, donor_region: np.ndarray, reference: np.ndarray) -> np.ndarray:
  """`donor` with its `donor_region` pixels' per-channel mean/std set to those of `reference`.

  Args:
    donor: HxWx3 uint8.
    donor_region: HxW bool, the donor pixels that will be pasted.
    reference: Nx3 host pixels the pasted content should look like.

  A flat donor region (std under one grey level) is only shifted, not
  stretched, so it does not turn into amplified noise.
  """
  values = donor.astype(np.float32)
  src = values[donor_region]
  mu_s, sd_s = src.mean(0), src.std(0)
  mu_r, sd_r = reference.astype(np.float32).mean(0), reference.astype(np.float32).std(0)
  gain = np.where(sd_s > 1.0, sd_r / np.maximum(sd_s, 1.0), 1.0)
  return np.clip(np.rint((values - mu_s) * gain + mu_r), 0, 255).astype(np.uint8)


def random_offset(rng: np.random.Generator, region: np.ndarray) -> tuple[int, int]:
  """(dy, dx) such that `region` shifted by it stays inside the frame."""
  ys, xs = np.nonzero(region)
  h, w = region.shape
  return int(rng.integers(-ys.min(), h - ys.max())), int(rng.integers(-xs.min(), w - xs.max()))


def _splice(host, rng, donor, region):
  """A splice of `donor` into `region`, colour-matched with SPLICE_MATCH_PROBABILITY.

  A matched donor region takes the host's statistics around the region; an
  unmatched one keeps its own colours, as a careless paste does.
  """
  dy, dx = random_offset(rng, region)
  if rng.random() < SPLICE_MATCH_PROBABILITY:
    ys, xs = np.nonzero(region)
    donor_region = np.zeros_like(region)
    donor_region[ys + dy, xs + dx] = True
    width = max(3, min(region.shape) // 16)
    donor = match_colour(donor, donor_region, host[ring(region, width)])
  e = transforms.splice(transforms.identity(host), rng, donor, region=region, offset=(dy, dx))
  return e.image


def exemplar_offset(image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> tuple:
  """The (dy, dx), of EXEMPLAR_TRIES drawn, whose source best continues the ring around `region`.

  Output pixel (y, x) would take (y + dy, x + dx), as in transforms.copy_move;
  shifts whose source overlaps the region by more than a quarter are skipped.
  """
  band = ring(region, 4)
  values = image.astype(np.float32)
  best, cost = None, np.inf
  for _ in range(EXEMPLAR_TRIES):
    dy, dx = random_offset(rng, region)
    if (region & np.roll(region, (-dy, -dx), axis=(0, 1))).sum() > 0.25 * region.sum():
      continue
    source = np.roll(values, (-dy, -dx), axis=(0, 1))
    c = float(np.mean((source[band] - values[band]) ** 2))
    if c < cost:
      best, cost = (dy, dx), c
  return best or random_offset(rng, region)


def _apply_edit(host, kind, rng, donor):
  region = transforms.region_mask(rng, host.shape[:2], AREA_RANGE)
  if kind == "splice":
    return _splice(host, rng, donor, region)
  e = transforms.identity(host)
  if kind == "copy_move":
    return transforms.copy_move(e, rng, region=region).image
  if rng.random() < EXEMPLAR_PROBABILITY:
    offset = exemplar_offset(host, region, rng)
    return transforms.copy_move(e, rng, region=region, offset=offset).image
  return transforms.remove(e, rng, region=region).image


def edit(
    host: np.ndarray, kind: str, rng: np.random.Generator, donor: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """One edit of `kind` (splice needs `donor`, same size as `host`), before post-processing.

  Returns:
    (edited HxWx3 uint8, mask HxW bool): the mask is True exactly where the
    edited pixels differ from `host`. An edit that changes under MIN_CHANGED
    of the image (a copy-move within a flat area) is redrawn, up to 10 times.
  """
  if kind not in EDIT_KINDS:
    raise ValueError(f"unknown edit {kind!r}; expected one of {EDIT_KINDS}")
  if kind == "splice" and donor is None:
    raise ValueError("a splice needs a donor image")
  for _ in range(10):
    edited = _apply_edit(host, kind, rng, donor)
    mask = np.any(edited != host, axis=-1)
    if mask.mean() >= MIN_CHANGED:
      break
  return edited, mask


# ---------------------------------------------------------- post-processing ---


@dataclasses.dataclass(frozen=True)
class Stored:
  """What post-processing wrote: the file, its format, and the mask in its frame."""

  data: bytes
  format: str  # "jpeg" | "png"
  mask: np.ndarray  # HxW bool
  quality: int | None  # the final JPEG quality, None for PNG
  scale: float | None  # the resize factor, None when not resized


def _resize(image, mask, factor):
  """Both sides times `factor`, snapped to multiples of 8.

  Snapping keeps the number of distinct image sizes small (each is one
  compilation when full images are evaluated) and the same for every kind.
  """
  h, w = mask.shape
  size = (max(8, round(w * factor / 8) * 8), max(8, round(h * factor / 8) * 8))
  image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
  mask = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
  return image, mask


def postprocess(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, earlier=()
) -> Stored:
  """Optional resize, then JPEG at a quality not in `earlier` (p=0.7) or PNG.

  Every draw comes from `rng` in the same order whatever the image, so an
  authentic and a forged record given equal streams get equal treatment.
  """
  resize = rng.random() < RESIZE_PROBABILITY
  factor = float(rng.uniform(*RESIZE_RANGE))
  compress = rng.random() < FINAL_JPEG_PROBABILITY
  qualities = [q for q in range(QUALITY_RANGE[0], QUALITY_RANGE[1] + 1) if q not in set(earlier)]
  quality = int(qualities[rng.integers(len(qualities))])
  if resize:
    image, mask = _resize(image, mask, factor)
  if compress:
    return Stored(encode_jpeg(image, quality), "jpeg", mask, quality, factor if resize else None)
  return Stored(encode_png(image), "png", mask, None, factor if resize else None)


# ------------------------------------------------------------------ records ---


@dataclasses.dataclass(frozen=True)
class Forgery:
  """One record with its intermediate stages (tests check masks on `host`/`edited`)."""

  name: str
  kind: str
  source: str  # the host's source id (splits.photo_source / procedural_source)
  donor: str  # the donor's source id; "" unless a splice
  host: np.ndarray  # HxWx3 uint8 after the source JPEG, before the edit
  edited: np.ndarray  # HxWx3 uint8 after the edit (the host itself if authentic)
  mask: np.ndarray  # HxW bool, pixels the edit changed (before post-processing)
  stored: Stored

  def record(self) -> dict:
    """The TFDS record (agreed forgery record format + `source` and `donor`)."""
    return {
        "image": self.stored.data,
        "mask": encode_png(self.stored.mask.astype(np.uint8) * 255),
        "label": np.int64(self.kind != "authentic"),
        "name": self.name.encode(),
        "kind": self.kind.encode(),
        "source": self.source.encode(),
        "donor": self.donor.encode(),
    }


def make_forgery(split: str, index: int, resolution: int, seed: int = 0, *, pool) -> Forgery:
  """Record `index` of `split`; a pure function of (split, index, resolution, seed, pool).

  Args:
    split: one of splits.SPLITS; hosts and donors come only from it.
    index: the record number (its kind is `kind_of(index)`).
    resolution: side of the host (and donor) before post-processing.
    seed: the dataset seed.
    pool: the split's photos, splits.photo_pool(split, photo_dir).
  """
  kind = kind_of(index)
  rng = _stream(seed, split, index, _SOURCES)
  source, host = draw_source(rng, split, resolution, seed, index, pool)
  host, q_host = maybe_compress(rng, host)
  earlier, donor_source = [q_host], ""
  if kind == "authentic":
    edited, mask = host, np.zeros(host.shape[:2], bool)
  else:
    donor = None
    if kind == "splice":
      procedural = _DONOR_INDEX_BASE + index
      factor = donor_scale(rng)
      # Drawn large enough that the rescaled donor still covers the host.
      side = int(np.ceil(resolution / min(factor, 1.0)))
      donor_source, donor = draw_source(rng, split, side, seed, procedural, pool, exclude=source)
      donor, q_donor = maybe_compress(rng, donor)
      donor = rescale(rng, donor, factor, resolution)
      earlier.append(q_donor)
    edited, mask = edit(host, kind, _stream(seed, split, index, _EDIT), donor)
  stored = postprocess(
      edited, mask, _stream(seed, split, index, _POST), earlier=[q for q in earlier if q]
  )
  return Forgery(f"{split}-{index:06d}", kind, source, donor_source, host, edited, mask, stored)


@functools.lru_cache(maxsize=1)
def _worker_pool(split: str, photo_dir: str | None):
  return splits.photo_pool(split, photo_dir)  # once per worker process, not per chunk


def _make_records(split, indices, resolution, seed, photo_dir) -> list[dict]:
  """Records `indices` of `split`, made in a worker process."""
  pool = _worker_pool(split, photo_dir)
  return [make_forgery(split, i, resolution, seed, pool=pool).record() for i in indices]


def generate_records(
    split: str,
    count: int,
    resolution: int,
    seed: int = 0,
    *,
    photo_dir: str | None = None,
    workers: int = 1,
):
  """The first `count` records of `split` (dicts, see `Forgery.record`), in order.

  Each record is a pure function of its index, so `workers` > 1 processes make
  chunks of them in parallel with the same result (spawned, not forked: the
  parent may hold JAX's threads).
  """
  chunks = [range(s, min(s + _CHUNK, count)) for s in range(0, count, _CHUNK)]
  if workers <= 1 or len(chunks) < 2:
    pool = splits.photo_pool(split, photo_dir)
    for i in range(count):
      yield make_forgery(split, i, resolution, seed, pool=pool).record()
    return
  context = multiprocessing.get_context("spawn")
  with futures.ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context) as executor:
    args = [(split, c, resolution, seed, photo_dir) for c in chunks]
    for records in executor.map(_make_records, *zip(*args)):
      yield from records


def decode_mask(data: bytes) -> np.ndarray:
  """HxW bool from a record's `mask` PNG bytes (True = forged)."""
  with Image.open(io.BytesIO(bytes(data))) as im:
    return np.asarray(im.convert("L")) > 127


# ----------------------------------------------------------------- the TFDS builder ---

_SPLITS = ("train", "test")


class ForgeryConfig(tfds.core.BuilderConfig):
  """Resolution, record counts, seed and photo folder; the name encodes them all."""

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
        name=name, description=f"forgeries of {photo_dir or 'the bundled photos'} + procedural"
    )
    self.resolution, self.num_train, self.num_test = resolution, num_train, num_test
    self.seed, self.photo_dir = seed, photo_dir


def _bytes_feature():
  return tfds.features.Tensor(shape=(), dtype=np.object_)


class ProvjaxForgery(tfds.core.GeneratorBasedBuilder):
  """Synthetic forgeries for TruFor training and evaluation (see module docstring)."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "Splice / copy_move / removal with exact masks, honest splits.",
      "1.1.0": "Rescaled donors, splices without colour matching, exemplar-filled removals.",
  }
  workers = 1  # processes making the records; `builder` sets one per core

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo directly: `dataset_info_from_configs` reads package metadata files.
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        # Record i stays at index i, so its kind is `kind_of(i)` without reading it
        # (class-balanced sampling); training pipelines shuffle anyway.
        disable_shuffling=True,
        features=tfds.features.FeaturesDict(
            {
                "image": _bytes_feature(),  # PNG or JPEG bytes, as the last step wrote them
                "mask": _bytes_feature(),  # PNG of a uint8 mask, 255 = forged
                "label": tfds.features.Tensor(shape=(), dtype=np.int64),
                "name": _bytes_feature(),
                "kind": _bytes_feature(),  # b"authentic" | b"splice" | b"copy_move" | b"removal"
                "source": _bytes_feature(),  # the host's source id (splits.py)
                "donor": _bytes_feature(),  # the splice donor's source id, b"" otherwise
            }
        ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: every image is made here
    return {split: self._generate_examples(split) for split in _SPLITS}

  def _generate_examples(self, split: str):
    cfg = self.builder_config
    count = cfg.num_train if split == "train" else cfg.num_test
    records = generate_records(
        split, count, cfg.resolution, cfg.seed, photo_dir=cfg.photo_dir, workers=self.workers
    )
    yield from enumerate(records)


def builder(
    data_dir: str | Path,
    *,
    resolution: int,
    count: int,
    seed: int = 0,
    test_fraction: float = 0.1,
    photo_dir: str | None = None,
) -> ProvjaxForgery:
  """The builder for `count` training records (+ a held-back test split of at least 48).

  Builds of `PARALLEL_FROM` records or more make them in one process per core
  (starting processes costs seconds); the data do not depend on it.
  """
  config = ForgeryConfig(
      resolution=resolution,
      num_train=count,
      num_test=max(48, int(count * test_fraction)),
      seed=seed,
      photo_dir=os.path.expanduser(photo_dir) if photo_dir else None,
  )
  b = ProvjaxForgery(config=config, data_dir=str(data_dir), file_format="array_record")
  b.workers = (os.cpu_count() or 1) if count >= PARALLEL_FROM else 1
  return b


def load_source(
    split: str,
    *,
    data_dir: str | Path,
    resolution: int,
    count: int,
    seed: int = 0,
    photo_dir: str | None = None,
):
  """Random-access source of `split` (prepared on first use); records as in `Forgery.record`."""
  b = builder(data_dir, resolution=resolution, count=count, seed=seed, photo_dir=photo_dir)
  return synthetic.prepared_source(b, split)


def source_from_config(data_config, split: str):
  """`load_source` with the `config.data` fields of the TruFor configs."""
  d = data_config
  return load_source(
      split,
      data_dir=os.path.expanduser(d.data_dir),
      resolution=d.resolution,
      count=d.count,
      seed=d.seed,
      photo_dir=d.get("photo_dir"),
  )
