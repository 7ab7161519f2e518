"""`provjax analyze IMAGE... [--index DIR] --out DIR`: every system of the zoo on each image.

For each image: provenance against a trusted gallery (SImProv, with --index),
forgery localization and integrity score (TruFor), real-vs-synthetic and
generator attribution (RepMix), and near-duplicate copy candidates among the
gallery's originals (CopyNCE, with --index). One JSON line per image on
stdout, one HTML page per image and an index page under --out.

Each system runs through its own package's API (nothing is re-implemented
here), its model loaded once per run, on chunks of images where its API
batches. A system the zoo cannot provide here (weights not released or not
installed, or its code cannot be imported) is reported as
`{"missing": why}` in its slot and on the page, never faked.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import os
from pathlib import Path
import shutil
import sys
import tempfile

import numpy as np

from provjax import weights
from provjax.data.images import failure_line, read_image
from provjax.viz import explain, pages
from provjax.viz.overlay import panel, resize, save_png

SLOTS = ("provenance", "forgery", "attribution", "copy")
COPY_TOP = 5
COPY_REFS = "copy_refs.npz"

EPILOG = """\
output: one line per IMAGE, in order, each a JSON object:
  path         the IMAGE argument as given
  page         DIR/<stem>.html, the image's page (null when it could not be read)
  provenance   with --index: verdict (benign / manipulated / distinct), match
               (the gallery original, or null when distinct), nearest (the best
               candidate: path, score, p_benign, p_manipulated, p_distinct),
               heatmap_png, heatmap_npy (null when distinct); null without --index
  forgery      TruFor: score (integrity score, 0 = pristine), map_npz (map, conf,
               score as `provjax detect` writes them), overlay_png
  attribution  RepMix: is_synthetic, p_real, source, probabilities
  copy         with --index: the top 5 gallery originals by CopyNCE descriptor
               similarity (id, path, score), references described, skipped
               (originals missing or changed since indexing); null without --index
  error        null, or why this image (or one system on it) failed
A system that is not available here has {"model", "missing": why} in its slot.
DIR/index.html links every page. The descriptors of the gallery's originals are
cached in DIR/copy_refs.npz and reused while the gallery holds the same content.

exit status: 0 every image analysed, 1 some image failed, 2 bad arguments.
"""


class BadArgument(ValueError):
  """A flag that cannot work (exit 2), found before any image is read."""


class Unavailable(Exception):
  """A system that cannot run here, for a reason found while loading it."""


def _constant(module: str, name: str):
  """A system CLI's DEFAULT_* constant; None when that system cannot be imported here."""
  try:
    return getattr(importlib.import_module(module), name)
  except ImportError:
    return None


# ---------------------------------------------------------------------------- output files


class Stage:
  """Files are written under a hidden folder inside --out, then renamed into place.

  A rename within one filesystem is atomic: a reader of --out sees a file
  whole or not at all, and what an earlier run wrote stays until replaced.
  """

  def __init__(self, out: Path):
    self.out = out
    self.dir = Path(tempfile.mkdtemp(prefix=".analyze-", dir=out))

  def commit(self, path) -> str:
    final = self.out / Path(path).name
    os.replace(path, final)
    return str(final)

  def png(self, image: np.ndarray, name: str) -> str:
    save_png(image, self.dir / name)
    return self.commit(self.dir / name)

  def close(self) -> None:
    shutil.rmtree(self.dir, ignore_errors=True)


def _fit(image: np.ndarray, longest: int) -> np.ndarray:
  """`image` shrunk (never enlarged) to at most `longest` pixels on its longer side."""
  h, w = image.shape[:2]
  scale = min(1.0, longest / max(h, w))
  return resize(image, max(1, round(h * scale)), max(1, round(w * scale)))


def unique_stems(paths: list[str]) -> list[str]:
  """A page name per image: its file stem, made unique (`coffee`, `coffee-2`, ...).

  `index` is the index page's, so an image of that name gets a suffix too.
  """
  bases = [Path(p).stem or "image" for p in paths]
  taken, out = {"index"}, []
  for base in bases:
    name, n = base, 1
    while name in taken or (name != base and name in bases):
      n += 1
      name = f"{base}-{n}"
    taken.add(name)
    out.append(name)
  return out


# ---------------------------------------------------------------------------- the systems


@dataclasses.dataclass
class Item:
  """One readable image on its way through the systems."""

  path: str
  stem: str
  image: np.ndarray
  record: dict
  errors: list[str] = dataclasses.field(default_factory=list)


class Missing:
  """A system the zoo cannot provide here: every image gets the reason, nothing else."""

  batched = True

  def __init__(self, key: str, header: dict, reason: str):
    self.key, self.header, self.reason = key, header, reason

  def many(self, items, stage):
    return [{**self.header, "missing": self.reason} for _ in items]


class Forgery:
  """TruFor at each image's native size (its API runs one image at a time)."""

  key, batched, module = "forgery", False, "provjax.forgery.detect"

  def __init__(self, name: str, max_pixels: int):
    import provjax
    from provjax.forgery.detect import Detector

    self.header = {"model": name}
    self.detector = Detector(provjax.load(name), max_pixels=max_pixels)

  def many(self, items, stage):
    from provjax.forgery.detect import write_outputs

    (item,) = items
    pred = self.detector(item.image)
    files = write_outputs(
        stage.dir, f"{item.stem}.forgery", item.image, pred, title=Path(item.path).name
    )
    return [{**self.header, "score": pred.score, **{k: stage.commit(v) for k, v in files.items()}}]


class Attribution:
  """RepMix on a chunk of images in one batch."""

  key, batched, module = "attribution", True, "provjax.attribution.attributor"

  def __init__(self, name: str, batch_size: int):
    from provjax.attribution.attributor import Attributor

    self.header = {"model": name}
    self.attributor = Attributor.load(name, batch_size=batch_size)

  def many(self, items, stage):
    return [{**self.header, **v} for v in self.attributor([it.image for it in items])]


class Provenance:
  """The SImProv engine over the gallery: one batched description and search per chunk."""

  key, batched, module = "provenance", True, "provjax.provenance.engine"

  def __init__(self, gallery, descriptor: str, comparator: str):
    import provjax
    from provjax.provenance.engine import Engine, Fusion

    if gallery.info.get("descriptor") not in (None, descriptor):
      raise BadArgument(
          f"the gallery was built with {gallery.info['descriptor']}, not {descriptor}: "
          f"pass --provenance-model {gallery.info['descriptor']} (or rebuild the index)"
      )
    self.header = {"model": descriptor, "comparator": comparator}
    fusion = Fusion.from_config(weights.read_config(comparator))
    models = provjax.load(descriptor), provjax.load(comparator)
    try:
      self.engine = Engine(gallery, *models, fusion=fusion)
    except ValueError as e:  # the gallery's thumbnails do not fit the comparator
      raise BadArgument(str(e)) from e

  def many(self, items, stage):
    from provjax.provenance.report import write_query_outputs

    slots = []
    for item, result in zip(items, self.engine.query_many([it.image for it in items])):
      files = write_query_outputs(stage.dir, f"{item.stem}.provenance", item.image, result)
      slots.append(
          {
              **self.header,
              "verdict": result.match["verdict"] if result.match else "distinct",
              "match": result.match,
              "nearest": result.candidates[0],
              "heatmap_png": stage.commit(files["heatmap_png"]),
              "heatmap_npy": files["heatmap_npy"] and stage.commit(files["heatmap_npy"]),
          }
      )
    return slots


def gallery_entries(gallery) -> list[tuple]:
  """(id, path, sha256) of every live gallery image, over all shards."""
  return [e for g in getattr(gallery, "shards", [gallery]) for e in g.index.live_entries()]


def _refs_key(model: str, entries: list[tuple]) -> str:
  """What the cached descriptors depend on: the copy model and the gallery's ids + contents."""
  digest = hashlib.sha256(model.encode())
  for id_, _, sha in sorted(entries, key=lambda e: e[0]):
    digest.update(f"\n{id_}:{sha}".encode())
  return digest.hexdigest()


def _read_original(path: str | None, sha256: str) -> np.ndarray | None:
  """A gallery original decoded, or None when it is gone, unreadable or changed since indexing."""
  try:
    data = Path(path).read_bytes() if path else b""
  except OSError:
    return None
  if not data or hashlib.sha256(data).hexdigest() != sha256:
    return None
  try:
    return read_image(data, name=path)
  except ValueError:
    return None


def copy_references(detector, model: str, gallery, cache: Path, *, progress: bool) -> dict:
  """Descriptors of the gallery's readable originals: from `cache` when it is current, else
  computed (in batches) and cached (atomically) for the next run."""
  from tqdm import tqdm

  entries = gallery_entries(gallery)
  # The thumbnail share changes every vector (`Protocol.thumbnail_weight`).
  key = _refs_key(f"{model} thumbnail share {detector.protocol.thumbnail_weight}", entries)
  if cache.is_file():
    with np.load(cache) as z:
      if str(z["key"]) == key:
        return {k: z[k] for k in ("ids", "paths", "vectors")} | {"skipped": int(z["skipped"])}
  ids, paths, vectors, skipped = [], [], [], 0
  bar = tqdm(total=len(entries), disable=not progress, file=sys.stderr, desc="copy refs")
  for start in range(0, len(entries), detector.batch_size):
    batch = entries[start : start + detector.batch_size]
    read = [(id_, path, _read_original(path, sha)) for id_, path, sha in batch]
    kept = [r for r in read if r[2] is not None]
    skipped += len(batch) - len(kept)
    ids += [r[0] for r in kept]
    paths += [r[1] for r in kept]
    if kept:
      vectors.append(detector.describe([r[2] for r in kept]))
    bar.update(len(batch))
  bar.close()
  refs = {
      "ids": np.asarray(ids, np.int64),
      "paths": np.asarray(paths, str),
      "vectors": np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32),
  }
  tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
  with open(tmp, "wb") as f:
    np.savez(f, key=np.asarray(key), skipped=np.asarray(skipped), **refs)
  os.replace(tmp, cache)
  return refs | {"skipped": skipped}


class Copy:
  """CopyNCE descriptors of each chunk searched against the gallery's originals."""

  key, batched, module = "copy", True, "provjax.copydetect.detector"

  def __init__(self, name: str, gallery, out: Path, batch_size: int, progress: bool):
    from provjax.copydetect.detector import CopyDetector

    # Descriptor similarity only (no matcher, no local-feature verification), k nearest per
    # image; the release's score normalisation needs a background set, which a gallery of
    # originals is not.
    self.detector = CopyDetector.load(
        name, matcher="", search="knn", k=COPY_TOP, score_norm="none", pcaw=0, verify=0
    )
    self.detector.batch_size = batch_size
    self.header, self.gallery = {"model": name}, gallery
    self.refs = copy_references(self.detector, name, gallery, out / COPY_REFS, progress=progress)
    if not len(self.refs["ids"]):
      raise Unavailable("none of the gallery's originals is readable here (moved or changed)")

  def many(self, items, stage):
    vectors, owner = self.detector.describe_queries([it.image for it in items])
    qi, ri, scores = self.detector.search(vectors, self.refs["vectors"], owner=owner)
    return [self._slot(it, ri[qi == n], scores[qi == n], stage) for n, it in enumerate(items)]

  def _slot(self, item, rows, scores, stage) -> dict:
    ids = self.refs["ids"][rows]
    candidates = [
        {"id": int(i), "path": str(self.refs["paths"][r]), "score": round(float(s), 6)}
        for i, r, s in zip(ids, rows, scores)
    ]
    thumbs = list(self.gallery.thumbs(ids))
    picture = panel(thumbs, [f"#{n + 1} {s:.2f}" for n, s in enumerate(scores)], height=128)
    return {
        **self.header,
        "candidates": candidates,
        "references": len(self.refs["ids"]),
        "skipped": self.refs["skipped"],
        "picture_png": stage.png(picture, f"{item.stem}.copy.png"),
    }


# ---------------------------------------------------------------------------- loading


def _unavailable(module: str, names: list[str]) -> str | None:
  """Why a system cannot run here (its code does not import, its weights are absent), or None."""
  try:
    importlib.import_module(module)
  except ImportError as e:
    return f"{module} cannot be imported here ({e})"
  for name in names:
    if name not in weights.released():
      return f"weights {name} are not released or not installed (looked in {weights.root()})"
  return None


def _system(cls, header: dict, *args):
  """`cls(*args)`, or a Missing system saying why it cannot run here."""
  reason = _unavailable(cls.module, list(header.values()))
  try:
    return Missing(cls.key, header, reason) if reason else cls(*args)
  except Unavailable as e:
    return Missing(cls.key, header, str(e))


def open_gallery(directory: str):
  """The --index gallery, or BadArgument when it is not a usable gallery."""
  from provjax.provenance.gallery import Gallery

  try:
    gallery = Gallery.open(directory)
  except (FileNotFoundError, ValueError) as e:
    raise BadArgument(f"--index {directory}: {e}") from e
  if not len(gallery):
    raise BadArgument(f"--index {directory}: the gallery holds no images")
  return gallery


def load_systems(args, gallery, out: Path) -> list:
  """Every system, each loaded once (or Missing); provenance and copy need a gallery."""
  a, found = args, []
  if gallery is not None:  # first: a gallery that does not fit is found before the rest loads
    header = {"model": a.provenance_model, "comparator": a.comparator_model}
    found.append(_system(Provenance, header, gallery, a.provenance_model, a.comparator_model))
  found.append(_system(Forgery, {"model": a.forgery_model}, a.forgery_model, a.max_pixels))
  found.append(
      _system(Attribution, {"model": a.attribution_model}, a.attribution_model, a.batch_size)
  )
  if gallery is not None:
    copy_args = (a.copy_model, gallery, out, a.batch_size, not a.no_progress)
    found.append(_system(Copy, {"model": a.copy_model}, *copy_args))
  return found


# ---------------------------------------------------------------------------- running


def _slots(system, items: list[Item], stage: Stage) -> list[dict]:
  """The system's slot for each item; an image it fails on gets an error slot, alone."""
  try:
    return system.many(items, stage)
  except Exception as e:  # pylint: disable=broad-exception-caught
    if len(items) > 1:  # find the image at fault: the others still get their results
      return [s for item in items for s in _slots(system, [item], stage)]
    return [{**system.header, "error": failure_line(items[0].path, e)}]


def _run(system, items: list[Item], stage: Stage) -> None:
  groups = [items] if system.batched else [[item] for item in items]
  for group in groups:
    if not group:
      continue
    for item, slot in zip(group, _slots(system, group, stage)):
      item.record[system.key] = slot
      if "error" in slot:
        item.errors.append(f"{system.key}: {slot['error']}")


def _record(path: str) -> dict:
  return {"path": path, "page": None, **{k: None for k in SLOTS}, "error": None}


# ---------------------------------------------------------------------------- pages


def write_page(item: Item, stage: Stage) -> dict:
  """The image's page and pictures; returns its index entry."""
  record, out = item.record, stage.out
  page = out / f"{item.stem}.html"
  image_png = stage.png(_fit(item.image, 768), f"{item.stem}.image.png")
  thumb_png = stage.png(_fit(item.image, 240), f"{item.stem}.thumb.png")
  h, w = item.image.shape[:2]
  image = {
      "title": "Image",
      "lines": [f"{w} x {h} pixels, read from {item.path}."],
      "pictures": [{"src": image_png, "caption": Path(item.path).name}],
  }
  parts = [explain.section(key, record[key]) for key in SLOTS]
  sections = [image] + [s for s, _ in parts]
  if record["error"]:
    sections.append({"title": "Errors", "lines": [record["error"]]})
  title = Path(item.path).name
  pages.write_text(page, pages.page_html(page, title, sections, home=out / "index.html"))
  record["page"] = str(page)
  return {
      "name": item.path,
      "page": str(page),
      "thumb": thumb_png,
      "figures": [f for _, f in parts],
      "error": record["error"],
  }


def write_index(out: Path, entries: list[dict]) -> None:
  failed = sum(bool(e["error"]) for e in entries)
  intro = f"{len(entries)} images analysed by every system of the zoo, {failed} with errors."
  path = out / "index.html"
  pages.write_text(path, pages.index_html(path, "provjax analyze", entries, intro))


# ---------------------------------------------------------------------------- command


def _read(path: str, max_pixels: int | None) -> np.ndarray:
  return read_image(path, max_pixels=max_pixels) if max_pixels else read_image(path)


def analyze_chunk(paths, stems, systems, stage: Stage, max_pixels, bar) -> list[tuple[dict, dict]]:
  """(record, index entry) of each image of one chunk; pages written."""
  records, items = [], []
  for path, stem in zip(paths, stems):
    records.append(_record(path))
    try:
      items.append(Item(path, stem, _read(path, max_pixels), records[-1]))
    except Exception as e:  # pylint: disable=broad-exception-caught
      records[-1]["error"] = failure_line(path, e)
  for system in systems:
    bar.set_postfix_str(system.key)  # a system's first image can take a while (compiling)
    _run(system, items, stage)
  pages_of = {}
  for item in items:
    item.record["error"] = "; ".join(item.errors) or None
    pages_of[id(item.record)] = write_page(item, stage)
  failed = lambda r: {"name": r["path"], "error": r["error"]}
  return [(r, pages_of.get(id(r)) or failed(r)) for r in records]


def cmd_analyze(args) -> int:
  from tqdm import tqdm

  out = Path(args.out)
  try:
    # The gallery and the models first: a wrong flag is found before any image is read.
    gallery = open_gallery(args.index) if args.index else None
    out.mkdir(parents=True, exist_ok=True)
    systems = load_systems(args, gallery, out)
  except BadArgument as e:
    print(f"provjax analyze: error: {e}", file=sys.stderr)
    return 2
  stems, entries, failed = unique_stems(args.images), [], 0
  stage = Stage(out)
  bar = tqdm(
      total=len(args.images),
      disable=args.no_progress,
      file=sys.stderr,
      desc="analyze",
      unit="image",
  )
  try:
    for start in range(0, len(args.images), args.batch_size):
      chunk = slice(start, start + args.batch_size)
      for record, entry in analyze_chunk(
          args.images[chunk], stems[chunk], systems, stage, args.max_pixels, bar
      ):
        if record["error"]:
          failed += 1
          bar.write(f"provjax analyze: {record['error']}", file=sys.stderr)
        print(json.dumps(record), flush=True)
        entries.append(entry)
      write_index(out, entries)  # after every chunk: an interrupted run keeps its pages linked
      bar.update(len(args.images[chunk]))
  finally:
    bar.close()
    stage.close()
  return 1 if failed else 0


def _positive(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
  return value


def _model_flag(p, flag: str, module: str, constant: str, what: str) -> None:
  default = _constant(module, constant)
  p.add_argument(flag, default=default, help=f"{what} weights (arch.tag; default {default})")


def add_command(sub) -> None:
  """Register `analyze` on the `provjax` subparsers."""
  p = sub.add_parser(
      "analyze",
      help="every system of the zoo on each image: JSON lines and one HTML page each",
      epilog=EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("images", nargs="+", metavar="IMAGE", help="images to analyse")
  p.add_argument(
      "--index",
      default=None,
      help="gallery folder made by `provjax index build` (provenance, copy)",
  )
  p.add_argument("--out", required=True, help="folder for the pages, pictures and maps")
  _model_flag(p, "--provenance-model", "provjax.provenance.cli", "DEFAULT_DESCRIPTOR", "SImProv")
  _model_flag(
      p, "--comparator-model", "provjax.provenance.cli", "DEFAULT_COMPARATOR", "SImProv comparator"
  )
  _model_flag(p, "--forgery-model", "provjax.forgery.cli", "DEFAULT_MODEL", "TruFor")
  _model_flag(p, "--attribution-model", "provjax.attribution.cli", "DEFAULT_MODEL", "RepMix")
  _model_flag(p, "--copy-model", "provjax.copydetect.cli", "DEFAULT_MODEL", "CopyNCE descriptor")
  p.add_argument(
      "--max-pixels",
      type=_positive,
      default=_constant("provjax.forgery.detect", "DEFAULT_MAX_PIXELS"),
      help="images with more pixels fail (TruFor runs at native size; default its limit)",
  )
  p.add_argument("--batch-size", type=_positive, default=16, help="images per chunk")
  p.add_argument("--json", action="store_true", help="JSON lines (always; the per-image contract)")
  p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
  p.set_defaults(fn=cmd_analyze)
