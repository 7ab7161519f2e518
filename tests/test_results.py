"""`provjax.results`: rows appended atomically, read back, never lost between writers."""

import csv
import multiprocessing
import os

import pytest

from provjax import results


def _row(metric="image_auc", value=0.5, **kw):
  return dict(model="trufor", tag="synth-v1", split="test", metric=metric, value=value, **kw)


def test_rows_read_back_with_their_provenance(tmp_path):
  path = results.append("forgery-synth", [_row(), _row("bacc", 0.25)], folder=tmp_path)
  assert path == tmp_path / "forgery-synth.csv"
  rows = results.read(tmp_path)
  assert [(r["metric"], r["value"]) for r in rows] == [("image_auc", 0.5), ("bacc", 0.25)]
  first = rows[0]
  assert first["benchmark"] == "forgery-synth"
  assert first["date"] and first["machine"] and first["commit"] and first["command"]
  assert "cores" in first["machine"]
  # A second append keeps the first rows and writes no second header.
  results.append("forgery-synth", [_row("mcc", 0.1)], folder=tmp_path)
  with open(path) as f:
    lines = f.read().splitlines()
  assert lines[0] == ",".join(results.FIELDS) and len(lines) == 4
  assert [r["metric"] for r in results.read(tmp_path, "forgery-synth")] == [
      "image_auc",
      "bacc",
      "mcc",
  ]


def test_given_context_is_kept(tmp_path):
  ctx = dict(commit="abc123", date="2026-01-02", machine="m", command="python scripts/x.py")
  results.append("b", [_row()], folder=tmp_path, **ctx)
  (row,) = results.read(tmp_path)
  assert {k: row[k] for k in ctx} == ctx


def test_no_temporary_or_partial_file_is_left(tmp_path):
  results.append("b", [_row()], folder=tmp_path)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv"]
  # A bad row fails before anything is written: the file keeps its old rows exactly.
  before = (tmp_path / "b.csv").read_text()
  with pytest.raises(ValueError, match="needs metric"):
    results.append(
        "b", [_row(), dict(model="x", tag="y", split="test", value=1.0)], folder=tmp_path
    )
  assert (tmp_path / "b.csv").read_text() == before


def test_bad_benchmark_names_and_files_are_refused(tmp_path):
  with pytest.raises(ValueError, match="benchmark names"):
    results.append("../escape", [_row()], folder=tmp_path)
  (tmp_path / "other.csv").write_text("a,b\n1,2\n")
  with pytest.raises(ValueError, match="not a results file"):
    results.read(tmp_path)


def test_rows_from_metrics_drops_undefined_figures():
  rows = results.rows_from_metrics(
      "safepaint.synth-v1",
      "test",
      {"psnr": float("inf"), "auc": float("nan"), "n": 3, "ok": True, "name": "x"},
  )
  assert [(r["model"], r["tag"], r["metric"], r["value"]) for r in rows] == [
      ("safepaint", "synth-v1", "psnr", float("inf")),
      ("safepaint", "synth-v1", "n", 3),
  ]


def _append_many(folder, worker):
  for i in range(20):
    results.append(
        "shared", [_row(f"w{worker}-{i}", i)], folder=folder, commit="c", machine="m", command="t"
    )


# The children only write CSV rows (every context field given): no JAX runs after the fork.
@pytest.mark.filterwarnings("ignore:os.fork")
def test_concurrent_writers_lose_no_row(tmp_path):
  ctx = multiprocessing.get_context("fork")
  procs = [ctx.Process(target=_append_many, args=(tmp_path, w)) for w in range(3)]
  for p in procs:
    p.start()
  for p in procs:
    p.join()
    assert p.exitcode == 0
  with open(tmp_path / "shared.csv") as f:
    metrics = [r["metric"] for r in csv.DictReader(f)]
  assert sorted(metrics) == sorted(f"w{w}-{i}" for w in range(3) for i in range(20))


def test_root_follows_the_environment(tmp_path, monkeypatch):
  monkeypatch.setenv("PROVJAX_RESULTS", str(tmp_path / "r"))
  results.append("b", [_row()])
  assert (tmp_path / "r" / "b.csv").is_file()
  monkeypatch.delenv("PROVJAX_RESULTS")
  assert results.root() == results.Path("results")
  assert os.path.isdir(results.released_root())


def test_every_released_card_figure_is_a_results_row():
  """Cards and rows agree: each figure a released card prints is a row of the zoo's results."""
  from provjax import cards, weights

  recorded = {
      (r["model"], r["tag"], r["split"], r["metric"], r["value"])
      for r in results.read(results.released_root())
  }
  assert weights.released()
  for name in weights.released():
    arch, _, tag = name.partition(".")
    figures = cards.figures((weights.root() / name / "model_card.md").read_text())
    assert figures, name
    missing = [
        f for f in figures if (arch, tag, f["split"], f["metric"], f["value"]) not in recorded
    ]
    assert not missing, f"{name}: run scripts/results_from_cards.py; not recorded: {missing[:3]}"


def test_card_figures_keep_row_keys_and_skip_unmeasured_cells():
  text = (
      "# Model card: x.y\n\n## Test: detector vs inpainter\nhow\n\n"
      "| detector | inpainter | psnr | auc |\n|---|---|---|---|\n"
      "| d1 | SafePaint | 17.252 | - |\n| d1 | push-pull | inf | 0.549 |\n\n"
      "## Val (choosing only)\n| metric | value |\n|---|---|\n| threshold | 0.0018 |\n"
  )
  from provjax import cards

  assert cards.figures(text) == [
      dict(split="test", metric="Test: detector vs inpainter: d1/SafePaint/psnr", value=17.252),
      dict(
          split="test", metric="Test: detector vs inpainter: d1/push-pull/psnr", value=float("inf")
      ),
      dict(split="test", metric="Test: detector vs inpainter: d1/push-pull/auc", value=0.549),
      dict(split="val", metric="Val (choosing only): threshold", value=0.0018),
  ]
