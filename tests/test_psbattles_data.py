"""The PSBattles builder (provjax.data.psbattles) on a tiny fake release, and `provjax eval
psbattles` over it with the released SImProv models."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from provjax import cli, results, transforms
from provjax.data import psbattles, splits
from provjax.provenance import psbattles_eval
from provjax.provenance.cli import DEFAULT_COMPARATOR, DEFAULT_DESCRIPTOR

HEADER = "original,photoshop\n"
SIZE = 96


def _save(path, image: np.ndarray, fmt: str) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(image).save(path, format=fmt)


def _release(root):
  """4 originals, 6 photoshops (splices and copy-moves; o0 has two), a truncated photoshop and
  a missing one; train and test pair CSVs as SImProv's psbattles.tar lists them."""
  rng = np.random.default_rng(0)
  originals = [splits.draw_procedural(rng, SIZE, "gallery") for _ in range(4)]
  for i, image in enumerate(originals):
    _save(root / "originals" / f"o{i}.jpg", image, "JPEG")
  edits = {
      "o0/p0": transforms.splice(transforms.identity(originals[0]), rng, originals[3]),
      "o0/p1": transforms.copy_move(transforms.identity(originals[0]), rng),
      "o1/p2": transforms.copy_move(transforms.identity(originals[1]), rng),
      "o2/p3": transforms.splice(transforms.identity(originals[2]), rng, originals[0]),
      "o3/p4": transforms.copy_move(transforms.identity(originals[3]), rng),
      "o3/p5": transforms.splice(transforms.identity(originals[3]), rng, originals[1]),
  }
  for name, edited in edits.items():
    _save(root / "photoshops" / f"{name}.png", edited.image, "PNG")
  good = (root / "photoshops/o3/p4.png").read_bytes()
  (root / "photoshops/o3/bad.png").write_bytes(good[: len(good) // 3])  # truncated
  (root / "train_pairs.csv").write_text(
      ",original,photoshop\n"  # pandas' unnamed index column: ignored
      "0,originals/o3.jpg,photoshops/o3/p4.png\n"
      "1,originals/o3.jpg,photoshops/o3/p5.png\n"
  )
  (root / "test_pairs.csv").write_text(
      HEADER
      + "originals/o0.jpg,photoshops/o0/p0.png\n"
      + "originals/o1.jpg,photoshops/o1/p2.png\n"
      + "originals/o3.jpg,photoshops/o3/bad.png\n"  # line 4
      + "originals/o0.jpg,photoshops/o0/p1.png\n"
      + "originals/o9.jpg,photoshops/o2/p3.png\n"  # line 6: the original is not there
      + "originals/o2.jpg,photoshops/o2/p3.png\n"
  )
  return root


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  return _release(tmp_path_factory.mktemp("psbattles"))


def _rows(source):
  return [source[i] for i in range(len(source))]


def _text(record, key: str) -> str:
  return bytes(record[key]).decode()


def test_splits_records_and_skipped_rows(release, tmp_path, capfd):
  test = psbattles.load(release, data_dir=tmp_path, split="test")
  train = psbattles.load(release, data_dir=tmp_path, split="train")
  assert set(psbattles.builder(release, data_dir=tmp_path).info.splits) == {"train", "test"}
  expected = {
      "test": [("o0", "p0"), ("o1", "p2"), ("o0", "p1"), ("o2", "p3")],  # CSV order
      "train": [("o3", "p4"), ("o3", "p5")],
  }
  for name, source in (("test", test), ("train", train)):
    records = _rows(source)
    assert [(_text(r, "original_id"), _text(r, "photoshop_id")) for r in records] == expected[name]
    for r in records:
      original, photoshop = _text(r, "original_path"), _text(r, "photoshop_path")
      assert original == f"originals/{_text(r, 'original_id')}.jpg"
      assert photoshop.startswith(f"photoshops/{_text(r, 'original_id')}/")
      # The files' bytes, never re-encoded.
      assert bytes(r["original"]) == (release / original).read_bytes()
      assert bytes(r["photoshop"]) == (release / photoshop).read_bytes()
  err = capfd.readouterr().err.splitlines()
  assert sum("test_pairs.csv:4" in line and "bad.png" in line for line in err) == 1
  assert sum("test_pairs.csv:6" in line and "o9.jpg" in line for line in err) == 1
  assert sum("skipped" in line for line in err) == 2


def test_bad_layouts_fail_with_the_file_named(tmp_path):
  root = tmp_path / "release"
  (root / "originals").mkdir(parents=True)
  (root / "originals" / "o0.jpg").write_bytes(b"")  # TFDS refuses an empty manual_dir itself
  with pytest.raises(ValueError, match="no test_pairs.csv"):
    psbattles.load(root, data_dir=tmp_path / "tfds")
  with pytest.raises(ValueError, match="no pair CSVs"):
    b = psbattles.builder(root, data_dir=tmp_path / "tfds")
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
  (root / "test_pairs.csv").write_text("orig,photoshop\n")
  with pytest.raises(ValueError, match=r"test_pairs\.csv: header lacks original"):
    psbattles.load(root, data_dir=tmp_path / "tfds")
  with pytest.raises(ValueError, match="no val_pairs.csv"):
    psbattles.load(root, data_dir=tmp_path / "tfds", split="val")
  with pytest.raises(NotADirectoryError):
    psbattles.builder(tmp_path / "missing", data_dir=tmp_path)


def test_prepared_dataset_is_reused_until_a_csv_changes(tmp_path):
  root = _release(tmp_path / "release")
  first = psbattles.builder(root, data_dir=tmp_path).builder_config.name
  assert psbattles.builder(root, data_dir=tmp_path).builder_config.name == first
  (root / "val_pairs.csv").write_text(HEADER + "originals/o0.jpg,photoshops/o0/p0.png\n")
  assert psbattles.builder(root, data_dir=tmp_path).builder_config.name != first


def test_box_heatmap_is_icn_coverage_normalised_by_its_peak():
  # Left half of the image, rows 2/7..5/7: whole cells, except the half-covered middle column.
  heat = psbattles_eval.box_heatmap([(0.0, 2 / 7, 0.5, 3 / 7)], grid=7)
  expected = np.zeros((7, 7), np.float32)
  expected[2:5, :3] = 1.0
  expected[2:5, 3] = 0.5
  np.testing.assert_allclose(heat, expected, atol=1e-6)
  # Two annotators agreeing on a cell count twice there; the peak becomes 1.
  both = psbattles_eval.box_heatmap([(0, 0, 1 / 7, 1 / 7), (0, 0, 2 / 7, 1 / 7)], grid=7)
  assert both[0, 0] == 1.0 and both[0, 1] == 0.5 and both[1:].max() == 0
  assert psbattles_eval.box_heatmap([], grid=7).max() == 0


def test_gallery_plan_keeps_each_original_once():
  truth, first = psbattles_eval.gallery_plan(["a.jpg", "b.jpg", "a.jpg", "c.jpg", "b.jpg"])
  assert truth == [0, 1, 0, 2, 1]
  assert first == [0, 1, 3]


def _eval(release, tmp_path, capsys, *extra) -> tuple[dict, str]:
  """The JSON report of `provjax eval psbattles` and its stderr."""
  argv = ["eval", "psbattles", "--manual-dir", str(release), "--data-dir", str(tmp_path / "tfds")]
  assert cli.main([*argv, "--k", "4", "--no-progress", *extra]) == 0
  out, err = capsys.readouterr()
  return json.loads(out.strip().splitlines()[-1]), err


def test_eval_cli_end_to_end_on_the_released_models(release, tmp_path, capsys, results_dir):
  boxes = tmp_path / "boxes.csv"
  boxes.write_text(
      "photoshop,left,top,width,height\n"
      "p0.png,0.1,0.1,0.4,0.3\n"  # the file name, as MTurk's Input.photoshop gives it
      "photoshops/o1/p2.png,0.5,0.5,0.25,0.25\n"  # or the pair CSV's path
  )
  report, _ = _eval(release, tmp_path, capsys, "--boxes", str(boxes))
  assert report["benchmark"] == "psbattles" and report["split"] == "test"
  assert report["model"] == DEFAULT_DESCRIPTOR
  assert report["comparator"] == DEFAULT_COMPARATOR
  assert (report["pairs"], report["originals"], report["k"]) == (4, 3, 4)
  for stage in ("search", "re-ranked"):
    values = [report[f"{stage} R@{k}"] for k in (1, 5, 10, 100)]
    assert all(0 <= v <= 1 for v in values) and values == sorted(values)
    assert values[-1] == 1.0  # 3 originals, 4 candidates: the original is always among them
  assert 0 <= report["verdict acc"] <= 1
  assert 0 <= report["heatmap IoU"] <= 1 and report["heatmap pairs"] == 2
  assert "omitted" not in report
  rows = results.read(results_dir, "psbattles")
  metrics = {row["metric"]: row["value"] for row in rows}
  assert {row["model"] for row in rows} == {"simprov"}
  assert {row["tag"] for row in rows} == {DEFAULT_DESCRIPTOR.split(".", 1)[1]} and {
      row["split"] for row in rows
  } == {"test"}
  assert metrics["search R@1"] == report["search R@1"] and metrics["pairs"] == 4
  cmp = DEFAULT_COMPARATOR
  assert metrics[f"{cmp}/re-ranked R@1"] == report["re-ranked R@1"]
  assert metrics[f"{cmp}/heatmap IoU"] == pytest.approx(report["heatmap IoU"])
  assert metrics[f"{cmp}/heatmap pairs"] == 2


def test_without_boxes_iou_is_omitted_and_said(release, tmp_path, capsys, results_dir, monkeypatch):
  # The figures faked (the models' run is the test above): what the command makes of them.
  seen = {}

  def figures(source, descriptor, comparator, **kwargs):
    seen.update(kwargs, pairs=len(source))
    return {"pairs": 2, "originals": 2, **{f"search R@{k}": 1.0 for k in (1, 5, 10, 100)}}

  monkeypatch.setattr(psbattles_eval, "evaluate", figures)
  report, err = _eval(release, tmp_path, capsys, "--limit", "2", "--split", "train")
  assert (seen["limit"], seen["k"], seen["boxes"], seen["pairs"]) == (2, 4, {}, 2)
  assert report["split"] == "train"
  assert "heatmap IoU" not in report and "--boxes" in report["omitted"]["heatmap IoU"]
  assert "heatmap IoU omitted" in err
  assert {row["split"] for row in results.read(results_dir, "psbattles")} == {"train"}
  _eval(release, tmp_path, capsys, "--no-results")
  assert len(results.read(results_dir, "psbattles")) == 7  # --no-results: no rows added


@pytest.mark.slow
def test_eval_limit_takes_the_first_pairs(release, tmp_path, capsys):
  report, _ = _eval(release, tmp_path, capsys, "--limit", "2", "--no-results")
  assert (report["pairs"], report["originals"]) == (2, 2)  # o0/p0 and o1/p2
  assert report["re-ranked R@100"] == 1.0 and "omitted" in report


def test_eval_bad_arguments_exit_2(release, tmp_path, capsys):
  base = ["eval", "psbattles", "--data-dir", str(tmp_path / "tfds")]
  assert cli.main(base) == 2
  assert "--manual-dir" in capsys.readouterr().err
  argv = [*base, "--manual-dir", str(release)]
  assert cli.main([*argv, "--comparator", "simprov.synth-v2"]) == 2
  assert "not simprov_comparator" in capsys.readouterr().err
  assert cli.main([*argv, "--descriptor", "simprov.nope"]) == 2
  assert cli.main([*argv, "--split", "val"]) == 2
  assert "no val_pairs.csv" in capsys.readouterr().err
