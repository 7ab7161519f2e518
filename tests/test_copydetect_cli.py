"""`provjax copydetect` and `provjax eval isc` as a user runs them, on photographs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image
import pytest
import skimage.data

from provjax import cli
from provjax.copydetect import isc_io
from provjax.transforms import copy_recipe

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  """References (4 photos), queries (a copy of each + 2 unrelated photos + a corrupt file)."""
  root = tmp_path_factory.mktemp("icd")
  refs, queries = root / "refs", root / "queries"
  refs.mkdir()
  queries.mkdir()
  rng = np.random.default_rng(0)
  images = [getattr(skimage.data, name)() for name in PHOTOS]
  images = [np.repeat(im[..., None], 3, 2) if im.ndim == 2 else im[..., :3] for im in images]
  gt = []
  for i, im in enumerate(images[:4]):
    Image.fromarray(im).save(refs / f"R{i:02d}.png")
    copy = copy_recipe.make_query(im, rng, "benign", donors=[]).image
    Image.fromarray(copy).save(queries / f"Q{i:02d}.jpg", quality=90)
    gt.append((f"Q{i:02d}", f"R{i:02d}"))
  for i, im in enumerate(images[4:], start=4):
    Image.fromarray(im).save(queries / f"Q{i:02d}.png")
    gt.append((f"Q{i:02d}", ""))
  (queries / "Q99.jpg").write_bytes(b"\xff\xd8 not a jpeg")
  gt_path = root / "gt.csv"
  with open(gt_path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["query_id", "reference_id"])
    w.writerows(gt)
  return {"refs": refs, "queries": queries, "gt": gt_path, "root": root}


def test_thumbnail_reference_writes_the_official_csv_and_skips_a_bad_file(folders, capsys):
  out = folders["root"] / "preds.csv"
  argv = ["copydetect", "--queries", str(folders["queries"]), "--refs", str(folders["refs"])]
  argv += ["--out", str(out), "--model", "thumbnail", "--k", "2", "--no-progress"]
  argv += ["--descriptors", str(folders["root"] / "desc")]
  code = cli.main(argv)
  captured = capsys.readouterr()
  assert code == 1  # the corrupt query was skipped, the rest went on
  assert "Q99.jpg" in captured.err and len(captured.err.strip().splitlines()) == 1
  summary = json.loads(captured.out)
  assert summary["queries"] == 6 and summary["references"] == 4 and summary["skipped"] == 1
  header = out.read_text().splitlines()[0]
  assert header == "query_id,reference_id,score"
  preds = isc_io.read_predictions(out)
  assert len(preds) == 6 * 2 and {q for q, _, _ in preds} == {f"Q{i:02d}" for i in range(6)}
  best = {}
  for q, r, s in preds:
    if s > best.get(q, ("", -np.inf))[1]:
      best[q] = (r, s)
  assert all(best[f"Q{i:02d}"][0] == f"R{i:02d}" for i in range(4))  # benign copies found
  names, vectors = isc_io.read_descriptors(folders["root"] / "desc" / "query_descriptors.hdf5")
  assert list(names) == [f"Q{i:02d}" for i in range(6)] and vectors.shape == (6, 256)
  np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)

  code = cli.main(["eval", "isc", "--gt", str(folders["gt"]), "--preds", str(out)])
  metrics = json.loads(capsys.readouterr().out)
  assert code == 0 and metrics["num_gt"] == 4 and metrics["recall_at_rank1"] == 1.0
  assert 0.0 < metrics["micro_ap"] <= 1.0


def test_descriptor_files_wider_than_the_track_are_flagged(folders, capsys):
  argv = ["copydetect", "--queries", str(folders["queries"]), "--refs", str(folders["refs"])]
  argv += ["--out", str(folders["root"] / "p.csv"), "--no-progress", "--verify", "0"]
  for share, dim in ((None, 512), ("0", 256)):  # the default's share (0.5), then none
    desc = folders["root"] / f"desc-{dim}"
    extra = ["--descriptors", str(desc)] + (["--thumbnail-weight", share] if share else [])
    cli.main(argv + extra)
    err = capsys.readouterr().err
    _, vectors = isc_io.read_descriptors(desc / "reference_descriptors.hdf5")
    assert vectors.shape[1] == dim
    assert ("descriptor track allows 256" in err) == (dim > 256), err


def test_bad_arguments_exit_2(folders, capsys):
  missing = str(folders["root"] / "nowhere")
  argv = ["copydetect", "--queries", missing, "--refs", str(folders["refs"])]
  assert cli.main(argv + ["--out", "x.csv", "--model", "thumbnail"]) == 2
  assert "not a directory" in capsys.readouterr().err
  argv = ["copydetect", "--queries", str(folders["queries"]), "--refs", str(folders["refs"])]
  argv += ["--out", "x.csv", "--model", "thumbnail", "--score-norm", "copynce"]
  assert cli.main(argv) == 2  # score normalisation without a background set
  assert "background" in capsys.readouterr().err
  argv = ["copydetect", "--queries", str(folders["queries"]), "--refs", str(folders["refs"])]
  with pytest.raises(SystemExit):  # argparse: a share of 1 is the thumbnail alone (--model)
    cli.main(argv + ["--out", "x.csv", "--thumbnail-weight", "1"])
  assert "--model thumbnail" in capsys.readouterr().err
  assert cli.main(["eval", "isc", "--gt", str(folders["gt"])]) == 2


def test_verify_lifts_the_copies_above_every_unrelated_query(folders, capsys):
  out = folders["root"] / "verified.csv"
  argv = ["copydetect", "--queries", str(folders["queries"]), "--refs", str(folders["refs"])]
  argv += ["--out", str(out), "--model", "thumbnail", "--k", "2", "--verify", "4", "--no-progress"]
  assert cli.main(argv) == 1  # the corrupt query
  summary = json.loads(capsys.readouterr().out)
  assert summary["protocol"]["verify"] == 4 and summary["predictions"] == 6 * 2
  preds = isc_io.read_predictions(out)
  copies = [s for q, r, s in preds if (q, r) in {(f"Q{i:02d}", f"R{i:02d}") for i in range(4)}]
  others = [s for q, r, s in preds if (q, r) not in {(f"Q{i:02d}", f"R{i:02d}") for i in range(4)}]
  assert len(copies) == 4 and min(copies) > max(others)  # µAP 1: verified copies come first
