"""`provjax leaderboard`: measured rows beside reported numbers, sorted by each table's main metric."""

import csv
import io
import json

from conftest import script
from provjax import cli, leaderboard, results


def _rows(folder, benchmark, split, entries):
  """entries: (model.tag, metric, value)."""
  rows = []
  for name, metric, value in entries:
    arch, _, tag = name.partition(".")
    rows.append(dict(model=arch, tag=tag, split=split, metric=metric, value=value))
  results.append(benchmark, rows, folder=folder, commit="c0", machine="m", command="t")


def _table(built, name):
  return next(entries for table, entries in built if table.name == name)


def test_measured_entries_sorted_beside_reported(tmp_path):
  _rows(
      tmp_path,
      "isc",
      "gt_dev",
      [
          ("a.one", "micro_ap", 0.2),
          ("a.one", "recall_at_p90", 0.1),
          ("b.two", "micro_ap", 0.95),
          ("b.two", "recall_at_rank1", 0.5),
      ],
  )
  built = leaderboard.build(
      [t for t in leaderboard.TABLES if t.name == "copy-detection"], folders=[tmp_path]
  )
  entries = _table(built, "copy-detection")
  measured = [e for e in entries if e["kind"] == "measured"]
  assert [(e["model"], e["values"]) for e in measured] == [
      ("b.two", {"µAP": 0.95, "R@1": 0.5}),
      ("a.one", {"µAP": 0.2, "RP90": 0.1}),
  ]
  # Reported rows are there, marked, and the whole table is sorted by µAP, high first.
  assert any(e["kind"] == "reported" and e["model"] == "reported in CopyNCE" for e in entries)
  ap = [e["values"]["µAP"] for e in entries if "µAP" in e["values"]]
  assert ap == sorted(ap, reverse=True) and entries[0]["model"] == "b.two"


def test_lower_is_better_tables_sort_ascending_and_missing_main_goes_last(tmp_path):
  _rows(
      tmp_path,
      "inpainting",
      "folder:x",
      [
          ("safepaint.synth-v1", "trufor.synth-v1/image_auc", 0.7),
          ("push-pull.classical", "trufor.synth-v1/image_auc", 0.4),
          ("telea.classical", "trufor.synth-v1/pixel_auc", 0.3),
      ],
  )
  table = next(t for t in leaderboard.TABLES if t.name == "anti-forensics")
  ((_, entries),) = leaderboard.build([table], folders=[tmp_path])
  assert [e["model"] for e in entries] == [
      "push-pull.classical",
      "safepaint.synth-v1",
      "telea.classical",
  ]
  assert entries[0]["method"] == "trufor.synth-v1"


def test_a_release_measuring_many_models_is_one_entry(tmp_path):
  metric = "Test: every descriptor and protocol: SSCD/none/none/0/yes/micro_ap"
  _rows(
      tmp_path, "copydetect-synth", "test", [("copynce.v1", metric, 0.3), ("sscd.v1", metric, 0.3)]
  )
  table = next(t for t in leaderboard.TABLES if t.name == "copy-detection")
  ((_, entries),) = leaderboard.build([table], folders=[tmp_path])
  (entry,) = [e for e in entries if e["kind"] == "measured"]
  assert entry["model"] == "copynce.v1, sscd.v1" and entry["method"] == "SSCD/none/none/0"


def test_formats(tmp_path):
  _rows(tmp_path, "isc", "gt", [("a.one", "micro_ap", 0.5)])
  built = leaderboard.build(folders=[tmp_path])
  md = leaderboard.markdown(built)
  assert md.count("### ") == len(leaderboard.TABLES)
  assert "| predictions (provjax eval isc) | a.one | isc | gt | 0.500 |" in md
  assert "The spec quotes no paper numbers for this table." in md  # provenance, attribution, ...
  page = leaderboard.to_html(built)
  assert page.count("<table>") == sum(1 for _, e in built if e)
  assert "<tr class=reported>" in page and "<tr class=measured>" in page
  rows = list(csv.DictReader(io.StringIO(leaderboard.to_csv(built))))
  assert {
      "table": "copy-detection",
      "kind": "measured",
      "model": "a.one",
      "metric": "µAP",
      "value": "0.5",
  }.items() <= rows[[r["model"] for r in rows].index("a.one")].items()


def test_zoo_rows_fill_every_table():
  """The released models' own rows give each table at least one measured entry."""
  built = leaderboard.build(folders=[results.released_root()])
  for table, entries in built:
    assert any(e["kind"] == "measured" for e in entries), table.name


def test_eval_rows_reach_the_leaderboard(tmp_path, capsys, results_dir):
  gt, preds = tmp_path / "gt.csv", tmp_path / "preds.csv"
  gt.write_text("query_id,reference_id\nQ1,R1\nQ2,R2\nQ3,\n")
  preds.write_text("query_id,reference_id,score\nQ1,R1,0.9\nQ2,R9,0.8\nQ2,R2,0.7\n")
  assert cli.main(["eval", "isc", "--gt", str(gt), "--preds", str(preds), "--label", "m.t"]) == 0
  (row,) = [r for r in results.read(results_dir) if r["metric"] == "micro_ap"]
  assert (row["model"], row["tag"], row["benchmark"], row["split"]) == ("m", "t", "isc", "gt")
  assert row["command"].startswith("provjax") or row["command"]
  capsys.readouterr()
  out = tmp_path / "board.csv"
  argv = ["leaderboard", "--benchmark", "copy-detection", "--format", "csv", "--out", str(out)]
  assert cli.main(argv) == 0
  assert json.loads(capsys.readouterr().out)["tables"] == ["copy-detection"]
  board = list(csv.DictReader(open(out)))
  mine = [r for r in board if r["model"] == "m.t"]
  assert {r["metric"] for r in mine} >= {"µAP", "RP90", "R@1"}
  assert cli.main(["eval", "isc", "--gt", str(gt), "--preds", str(preds), "--no-results"]) == 0
  assert len([r for r in results.read(results_dir) if r["metric"] == "micro_ap"]) == 1


def test_readme_results_section_is_the_generated_leaderboard():
  module = script("readme_leaderboard")
  assert (
      module.section() in module.README.read_text()
  ), "README's results section is stale: python scripts/readme_leaderboard.py"


def test_eval_rows_of_trufor_and_its_ela_reference_are_two_entries(tmp_path):
  _rows(
      tmp_path,
      "folder",
      "test",
      [
          ("trufor.mine", "det_auc", 0.7),
          ("trufor.mine", "loc_f1_best", 0.4),
          ("trufor.mine", "ela/det_auc", 0.6),
          ("trufor.mine", "ela/loc_f1_best", 0.3),
          ("trufor.mine", "ela/splice/det_auc", 0.9),  # per-kind figures stay out
      ],
  )
  built = leaderboard.build(
      [t for t in leaderboard.TABLES if t.name.startswith("forgery-")], folders=[tmp_path]
  )
  for name, column, ours, reference in (
      ("forgery-detection", "image AUC", 0.7, 0.6),
      ("forgery-localization", "pixel F1 best", 0.4, 0.3),
  ):
    measured = {e["method"]: e["values"] for e in _table(built, name) if e["kind"] == "measured"}
    assert measured == {
        "TruFor (provjax eval)": {column: ours},
        "ELA reference (provjax eval)": {column: reference},
    }
