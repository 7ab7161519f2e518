"""SImProv end-to-end metrics (specs/simprov.md 2.11) on queries with known truth.

Recall@{1,5,10,100} before (search order) and after comparator re-ranking,
3-way verdict accuracy, heatmap IoU on manipulated queries (the spec's 1024 x
1024 protocol, and at the original's native resolution against the exact
edit mask) and emptiness on benign ones (`provjax.metrics.heatmap`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from provjax import transforms
from provjax.data import pairs, splits
from provjax.metrics.heatmap import emptiness, heatmap_iou, mask_iou

KINDS = ("benign", "manipulated", "distinct")
RECALL_AT = (1, 5, 10, 100)


@dataclasses.dataclass
class Query:
  kind: str  # ground truth verdict
  edit: transforms.Edited  # the query image with its edit record
  truth: int | None  # gallery id of the original (None if distinct)
  original_shape: tuple | None  # (h, w) of the original, for the heatmap target


def make_queries(
    originals: list[tuple[int, np.ndarray]],
    rng: np.random.Generator,
    *,
    n_distinct: int = 0,
    families=transforms.ALL_FAMILIES,
    benign_max: int = 2,
) -> list[Query]:
  """A benign and a manipulated query per (gallery id, original), plus unrelated ones.

  Donors and unrelated images come from the "distractors" split (splits.py),
  never from training sources; unrelated images are procedural images drawn
  from indices no gallery distractor uses, so none of them is in the gallery.
  """
  queries = []
  for gid, image in originals:
    e = transforms.identity(image)
    queries.append(
        Query(
            "benign",
            transforms.random_benign(e, rng, n_max=benign_max, families=families),
            gid,
            image.shape[:2],
        )
    )
    donor = pairs.distractor(rng, max(image.shape[:2]), "distractors")
    edited = transforms.random_manipulation(e, rng, donors=[donor])
    queries.append(
        Query(
            "manipulated",
            transforms.random_benign(edited, rng, n_max=benign_max, families=families),
            gid,
            image.shape[:2],
        )
    )
  for _ in range(n_distinct):
    image = splits.draw_procedural(rng, int(rng.integers(96, 257)), "distractors")
    queries.append(Query("distinct", transforms.identity(image), None, None))
  return queries


def score(query: Query, result) -> dict:
  """One query's outcome: ranks before/after re-ranking, verdict, heatmap metrics."""
  verdict = result.match["verdict"] if result.match else "distinct"
  row = {"kind": query.kind, "verdict": verdict}
  ranked = np.array([c["id"] for c in result.candidates])
  if query.truth is not None:
    row["search_rank"] = _rank(result.search_ids, query.truth)
    row["rerank_rank"] = _rank(ranked, query.truth)
    # A verdict only counts when it is about the right original.
    row["correct"] = verdict == query.kind and row["rerank_rank"] == 1
  else:
    row["correct"] = verdict == "distinct"
  if query.kind == "manipulated":
    gt = transforms.heatmap_target(query.edit, query.original_shape, result.grid_heatmap.shape[0])
    row["iou"] = heatmap_iou(result.grid_heatmap, gt)
    row["iou native"] = mask_iou(
        result.grid_heatmap, transforms.source_mask(query.edit, query.original_shape)
    )
  elif query.kind == "benign":
    row["emptiness"] = emptiness(result.grid_heatmap)
  return row


def _rank(ids: np.ndarray, truth: int) -> int | None:
  hits = np.flatnonzero(np.asarray(ids) == truth)
  return int(hits[0]) + 1 if hits.size else None


def summarize(rows: list[dict]) -> list[dict]:
  """One line per query kind with every metric that applies to it."""
  table = []
  for kind in KINDS:
    sel = [r for r in rows if r["kind"] == kind]
    if not sel:
      continue
    line = {"queries": kind, "n": len(sel)}
    if "search_rank" in sel[0]:
      for stage, key in (("search", "search_rank"), ("re-ranked", "rerank_rank")):
        for k in RECALL_AT:
          line[f"{stage} R@{k}"] = float(np.mean([r[key] is not None and r[key] <= k for r in sel]))
    line["verdict acc"] = float(np.mean([r["correct"] for r in sel]))
    if kind == "manipulated":
      line["heatmap IoU"] = float(np.mean([r["iou"] for r in sel]))
      line["heatmap IoU native"] = float(np.mean([r["iou native"] for r in sel]))
    if kind == "benign":
      line["emptiness"] = float(np.mean([r["emptiness"] for r in sel]))
    table.append(line)
  return table


def format_table(table: list[dict], columns=None) -> str:
  """Plain-text table; metrics a kind does not have print as '-'."""
  cols = columns or list(dict.fromkeys(c for row in table for c in row))
  fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
  cells = [[fmt(row.get(c)) for c in cols] for row in table]
  widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
  lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
  lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
  return "\n".join(lines)
