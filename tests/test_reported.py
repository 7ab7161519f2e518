"""Checks provjax/reported.csv, the papers' own numbers that the leaderboard sets beside ours.

Every value must be quoted from the spec section its row cites: a typo, or a number taken
from somewhere else, fails here rather than showing up as a wrong reference on the leaderboard.
"""

import csv
import re
from decimal import Decimal
from pathlib import Path

import pytest

import provjax

CSV_PATH = Path(provjax.__file__).parent / "reported.csv"
SHARED = Path("/work/shared")
HEADER = "table,paper,method,dataset,setting,metric,value,higher_is_better,source".split(",")
TABLES = {
    "provenance",
    "forgery-localization",
    "forgery-detection",
    "copy-detection",
    "attribution",
    "inpainting-quality",
    "anti-forensics",
}
PAPERS = {"SImProv", "TruFor", "RepMix", "CopyNCE", "SafePaint"}
# Metrics that are fractions of a whole; dB, FID, LPIPS and L1 are left unbounded.
FRACTIONS = {
    "recall@1",
    "recall@10",
    "recall@100",
    "heatmap_iou",
    "verdict_accuracy",
    "pixel_f1",
    "pixel_f1_best",
    "pixel_f1_fixed",
    "pixel_mcc",
    "pixel_auc",
    "image_auc",
    "image_bacc",
    "micro_ap",
    "recall_at_p90",
    "recall_at_rank1",
    "attribution_accuracy",
    "detection_accuracy",
    "nmi",
    "ssim",
    "detector_auc",
    "detector_f1",
}
# ".916", "61.5", "38.25": the ways a number is written in the specs.
NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")


def _read():
  with CSV_PATH.open(newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    return reader.fieldnames, list(reader)


def _section(source):
  """The text under the heading `source` names (`specs/<file>.md#<heading>`), up to the next
  heading of the same or a higher level."""
  file, heading = source.split("#", 1)
  lines = (SHARED / file).read_text(encoding="utf-8").splitlines()
  starts = [
      i
      for i, line in enumerate(lines)
      if line.startswith("#") and line.lstrip("#").strip() == heading
  ]
  assert len(starts) == 1, f"{source}: heading found {len(starts)} times"
  level = len(lines[starts[0]]) - len(lines[starts[0]].lstrip("#"))
  body = []
  for line in lines[starts[0] + 1 :]:
    hashes = len(line) - len(line.lstrip("#"))
    if 0 < hashes <= level and line[hashes : hashes + 1] == " ":
      break
    body.append(line)
  return "\n".join(body)


def test_header_and_fields():
  fieldnames, rows = _read()
  assert fieldnames == HEADER
  assert rows
  for row in rows:
    assert row["table"] in TABLES, row
    assert row["paper"] in PAPERS, row
    assert row["method"] and row["dataset"] and row["setting"], row
    assert re.fullmatch(r"[a-z0-9_@]+", row["metric"]), row
    assert row["higher_is_better"] in {"0", "1"}, row
    value = float(row["value"])
    if row["metric"] in FRACTIONS:
      assert 0.0 <= value <= 1.0, row


def test_one_row_per_number():
  _, rows = _read()
  keys = [tuple(row[k] for k in HEADER[:6]) for row in rows]
  assert len(keys) == len(set(keys))


@pytest.mark.skipif(not SHARED.is_dir(), reason="the specs live in /work/shared")
def test_values_are_quoted_from_the_cited_section():
  """A spec writes a fraction as '.916' and a percentage as '61.5'; the CSV holds fractions, so
  a value matches a number in its section either as written or times 100 (exact decimals)."""
  _, rows = _read()
  sections = {}
  for row in rows:
    if row["source"] not in sections:
      sections[row["source"]] = {Decimal(n) for n in NUMBER.findall(_section(row["source"]))}
    value = Decimal(row["value"])
    assert {value, value.scaleb(2)} & sections[row["source"]], row
