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
from provjax import transforms
from provjax.data import photos
from provjax.data.images import read_image
from provjax.eval.heatmap_metrics import emptiness, heatmap_iou
from provjax.provenance.build import build_gallery
from provjax.provenance.engine import Describer, Engine
from provjax.provenance.gallery import Gallery
from provjax.provenance.report import write_query_outputs
from provjax.weights import read_config


def _fit(image: np.ndarray, longest: int = 384) -> np.ndarray:
  h, w = image.shape[:2]
  scale = min(1.0, longest / max(h, w))
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def write_gallery(folder: Path, n_distractors: int, rng) -> list[Path]:
  """Sample photos (the originals to find) + procedural distractors, as PNG files."""
  folder.mkdir(parents=True, exist_ok=True)
  originals = []
  for name, image in photos.sample_photos():
    path = folder / f"photo-{name}.png"
    Image.fromarray(_fit(image)).save(path)
    originals.append(path)
  for n in range(n_distractors):
    path = folder / f"distractor-{n:05d}.png"
    if not path.exists():
      Image.fromarray(photos.procedural_image(rng, int(rng.integers(128, 257)))).save(path)
  return originals


def make_queries(originals: list[Path], rng, n_distinct: int) -> list[dict]:
  """Benign and manipulated versions of each original, plus unrelated images."""
  queries = []
  for path in originals:
    e = transforms.identity(read_image(path))
    queries.append(dict(kind="benign", source=path, edit=transforms.random_benign(e, rng, n_max=2)))
    donor = photos.procedural_image(rng, max(e.shape[:2]))
    edited = transforms.random_manipulation(e, rng, donors=[donor])
    queries.append(dict(kind="manipulated", source=path, edit=transforms.random_benign(
        edited, rng, n_max=1, families=("jpeg", "noise", "resize", "color", "blur"))))
  for _ in range(n_distinct):
    image = photos.procedural_image(rng, int(rng.integers(128, 257)))
    queries.append(dict(kind="distinct", source=None, edit=transforms.identity(image)))
  return queries


def _score(q: dict, result, gallery: Gallery, search_ids: list[int]) -> dict:
  """Per-query outcome against the ground truth carried by the edit."""
  truth = None if q["source"] is None else gallery.index.find_sha256(_sha(q["source"]))
  ranked = [c["id"] for c in result.candidates]
  verdict = result.match["verdict"] if result.match else "distinct"
  row = {"kind": q["kind"], "verdict": verdict, "correct": verdict == q["kind"]}
  if truth is not None:
    row["search_rank1"] = bool(search_ids and search_ids[0] == truth)
    row["rerank_rank1"] = bool(ranked and ranked[0] == truth)
    row["correct"] = row["correct"] and row["rerank_rank1"]
  if q["kind"] == "manipulated":
    gt = transforms.heatmap_target(q["edit"], read_image(q["source"]).shape[:2], 7)
    row["iou"] = heatmap_iou(result.grid_heatmap, gt)
  if q["kind"] == "benign":
    row["emptiness"] = emptiness(result.grid_heatmap)
  return row


def _sha(path) -> str:
  from provjax.retrieval.metadata import sha256_file
  return sha256_file(path)


def summarize(rows: list[dict]) -> list[dict]:
  table = []
  for kind in ("benign", "manipulated", "distinct"):
    sel = [r for r in rows if r["kind"] == kind]
    if not sel:
      continue
    mean = lambda key: (float(np.mean([r[key] for r in sel])) if key in sel[0] else None)
    table.append({"queries": kind, "n": len(sel), "search R@1": mean("search_rank1"),
                  "re-ranked R@1": mean("rerank_rank1"), "verdict acc": mean("correct"),
                  "heatmap IoU": mean("iou"), "emptiness": mean("emptiness")})
  return table


def format_table(table: list[dict]) -> str:
  cols = list(table[0])
  fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
  widths = [max(len(c), *(len(fmt(r[c])) for r in table)) for c in cols]
  lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
  lines += ["  ".join(fmt(r[c]).ljust(w) for c, w in zip(cols, widths)) for r in table]
  return "\n".join(lines)


def run_demo(out: Path, *, descriptor: str, comparator: str, distractors: int = 1000,
             k: int = 100, seed: int = 0) -> list[dict]:
  rng = np.random.default_rng(seed)
  originals = write_gallery(out / "gallery", distractors, rng)
  desc_model, cmp_model = provjax.load(descriptor), provjax.load(comparator)
  thumb = read_config(comparator)["preprocessing"]["image_size"]
  stats = build_gallery(out / "gallery", out / "index", describer=Describer(desc_model),
                        descriptor_name=descriptor, thumb_size=thumb)
  print(f"gallery: {stats['size']} images ({len(originals)} originals)", file=sys.stderr)
  engine = Engine(Gallery.open(out / "index"), desc_model, cmp_model, k=k)
  queries = make_queries(originals, rng, n_distinct=max(5, len(originals) // 2))
  (out / "queries").mkdir(exist_ok=True)
  (out / "results").mkdir(exist_ok=True)
  rows, items = [], []
  for n, q in enumerate(queries):
    name = f"{n:03d}-{q['kind']}"
    Image.fromarray(q["edit"].image).save(out / "queries" / f"{name}.png")
    vector = engine.describe([q["edit"].image])[0]
    _, search_ids = engine.gallery.index.search(vector[None], k)
    result = engine.query(q["edit"].image, vector)
    fields = write_query_outputs(out / "results", name, q["edit"].image, result)
    rows.append(_score(q, result, engine.gallery, search_ids[0].tolist()))
    items.append((name, rows[-1], fields))
  table = summarize(rows)
  print(format_table(table))
  write_html(out / "report.html", table, items)
  (out / "metrics.json").write_text(json.dumps(table, indent=2) + "\n")
  print(f"report: {out / 'report.html'}", file=sys.stderr)
  return table


def write_html(path: Path, table: list[dict], items) -> None:
  head = "".join(f"<th>{html.escape(c)}</th>" for c in table[0])
  fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
  body = "".join("<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in r.values()) + "</tr>" for r in table)
  cards = []
  for name, row, fields in items:
    png = Path(fields["heatmap_png"]).relative_to(path.parent)
    status = "correct" if row["correct"] else "wrong"
    cards.append(f"<div class='{status}'><h3>{html.escape(name)}: truth {row['kind']}, "
                 f"verdict {row['verdict']} ({status})</h3><img src='{png}'></div>")
  path.write_text(
      "<!doctype html><meta charset='utf-8'><title>provjax demo</title>"
      "<style>body{font-family:sans-serif} td,th{padding:2px 8px} .wrong h3{color:#b00}"
      " .correct h3{color:#070} img{max-width:100%}</style>"
      f"<h1>provjax demo: SImProv provenance</h1><table border=1><tr>{head}</tr>{body}</table>"
      + "".join(cards))
