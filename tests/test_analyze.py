"""`provjax analyze` as a user runs it: every released system on a photograph, one JSON line
and one page per image, a bad file on its own line, missing systems said, never faked."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path
import re
import urllib.parse

import numpy as np
from PIL import Image
import pytest
from skimage import data

from provjax import analyze, cli
from provjax.copydetect.cli import DEFAULT_MODEL
from provjax.copydetect.detector import CopyDetector
from provjax.provenance.gallery import Gallery
from provjax.viz.overlay import resize

SLOTS = ("provenance", "forgery", "attribution", "copy")


def _run(argv: list[str]) -> tuple[int, list[dict]]:
  """`provjax analyze ARGV` through the command's own parser: exit code and JSON lines."""
  p = argparse.ArgumentParser()
  analyze.add_command(p.add_subparsers())
  args = p.parse_args(["analyze", *argv, "--no-progress"])
  stdout = io.StringIO()
  with contextlib.redirect_stdout(stdout):
    rc = args.fn(args)
  return rc, [json.loads(line) for line in stdout.getvalue().splitlines()]


def _images_on(page: Path) -> list[Path]:
  """The files every <img src> of an HTML page points at."""
  srcs = re.findall(r"<img src='([^']+)'", page.read_text())
  return [page.parent / urllib.parse.unquote(s) for s in srcs]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """coffee.png to analyse, a truncated PNG, and a gallery holding coffee + two other photos."""
  root = tmp_path_factory.mktemp("analyze")
  small = lambda im: resize(im, 120, 180)  # one size: TruFor compiles once for the module
  Image.fromarray(small(data.coffee())).save(root / "coffee.png")
  (root / "broken.png").write_bytes((root / "coffee.png").read_bytes()[:100])
  (root / "db").mkdir()
  for name in ("coffee", "chelsea", "astronaut"):
    Image.fromarray(small(getattr(data, name)())).save(root / "db" / f"{name}.png")
  build = ["index", "build", str(root / "db"), "--index", str(root / "gallery")]
  with contextlib.redirect_stdout(io.StringIO()):
    assert cli.main(build + ["--backend", "exact", "--no-progress"]) == 0
  return root


@pytest.fixture(scope="module")
def with_gallery(photos):
  """One run of every released system on coffee.png and broken.png against the gallery."""
  out = photos / "out"
  images = [str(photos / "coffee.png"), str(photos / "broken.png")]
  rc, lines = _run([*images, "--index", str(photos / "gallery"), "--out", str(out)])
  return rc, lines, out


def test_every_system_fills_its_slot(photos, with_gallery):
  rc, lines, out = with_gallery
  assert rc == 1  # broken.png failed
  assert [r["path"] for r in lines] == [str(photos / "coffee.png"), str(photos / "broken.png")]
  coffee = lines[0]
  assert coffee["error"] is None and coffee["page"] == str(out / "coffee.html")
  for slot in SLOTS:
    assert coffee[slot] and "missing" not in coffee[slot] and "error" not in coffee[slot], slot
  original = str((photos / "db" / "coffee.png").resolve())
  prov = coffee["provenance"]
  assert prov["nearest"]["path"] == original and prov["verdict"] in ("benign", "manipulated")
  assert prov["match"]["path"] == original
  assert 0.0 <= coffee["forgery"]["score"] <= 1.0
  with np.load(coffee["forgery"]["map_npz"]) as z:
    assert z["map"].shape == (120, 180)
  attribution = coffee["attribution"]
  assert np.isclose(sum(attribution["probabilities"].values()), 1.0, atol=1e-4)
  copy = coffee["copy"]
  assert copy["candidates"][0]["path"] == original and copy["candidates"][0]["score"] > 0.99
  assert len(copy["candidates"]) == 3 == copy["references"] and copy["skipped"] == 0
  for key in ("heatmap_png", "heatmap_npy"):
    assert Path(prov[key]).is_file()


def test_pages_link_existing_pictures(with_gallery):
  _, lines, out = with_gallery
  page = Path(lines[0]["page"])
  html = page.read_text()
  assert "Integrity score" in html and "Verdict" in html and "Copy score" in html
  assert "<script" not in html and "http" not in html
  index = out / "index.html"
  for p in (page, index):
    pictures = _images_on(p)
    assert pictures and all(f.is_file() for f in pictures), p
  assert "coffee.html" in index.read_text()


def test_bad_file_gets_its_own_line_and_is_listed_as_failed(with_gallery):
  _, lines, out = with_gallery
  broken = lines[1]
  assert "broken.png" in broken["error"] and broken["page"] is None
  assert all(broken[slot] is None for slot in SLOTS)
  index = (out / "index.html").read_text()
  assert "failed" in index and "broken.png" in index


def test_copy_descriptors_are_cached_and_rebuilt_when_the_gallery_changes(
    photos, with_gallery, monkeypatch
):
  _, _, out = with_gallery
  cache = out / analyze.COPY_REFS
  assert cache.is_file()
  detector = CopyDetector.load(DEFAULT_MODEL, matcher="", score_norm="none", pcaw=0)
  gallery = Gallery.open(photos / "gallery")
  read = []
  monkeypatch.setattr(analyze, "_read_original", lambda p, s: read.append(p))
  refs = analyze.copy_references(detector, DEFAULT_MODEL, gallery, cache, progress=False)
  assert not read and len(refs["ids"]) == 3  # the cache was current: no original read
  detector.protocol.thumbnail_weight = 0.0  # other vectors: the cache is not current for them
  refs = analyze.copy_references(detector, DEFAULT_MODEL, gallery, cache, progress=False)
  assert len(read) == 3
  monkeypatch.undo()
  (photos / "db" / "chelsea.png").unlink()  # gone since indexing: skipped, not described
  refs = analyze.copy_references(detector, "another.model", gallery, cache, progress=False)
  assert refs["skipped"] == 1 and len(refs["ids"]) == 2
  with np.load(cache) as z:
    assert len(z["ids"]) == 2  # rebuilt for the new key, and written for the next run


def test_without_index_and_with_a_missing_system(photos, tmp_path):
  out = tmp_path / "out"
  rc, (line,) = _run(
      [str(photos / "coffee.png"), "--out", str(out), "--forgery-model", "trufor.nonexistent"]
  )
  assert rc == 0 and line["error"] is None
  assert line["provenance"] is None and line["copy"] is None
  forgery = line["forgery"]
  assert set(forgery) == {"model", "missing"} and "trufor.nonexistent" in forgery["missing"]
  assert line["attribution"]["source"]  # the systems that are there still run
  html = Path(line["page"]).read_text()
  assert html.count("Not available") == 3 and "no --index gallery given" in html
  assert "trufor.nonexistent" in html and "Integrity score" not in html
  assert all(f.is_file() for f in _images_on(Path(line["page"])))


def test_index_that_is_not_a_gallery_is_a_bad_argument(photos, tmp_path, capsys):
  rc, lines = _run([str(photos / "coffee.png"), "--index", str(photos), "--out", str(tmp_path)])
  assert rc == 2 and not lines
  assert "not a provjax gallery" in capsys.readouterr().err


def test_page_names_are_unique():
  stems = analyze.unique_stems(["a/x.png", "b/x.jpg", "x-2.png", "index.png"])
  assert stems == ["x", "x-3", "x-2", "index-2"]


def test_not_an_image_and_too_large_get_error_lines(photos, tmp_path):
  (tmp_path / "notes.png").write_text("not an image")
  missing = ["--forgery-model", "trufor.none", "--attribution-model", "repmix.none"]
  images = [str(tmp_path / "notes.png"), str(photos / "coffee.png")]
  rc, lines = _run([*images, "--out", str(tmp_path / "out"), "--max-pixels", "1000", *missing])
  assert rc == 1 and [r["path"] for r in lines] == images
  assert "not a recognised image" in lines[0]["error"] and "too large" in lines[1]["error"]
  assert not list((tmp_path / "out").glob(".analyze-*"))  # the staging folder is gone


class _FailsOn:
  """A batched system that fails on any chunk holding a given image."""

  key, batched, header = "attribution", True, {"model": "fake"}

  def __init__(self, bad: str):
    self.bad, self.calls = bad, 0

  def many(self, items, stage):
    self.calls += 1
    if any(it.path == self.bad for it in items):
      raise RuntimeError("boom")
    return [{**self.header, "value": it.path} for it in items]


def test_a_system_failing_on_one_image_costs_only_that_image():
  items = [
      analyze.Item(p, p, np.zeros((4, 4, 3), np.uint8), {}) for p in ("a.png", "b.png", "c.png")
  ]
  analyze._run(_FailsOn("b.png"), items, stage=None)
  assert [it.record["attribution"].get("value") for it in items] == ["a.png", None, "c.png"]
  assert items[1].errors == ["attribution: b.png: RuntimeError: boom"] and not items[0].errors
