"""`provjax eval psbattles`: SImProv's search and re-ranking on PSBattles photoshops.

The retrieval experiment of specs/simprov.md (sections 1 and 2.11) on a split
of the PSBattles builder (provjax.data.psbattles): a temporary gallery holds
the split's originals (descriptors of --descriptor, thumbnails at --comparator's
input size, as `provjax index build` stores them), and every photoshop of the
split queries the engine (`provjax query`'s three stages, --k candidates
re-ranked). A query's truth is its original and its kind "manipulated"
(every photoshop is one). One JSON object is printed and its figures are
appended as results rows (benchmark "psbattles"):

  pairs, originals         queries, and gallery images (the split's distinct originals)
  search R@{1,5,10,100}    the original among the descriptor's first N (of --k)
  re-ranked R@{1,5,10,100} the original among the first N after the comparator's re-ranking
  verdict acc              the best match is the original and is judged "manipulated"
  heatmap IoU              the spec's IoU (threshold 80/255 at 1024 px) of the best match's
                           7x7 map against the boxes' map, over the photoshops with boxes

The heatmap needs ground-truth boxes, which PSBattles itself does not ship
(ICN's come from three MTurk rounds, mturk_res/tu_{1,2,3}.csv): give them
with --boxes CSV, header photoshop,left,top,width,height, one row per box,
`photoshop` the pair CSV's path or the file name, and the box in fractions
(0..1) of the image's width and height. Boxes are rasterised as ICN does
(`box_heatmap`). Without boxes IoU is omitted, and the report's `omitted`
field and a line on stderr say so.

The gallery holds the split's originals only (the spec's 2 M adds stock
distractors), so recall here is an upper bound of a larger database's; a
small --limit makes it easier still. The search and the verdict are the
engine's own, so the figures are what `provjax query` would answer.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
import sys
import tempfile

import numpy as np

from provjax.provenance.cli import DEFAULT_COMPARATOR, DEFAULT_DESCRIPTOR, _at_least

BENCHMARK = "psbattles"
RECALL_AT = (1, 5, 10, 100)
BOX_COLUMNS = ("photoshop", "left", "top", "width", "height")
DEFAULT_DATA_DIR = "~/.cache/provjax/tensorflow_datasets"
CHUNK = 16  # images decoded at a time: PSBattles photos run to tens of megapixels


# ------------------------------------------------------------------ flags ---


def add_evals(p) -> dict:
  """`provjax eval psbattles`: its flags on the runner's `eval` parser; {name: (fn, summary)}."""
  group = p.add_argument_group(
      "eval psbattles",
      "SImProv on PSBattles: a gallery of the split's originals, each photoshop a query; "
      "prints search and re-ranked recall@{1,5,10,100}, verdict accuracy (and heatmap IoU "
      "with --boxes) as JSON",
  )
  group.add_argument("--manual-dir", metavar="DIR", help="the PSBattles folder")
  group.add_argument("--split", default="test", help="pair CSV <split>_pairs.csv (default test)")
  group.add_argument("--limit", type=_at_least(1), metavar="N", help="the first N pairs only")
  group.add_argument(
      "--descriptor", default=DEFAULT_DESCRIPTOR, help=f"default {DEFAULT_DESCRIPTOR}"
  )
  group.add_argument(
      "--comparator", default=DEFAULT_COMPARATOR, help=f"default {DEFAULT_COMPARATOR}"
  )
  group.add_argument("--k", type=_at_least(1), default=100, help="candidates re-ranked (100)")
  group.add_argument("--boxes", metavar="CSV", help="ground-truth boxes per photoshop (IoU)")
  group.add_argument("--data-dir", metavar="DIR", default=DEFAULT_DATA_DIR, help="prepared data")
  return {BENCHMARK: (cmd_eval_psbattles, "SImProv on PSBattles photoshops (manual_dir)")}


def _check_arch(name: str, arch: str, flag: str) -> None:
  """A bad argument unless released weights `name` are of architecture `arch`."""
  from provjax.weights import read_config

  found = read_config(name)["arch"].split(".")[0]
  if found != arch:
    raise ValueError(f"eval psbattles: {flag} {name} is a {found}, not {arch}.TAG weights")


# ---------------------------------------------------------------- scoring ---


def read_boxes(path: str | Path) -> dict[str, list[tuple[float, ...]]]:
  """{photoshop file name: [(left, top, width, height), ...]} of a boxes CSV (fractions).

  Raises:
    ValueError: for a header without the columns, or a value that is not a number.
  """
  out: dict[str, list[tuple[float, ...]]] = {}
  with open(path, newline="", encoding="utf-8") as handle:
    reader = csv.DictReader(handle)
    missing = [c for c in BOX_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
      raise ValueError(
          f"{path}: header lacks {', '.join(missing)}; expected {','.join(BOX_COLUMNS)}"
      )
    for row in reader:
      try:
        box = tuple(float(row[c]) for c in BOX_COLUMNS[1:])
      except (TypeError, ValueError) as e:
        raise ValueError(f"{Path(path).name}:{reader.line_num}: a box value is not a number") from e
      out.setdefault(Path(row["photoshop"].strip()).name, []).append(box)
  return out


def box_heatmap(boxes, grid: int = 7) -> np.ndarray:
  """ICN's heatmap target of boxes (AlexBlck/icn:src/dataset.py, specs/simprov.md 2.9).

  Each box adds the fraction of every grid cell it covers; the sum over boxes
  (and so over annotators) is divided by its maximum. Boxes are
  (left, top, width, height) in fractions of the image.
  """
  cells = np.arange(grid, dtype=np.float64)
  out = np.zeros((grid, grid))
  for left, top, width, height in boxes:
    cover = lambda start, size: np.clip(
        np.minimum(cells + 1, (start + size) * grid) - np.maximum(cells, start * grid), 0, 1
    )
    out += np.outer(cover(top, height), cover(left, width))
  peak = out.max()
  return (out / peak if peak > 0 else out).astype(np.float32)


def _rank(ids, truth: int) -> int | None:
  hits = np.flatnonzero(np.asarray(ids) == truth)
  return int(hits[0]) + 1 if hits.size else None


def score(result, truth: int, boxes=None) -> dict:
  """One photoshop's outcome: its original's rank before and after re-ranking, the verdict
  (right only on the right original, as provenance.evaluate counts it), IoU with boxes."""
  from provjax.metrics.heatmap import heatmap_iou

  verdict = result.match["verdict"] if result.match else "distinct"
  row = {
      "verdict": verdict,
      "search_rank": _rank(result.search_ids, truth),
      "rerank_rank": _rank([c["id"] for c in result.candidates], truth),
  }
  row["correct"] = verdict == "manipulated" and row["rerank_rank"] == 1
  if boxes:
    gt = box_heatmap(boxes, result.grid_heatmap.shape[0])
    row["iou"] = heatmap_iou(result.grid_heatmap, gt)
  return row


def summarize(rows: list[dict]) -> dict:
  """Recall before and after re-ranking, verdict accuracy and (where scored) heatmap IoU."""
  out = {}
  for stage, key in (("search", "search_rank"), ("re-ranked", "rerank_rank")):
    for k in RECALL_AT:
      out[f"{stage} R@{k}"] = float(np.mean([r[key] is not None and r[key] <= k for r in rows]))
  out["verdict acc"] = float(np.mean([r["correct"] for r in rows]))
  scored = [r["iou"] for r in rows if "iou" in r]
  if scored:
    out["heatmap IoU"] = float(np.mean(scored))
    out["heatmap pairs"] = len(scored)
  return out


# ----------------------------------------------------------------- running ---


def _field(record, key: str) -> str:
  return bytes(record[key]).decode()


def gallery_plan(original_paths: list[str]) -> tuple[list[int], list[int]]:
  """(gallery id of each pair's original, the first pair of each original): an original
  with several photoshops enters the gallery once."""
  ids: dict[str, int] = {}
  truth, first = [], []
  for n, path in enumerate(original_paths):
    if path not in ids:
      ids[path] = len(first)
      first.append(n)
    truth.append(ids[path])
  return truth, first


def _small(record, sizes: tuple[int, ...]) -> list[np.ndarray]:
  """An original decoded and resized to each size (the full image is dropped at once)."""
  from provjax.data.images import read_image
  from provjax.viz.overlay import resize

  image = read_image(bytes(record["original"]), name=_field(record, "original_path"))
  return [resize(image, s, s) for s in sizes]


def build_gallery(directory, source, pairs: list[int], describer, thumb_size: int, bar):
  """A gallery in `directory` of the originals of `source`'s records `pairs` (ids 0..n-1,
  in order): descriptors and thumbnails, CHUNK originals at a time.

  Records are read as needed, never held: a split's bytes can exceed memory.
  """
  from provjax.provenance.gallery import Gallery

  gallery = None
  for i in range(0, len(pairs), CHUNK):
    part = [source[n] for n in pairs[i : i + CHUNK]]
    small = [_small(r, (describer.size, thumb_size)) for r in part]
    vectors = describer([s[0] for s in small])
    if gallery is None:
      gallery = Gallery.create(
          directory,
          dim=vectors.shape[1],
          thumb_size=thumb_size,
          descriptor=BENCHMARK,
          backend="exact",
          thumbnail_weight=describer.thumbnail_weight,
      )
    paths = [_field(r, "original_path") for r in part]
    gallery.add(vectors, np.stack([s[1] for s in small]), paths, [None] * len(part))
    bar.update(len(part))
  return gallery


def run_queries(engine, source, truth: list[int], boxes: dict, bar) -> list[dict]:
  """`score` of the photoshops of `source`'s first len(truth) records, CHUNK per batched search."""
  from provjax.data.images import read_image

  rows = []
  for i in range(0, len(truth), CHUNK):
    part = [source[n] for n in range(i, min(i + CHUNK, len(truth)))]
    images = [read_image(bytes(r["photoshop"]), name=_field(r, "photoshop_path")) for r in part]
    for n, (record, result) in enumerate(zip(part, engine.query_many(images))):
      name = Path(_field(record, "photoshop_path")).name
      rows.append(score(result, truth[i + n], boxes.get(name)))
    bar.update(len(part))
  return rows


def evaluate(
    source,
    descriptor,
    comparator,
    *,
    fusion,
    k: int,
    limit,
    boxes,
    progress=False,
    thumbnail_weight: float = 0.0,
):
  """The report's figures for the first `limit` pairs of `source` (all when None);
  `thumbnail_weight` is the descriptor release's search mix (engine.Describer)."""
  from tqdm import tqdm

  from provjax.provenance.engine import Describer, Engine

  count = len(source) if limit is None else min(limit, len(source))
  if not count:
    raise ValueError("eval psbattles: the split has no usable pairs")
  truth, first = gallery_plan([_field(source[i], "original_path") for i in range(count)])
  bar = lambda total, desc: tqdm(total=total, disable=not progress, file=sys.stderr, desc=desc)
  size = int(comparator.image_size)  # the engine compares thumbnails at its input size
  with tempfile.TemporaryDirectory() as tmp:
    with bar(len(first), "gallery") as b:
      describer = Describer(descriptor, thumbnail_weight=thumbnail_weight)
      gallery = build_gallery(tmp, source, first, describer, size, b)
    engine = Engine(gallery, descriptor, comparator, k=k, fusion=fusion)
    with bar(count, "queries") as b:
      rows = run_queries(engine, source, truth, boxes, b)
  return {"pairs": count, "originals": len(first), **summarize(rows)}


def result_rows(report: dict, label: str, comparator: str) -> list[dict]:
  """The report as results rows of `label`; what the comparator decides names it in the metric
  (`<comparator>/re-ranked R@1`), as `eval inpainting` names its detector."""
  from provjax import results

  metrics = {}
  for key in ("pairs", "originals", "k", *(f"search R@{k}" for k in RECALL_AT)):
    metrics[key] = report[key]
  decided = (
      *(f"re-ranked R@{k}" for k in RECALL_AT),
      "verdict acc",
      "heatmap IoU",
      "heatmap pairs",
  )
  for key in decided:
    if key in report:
      metrics[f"{comparator}/{key}"] = report[key]
  return results.rows_from_metrics(label, report["split"], metrics)


def cmd_eval_psbattles(args) -> int:
  import provjax
  from provjax import results
  from provjax.data import psbattles
  from provjax.provenance.engine import Fusion, thumbnail_weight
  from provjax.weights import read_config

  get = lambda dest: getattr(args, dest)
  if not get("manual_dir"):
    raise ValueError("eval psbattles needs --manual-dir DIR (the PSBattles folder)")
  model, comparator_name = get("descriptor"), get("comparator")
  # Both models and the boxes first: a wrong name is a bad argument, found before any data.
  _check_arch(model, "simprov", "--descriptor")
  _check_arch(comparator_name, "simprov_comparator", "--comparator")
  boxes = read_boxes(get("boxes")) if get("boxes") else {}
  descriptor, comparator = provjax.load(model), provjax.load(comparator_name)
  fusion = Fusion.from_config(read_config(comparator_name))
  source = psbattles.load(get("manual_dir"), data_dir=get("data_dir"), split=get("split"))
  figures = evaluate(
      source,
      descriptor,
      comparator,
      fusion=fusion,
      k=get("k"),
      limit=get("limit"),
      boxes=boxes,
      progress=not getattr(args, "no_progress", False),
      thumbnail_weight=thumbnail_weight(model),
  )
  report = {
      "benchmark": BENCHMARK,
      "split": get("split"),
      "model": model,
      "comparator": comparator_name,
      "k": get("k"),
      **figures,
  }
  if "heatmap IoU" not in report:
    why = "no ground-truth boxes given (--boxes CSV)" if not boxes else "no photoshop has boxes"
    report["omitted"] = {"heatmap IoU": why}
    print(f"provjax eval: heatmap IoU omitted: {why}", file=sys.stderr)
  print(json.dumps(report), flush=True)
  label = getattr(args, "label", None) or model
  results.record(args, BENCHMARK, result_rows(report, label, comparator_name))
  return 0
