"""`provjax leaderboard`: one table per benchmark family from the results rows.

Measured entries come from results rows (the zoo's own under
`results.released_root()`, then the user's `provjax eval` rows under
`results.root()`); the papers' reported numbers come from `reported.csv`
(copied from the specs, each with its dataset and setting) and are marked
`reported`. A `Select` says which rows of which benchmark make a measured
entry and which leaderboard column each metric fills; each table is sorted by
its main metric (entries without it last).

    provjax leaderboard                          # every table, markdown
    provjax leaderboard --benchmark copy-detection --format html
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import math
from pathlib import Path
import re
import sys

from provjax import results
from provjax.viz import pages


@dataclasses.dataclass(frozen=True)
class Select:
  """Results rows -> measured entries of one table.

  `pattern` matches a row's metric; its `method` group (or `method`) names
  the entry, its `column` group is looked up in `columns`; rows of other
  metrics are not part of the table. `benchmark` None matches the rows of
  any benchmark not written by a release (the user's `provjax eval` rows).
  """

  benchmark: str | None
  pattern: str
  columns: dict[str, str]
  method: str | None = None
  split: str = "test"


@dataclasses.dataclass(frozen=True)
class Table:
  name: str
  title: str
  main: str  # the column entries are sorted by
  columns: tuple[str, ...]  # in display order; reported metrics map into them by REPORTED_COLUMNS
  selects: tuple[Select, ...]
  lower_is_better: frozenset[str] = frozenset()
  note: str = ""


# reported.csv's canonical metric names -> leaderboard columns.
REPORTED_COLUMNS = {
    "image_auc": "image AUC",
    "image_bacc": "bACC",
    "pixel_f1_best": "pixel F1 best",
    "pixel_f1_fixed": "pixel F1 @0.5",
    "pixel_f1": "pixel F1 (threshold not stated)",
    "pixel_mcc": "MCC",
    "micro_ap": "µAP",
    "recall_at_p90": "RP90",
    "recall_at_rank1": "R@1",
    "recall@1": "benign R@1",
    "attribution_accuracy": "attribution acc",
    "detection_accuracy": "detection acc",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "detector_auc": "image AUC",
}

# `provjax eval` figures of TruFor, and of the ELA reference under ela/ (same columns).
_EVAL_LOC = {"loc_f1_best": "pixel F1 best", "loc_f1_fixed": "pixel F1 @0.5", "loc_mcc": "MCC"}
_EVAL_DET = {"det_auc": "image AUC", "det_bacc": "bACC"}
_E2E = r"^End-to-end benchmark \(both released models\): (?P<column>.+)$"
_TRUFOR = r"^(?P<method>TruFor|ELA reference), all edit kinds(?: \(same images\))?: (?P<column>.+)$"
_INPAINT = r"^Test: detector vs inpainter: (?P<method>[^/]+/[^/]+)/(?P<column>[a-z_0-9]+)$"

TABLES = (
    Table(
        name="provenance",
        title="Provenance (SImProv): find the original, say benign / manipulated / distinct",
        main="benign R@1",
        columns=(
            "benign R@1",
            "manipulated R@1",
            "benign verdict",
            "manipulated verdict",
            "distinct verdict",
            "heatmap IoU",
        ),
        selects=(
            Select(
                "provenance-synth",
                _E2E,
                {
                    "benign/re-ranked R@1": "benign R@1",
                    "manipulated/re-ranked R@1": "manipulated R@1",
                    "benign/verdict acc": "benign verdict",
                    "manipulated/verdict acc": "manipulated verdict",
                    "distinct/verdict acc": "distinct verdict",
                    "manipulated/heatmap IoU": "heatmap IoU",
                },
                method="search + comparator re-ranking",
            ),
            Select(
                "provenance-synth",
                _E2E,
                {"benign/search R@1": "benign R@1", "manipulated/search R@1": "manipulated R@1"},
                method="search only",
            ),
            Select(
                None,
                r"^(?P<column>(?:benign|manipulated)_recall@1)$",
                {"benign_recall@1": "benign R@1", "manipulated_recall@1": "manipulated R@1"},
                method="descriptor (provjax eval)",
            ),
        ),
    ),
    Table(
        name="forgery-localization",
        title="Forgery localization (TruFor): pixel F1 on forged images",
        main="pixel F1 best",
        columns=("pixel F1 best", "pixel F1 @0.5", "MCC", "pixel F1 (threshold not stated)"),
        selects=(
            Select(
                "forgery-synth",
                _TRUFOR,
                {"pixel F1 best": "pixel F1 best", "pixel F1 fixed": "pixel F1 @0.5", "MCC": "MCC"},
            ),
            Select(
                None,
                r"^(?P<column>loc_f1_best|loc_f1_fixed|loc_mcc)$",
                _EVAL_LOC,
                method="TruFor (provjax eval)",
            ),
            Select(
                None,
                r"^ela/(?P<column>loc_f1_best|loc_f1_fixed|loc_mcc)$",
                _EVAL_LOC,
                method="ELA reference (provjax eval)",
            ),
        ),
    ),
    Table(
        name="forgery-detection",
        title="Forgery detection (TruFor): is the whole image manipulated",
        main="image AUC",
        columns=("image AUC", "bACC"),
        selects=(
            Select("forgery-synth", _TRUFOR, {"image AUC": "image AUC", "bACC": "bACC"}),
            Select(
                None, r"^(?P<column>det_auc|det_bacc)$", _EVAL_DET, method="TruFor (provjax eval)"
            ),
            Select(
                None,
                r"^ela/(?P<column>det_auc|det_bacc)$",
                _EVAL_DET,
                method="ELA reference (provjax eval)",
            ),
        ),
    ),
    Table(
        name="copy-detection",
        title="Copy detection (ISC2021 metrics): the protocol each descriptor chose on val",
        main="µAP",
        columns=("µAP", "RP90", "R@1"),
        selects=(
            Select(
                "copydetect-synth",
                r"^Test: every descriptor and protocol: (?P<method>.+)/yes/(?P<column>[a-z_0-9]+)$",
                {"micro_ap": "µAP", "recall_at_p90": "RP90", "recall_at_rank1": "R@1"},
            ),
            Select(
                "copydetect-synth",
                r"^Test \(synthetic held-back split\): (?P<method>with verification) \(chosen\)/"
                r"(?P<column>[a-z_0-9]+)$",
                {"micro_ap": "µAP", "recall_at_p90": "RP90", "recall_at_rank1": "R@1"},
            ),
            Select(
                "isc",
                r"^(?P<column>micro_ap|recall_at_p90|recall_at_rank1)$",
                {"micro_ap": "µAP", "recall_at_p90": "RP90", "recall_at_rank1": "R@1"},
                method="predictions (provjax eval isc)",
                split="*",
            ),
        ),
        note=(
            "method = descriptor / score normalisation / query crops / matcher re-scores"
            " (/ thumbnail share, from copynce.synth-v2); 'with verification': copynce.synth-v3"
            " and -v4, SIFT + RANSAC (and, v4, near-duplicate thumbnail) re-scoring of each"
            " query's best candidates"
        ),
    ),
    Table(
        name="attribution",
        title="Generator attribution (RepMix): real vs synthetic, and which generator",
        main="attribution acc",
        columns=("attribution acc", "detection acc", "NMI", "unseen-semantics attribution acc"),
        selects=(
            Select(
                "attribution-genzoo",
                r"^(?P<method>RepMix \(released\)|Same recipe without mixing \(what mixing buys\)): "
                r"(?P<column>.+)$",
                {
                    "clean/attr_acc": "attribution acc",
                    "clean/det_acc": "detection acc",
                    "clean/nmi": "NMI",
                    "clean/unseen/attr_acc": "unseen-semantics attribution acc",
                },
            ),
        ),
        note="clean test copy of provjax_genzoo (the zoo's own generators)",
    ),
    Table(
        name="inpainting-quality",
        title="Inpainting quality (SafePaint): the merged image against the original",
        main="PSNR",
        columns=("PSNR", "SSIM", "hole PSNR"),
        selects=(
            Select(
                "inpainting-synth",
                r"^Test: detector vs inpainter: trufor\.synth-v1/(?P<method>[^/]+)/(?P<column>.+)$",
                {"psnr": "PSNR", "ssim": "SSIM", "psnr_hole": "hole PSNR"},
            ),
            Select(
                "inpainting",
                r"^(?P<column>psnr|ssim|psnr_hole)$",
                {"psnr": "PSNR", "ssim": "SSIM", "psnr_hole": "hole PSNR"},
                split="*",
            ),
        ),
    ),
    Table(
        name="anti-forensics",
        title="Anti-forensics: a detector on the filled images (lower = the fill fools it more)",
        main="image AUC",
        columns=("image AUC", "pixel F1", "pixel AUC"),
        selects=(
            Select(
                "inpainting-synth",
                _INPAINT,
                {"image_auc": "image AUC", "pixel_f1": "pixel F1", "pixel_auc": "pixel AUC"},
            ),
            Select(
                "inpainting",
                r"^(?P<method>[^/]+)/(?P<column>image_auc|pixel_f1|pixel_auc)$",
                {"image_auc": "image AUC", "pixel_f1": "pixel F1", "pixel_auc": "pixel AUC"},
                split="*",
            ),
        ),
        lower_is_better=frozenset({"image AUC", "pixel F1", "pixel AUC"}),
        note="method = detector / inpainter",
    ),
)
NAMES = tuple(t.name for t in TABLES)


def reported_path() -> Path:
  return Path(__file__).resolve().parent / "reported.csv"


def reported_rows() -> list[dict]:
  with open(reported_path(), newline="") as f:
    return list(csv.DictReader(f))


# ------------------------------------------------------------------ entries ---


def _entry(**kw) -> dict:
  return {"values": {}, **kw}


def measured(table: Table, rows: list[dict], released: set[str]) -> list[dict]:
  """The table's measured entries: one per (model, benchmark, split, method)."""
  entries = {}
  for select in table.selects:
    pattern = re.compile(select.pattern)
    for row in rows:
      if select.benchmark is None:
        if row["benchmark"] in released:
          continue
      elif row["benchmark"] != select.benchmark:
        continue
      if select.split != "*" and row["split"] != select.split:
        continue
      match = pattern.match(row["metric"])
      if not match or match.group("column") not in select.columns:
        continue
      groups = match.groupdict()
      method = select.method or groups.get("method") or "-"
      model = f"{row['model']}.{row['tag']}"
      key = (model, row["benchmark"], row["split"], method)
      entry = entries.setdefault(
          key,
          _entry(
              kind="measured",
              model=model,
              method=method,
              dataset=row["benchmark"],
              setting=row["split"],
              date=row["date"],
              commit=row["commit"],
          ),
      )
      entry["values"][select.columns[match.group("column")]] = row["value"]
  return _distinct(list(entries.values()))


def _distinct(entries: list[dict]) -> list[dict]:
  """One entry per (method, dataset, setting, figures): one release measured for several models.

  The copy-detection release measured every descriptor in one run and wrote
  the same table into each model's card; its entries name the models together.
  """
  merged = {}
  for e in entries:
    key = (e["method"], e["dataset"], e["setting"], tuple(sorted(e["values"].items())))
    if key in merged:
      merged[key]["model"] += f", {e['model']}"
    else:
      merged[key] = dict(e)
  return list(merged.values())


def reported(table: Table, rows: list[dict]) -> list[dict]:
  """The papers' numbers for this table, one entry per (paper, method, dataset, setting)."""
  entries = {}
  for row in rows:
    if row["table"] != table.name:
      continue
    key = (row["paper"], row["method"], row["dataset"], row["setting"])
    entry = entries.setdefault(
        key,
        _entry(
            kind="reported",
            model=f"reported in {row['paper']}",
            method=row["method"],
            dataset=row["dataset"],
            setting=row["setting"],
            source=row["source"],
        ),
    )
    entry["values"][REPORTED_COLUMNS.get(row["metric"], row["metric"])] = float(row["value"])
  return list(entries.values())


def _sort_key(table: Table, entry: dict):
  value = entry["values"].get(table.main)
  if value is None or math.isnan(value):
    return (1, 0.0)
  return (0, value if table.main in table.lower_is_better else -value)


def build(tables=TABLES, *, folders=None) -> list[tuple[Table, list[dict]]]:
  """Every table with its entries, sorted by the main metric.

  `folders` are the results folders to read (default: the zoo's own rows,
  then the user's `results.root()` when it is another folder).
  """
  if folders is None:
    folders = [results.released_root()]
    if results.root().resolve() != results.released_root().resolve():
      folders.append(results.root())
  rows = [r for folder in folders for r in results.read(folder)]
  released = {r["benchmark"] for r in results.read(results.released_root())}
  paper = reported_rows()
  out = []
  for table in tables:
    entries = measured(table, rows, released) + reported(table, paper)
    out.append((table, sorted(entries, key=lambda e: _sort_key(table, e))))
  return out


# ------------------------------------------------------------------ formats ---


def columns(table: Table, entries: list[dict]) -> list[str]:
  """The table's columns that hold at least one figure, in display order (extras last)."""
  found = {c for e in entries for c in e["values"]}
  extra = sorted(found - set(table.columns))
  return [c for c in table.columns if c in found] + extra


def _cell(value) -> str:
  if value is None:
    return "-"
  if math.isinf(value):
    return "inf"
  return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def _rows(table: Table, entries: list[dict]) -> tuple[list[str], list[list[str]]]:
  cols = columns(table, entries)
  head = ["method", "model", "dataset", "setting", *cols]
  body = [
      [e["method"], e["model"], e["dataset"], e["setting"]]
      + [_cell(e["values"].get(c)) for c in cols]
      for e in entries
  ]
  return head, body


def _caption(table: Table, entries: list[dict]) -> str:
  order = "lower first" if table.main in table.lower_is_better else "higher first"
  text = f"Sorted by {table.main} ({order})."
  if table.note:
    text += f" {table.note[0].upper()}{table.note[1:]}."
  if not any(e["kind"] == "reported" for e in entries):
    text += " The spec quotes no paper numbers for this table."
  if not any(e["kind"] == "measured" for e in entries):
    text += " Nothing measured yet."
  return text


def markdown(built) -> str:
  out = []
  for table, entries in built:
    out += [f"### {table.title}", "", _caption(table, entries), ""]
    if entries:
      head, body = _rows(table, entries)
      out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
      out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]
      out.append("")
  return "\n".join(out)


def to_csv(built) -> str:
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(["table", "kind", "method", "model", "dataset", "setting", "metric", "value"])
  for table, entries in built:
    for e in entries:
      for metric in columns(table, entries):
        if metric in e["values"]:
          writer.writerow(
              [table.name, e["kind"], e["method"], e["model"], e["dataset"], e["setting"], metric]
              + [e["values"][metric]]
          )
  return buffer.getvalue()


_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1d1d1f; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.wrap { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .6rem; text-align: left; }
td.n { text-align: right; }
tr.reported { color: #555; background: #f6f6f8; }
tr.reported td:first-child::after { content: " (reported)"; font-size: .8em; color: #888; }
p.caption { color: #555; margin: .3rem 0 .6rem; }
"""


def to_html(built) -> str:
  parts = [
      "<!doctype html><html lang=en><head><meta charset=utf-8>",
      '<meta name=viewport content="width=device-width, initial-scale=1">',
      f"<title>provjax leaderboard</title><style>{_STYLE}</style></head><body>",
      "<h1>provjax leaderboard</h1>",
      "<p>Measured rows come from <code>results/*.csv</code> (every <code>provjax eval</code> "
      "and release); grey rows are the papers' reported numbers, on their own datasets.</p>",
  ]
  for table, entries in built:
    parts.append(f"<h2 id={table.name}>{html.escape(table.title)}</h2>")
    parts.append(f"<p class=caption>{html.escape(_caption(table, entries))}</p>")
    if not entries:
      continue
    head, body = _rows(table, entries)
    parts.append(
        "<div class=wrap><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
    )
    for entry, row in zip(entries, body):
      cells = [
          f"<td{' class=n' if i >= 4 else ''}>{html.escape(c)}</td>" for i, c in enumerate(row)
      ]
      parts.append(f"<tr class={entry['kind']}>" + "".join(cells) + "</tr>")
    parts.append("</table></div>")
  parts.append("</body></html>\n")
  return "\n".join(parts)


FORMATS = {"md": markdown, "csv": to_csv, "html": to_html}


# ---------------------------------------------------------------------- CLI ---


def _cmd(args) -> int:
  tables = [t for t in TABLES if args.benchmark in (None, t.name)]
  folders = None if args.results is None else [results.released_root(), Path(args.results)]
  text = FORMATS[args.format](build(tables, folders=folders))
  if args.out:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pages.write_text(out, text)
    print(json.dumps({"out": str(out), "tables": [t.name for t in tables]}))
  else:
    sys.stdout.write(text)
  return 0


def add_command(sub) -> None:
  p = sub.add_parser(
      "leaderboard",
      help="one table per benchmark from the results rows, beside the papers' reported numbers",
  )
  p.add_argument("--benchmark", choices=NAMES, help="one table (default: every table)")
  p.add_argument("--format", choices=list(FORMATS), default="md")
  p.add_argument("--results", metavar="DIR", help="your results folder (default results/)")
  p.add_argument("--out", metavar="FILE", help="write there instead of stdout")
  p.set_defaults(fn=_cmd)
