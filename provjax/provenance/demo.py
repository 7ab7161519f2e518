"""`provjax demo`: the main job end to end on embedded data.

Builds a trusted gallery from the photographs bundled with scikit-image,
scikit-learn and matplotlib plus procedural distractors, makes benign,
manipulated and unrelated queries with exact ground truth, runs the engine,
prints a metrics table and writes an HTML report with the pictures.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
import sys

import numpy as np
from PIL import Image

import provjax
from provjax.data import photos, splits
from provjax.data.images import read_image
from provjax.provenance import evaluate
from provjax.provenance.build import build_gallery
from provjax.provenance.engine import Describer, Engine, Fusion, thumbnail_weight
from provjax.provenance.gallery import Gallery
from provjax.provenance.report import write_query_outputs
from provjax.retrieval.metadata import sha256_file
from provjax.weights import read_config

COLUMNS = [
    "queries",
    "n",
    "search R@1",
    "re-ranked R@1",
    "re-ranked R@10",
    "verdict acc",
    "heatmap IoU",
    "emptiness",
]


def _fit(image: np.ndarray, longest: int = 384) -> np.ndarray:
  h, w = image.shape[:2]
  scale = min(1.0, longest / max(h, w))
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def write_gallery(folder: Path, n_distractors: int, rng) -> list[Path]:
  """Sample photos (the originals to find) + procedural distractors, as PNG files.

  The distractors are the "distractors" split's procedural seeds (splits.py), so
  they are no training image; the released weights never saw the bundled photos.
  """
  folder.mkdir(parents=True, exist_ok=True)
  originals = []
  for name, image in photos.sample_photos():
    path = folder / f"photo-{name}.png"
    Image.fromarray(_fit(image)).save(path)
    originals.append(path)
  for n in range(n_distractors):
    path = folder / f"distractor-{n:05d}.png"
    size = int(rng.integers(128, 257))  # drawn even if cached: later draws stay the same
    if not path.exists():
      image = photos.procedural_image(splits.procedural_rng(0, "distractors", n), size)
      Image.fromarray(image).save(path)
  return originals


def run_demo(
    out: Path,
    *,
    descriptor: str,
    comparator: str,
    distractors: int = 1000,
    k: int = 100,
    seed: int = 0,
) -> list[dict]:
  rng = np.random.default_rng(seed)
  originals = write_gallery(out / "gallery", distractors, rng)
  desc_model, cmp_model = provjax.load(descriptor), provjax.load(comparator)
  thumb = read_config(comparator)["preprocessing"]["image_size"]
  stats = build_gallery(
      out / "gallery",
      out / "index",
      describer=Describer(desc_model, thumbnail_weight=thumbnail_weight(descriptor)),
      descriptor_name=descriptor,
      thumb_size=thumb,
  )
  engine = Engine(
      Gallery.open(out / "index"),
      desc_model,
      cmp_model,
      k=k,
      fusion=Fusion.from_config(read_config(comparator)),
  )
  print(f"gallery: {stats['size']} images ({len(originals)} originals to find)", file=sys.stderr)
  known = [(engine.gallery.index.find_sha256(sha256_file(p)), read_image(p)) for p in originals]
  queries = evaluate.make_queries(known, rng, n_distinct=len(originals) // 2)
  for folder in ("queries", "results"):
    (out / folder).mkdir(exist_ok=True)
  rows, items = [], []
  for n, q in enumerate(queries):
    name = f"{n:03d}-{q.kind}"
    Image.fromarray(q.edit.image).save(out / "queries" / f"{name}.png")
    result = engine.query(q.edit.image)
    fields = write_query_outputs(out / "results", name, q.edit.image, result)
    rows.append(evaluate.score(q, result))
    items.append((name, rows[-1], fields))
  table = evaluate.summarize(rows)
  print(evaluate.format_table(table, COLUMNS))
  write_html(out / "report.html", table, items)
  (out / "metrics.json").write_text(json.dumps(table, indent=2) + "\n")
  print(f"report: {out / 'report.html'}", file=sys.stderr)
  return table


def write_html(path: Path, table: list[dict], items) -> None:
  """Metrics table, then one picture per query (query | original | edits)."""
  fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
  head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
  body = "".join(
      "<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in COLUMNS) + "</tr>" for r in table
  )
  cards = []
  for name, row, fields in items:
    png = Path(fields["heatmap_png"]).relative_to(path.parent)
    status = "correct" if row["correct"] else "wrong"
    cards.append(
        f"<div class='{status}'><h3>{html.escape(name)}: truth {row['kind']}, "
        f"verdict {row['verdict']} ({status})</h3><img src='{png}'></div>"
    )
  path.write_text(
      "<!doctype html><meta charset='utf-8'><title>provjax demo</title>"
      "<style>body{font-family:sans-serif} td,th{padding:2px 8px} .wrong h3{color:#b00}"
      " .correct h3{color:#070} img{max-width:100%}</style>"
      "<h1>provjax demo: SImProv provenance</h1>"
      "<p>Gallery: bundled sample photographs + procedural distractors. Each original gets a "
      "benign and a manipulated query; unrelated queries should get no match.</p>"
      f"<table border=1><tr>{head}</tr>{body}</table>" + "".join(cards)
  )
