"""The HTML pages render in a real browser: headless Chromium, every image loads, not blank.

Slow (a browser start per page, the demo and analyze runs); skipped with a
message where no Chromium is installed (Debian: `apt install chromium`).
"""

import json
import os
from pathlib import Path
import shutil
import subprocess

import numpy as np
from PIL import Image
import pytest

from provjax import cli

pytestmark = pytest.mark.slow

BROWSER = next(
    (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
    None,
)
needs_browser = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium installed (Debian: apt install chromium)"
)
# Appended to a copy of the page: once everything has loaded, the title lists
# the images and the ones that failed (a missing file, a bad PNG).
PROBE = (
    "<script>window.addEventListener('load', () => {"
    "const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
    ".map(i => i.getAttribute('src'));"
    "document.title = 'PROBE:' + JSON.stringify({images: document.images.length, broken});"
    "});</script>"
)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]


def _chromium(*args: str) -> str:
  run = subprocess.run(
      [BROWSER, *FLAGS, *args], capture_output=True, text=True, timeout=120, check=True
  )
  return run.stdout


def check_page(page: Path, tmp_path: Path) -> dict:
  """Open `page`: its images (all must load) and a screenshot that must not be blank."""
  probe = page.with_name(f".probe-{page.name}")
  probe.write_text(page.read_text() + PROBE)
  try:
    dom = _chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
  finally:
    probe.unlink()
  title = dom.split("<title>PROBE:", 1)[1].split("</title>", 1)[0]
  found = json.loads(title.replace("&quot;", '"'))
  assert found["broken"] == [], f"{page}: images that did not load: {found['broken']}"
  shot = tmp_path / f"{page.stem}.png"
  _chromium("--window-size=1280,1600", f"--screenshot={shot}", page.as_uri())
  pixels = np.asarray(Image.open(shot).convert("L"), np.float32)
  assert pixels.std() > 5 and (pixels < 128).mean() > 0.002, f"{page}: the screenshot is blank"
  return found


@needs_browser
def test_probe_catches_a_missing_image(tmp_path):
  page = tmp_path / "p.html"
  page.write_text("<html><body><h1>text</h1><img src='gone.png'></body></html>")
  with pytest.raises(AssertionError, match="gone.png"):
    check_page(page, tmp_path)


@needs_browser
def test_leaderboard_page(tmp_path, capsys):
  out = tmp_path / "board.html"
  assert cli.main(["leaderboard", "--format", "html", "--out", str(out)]) == 0
  check_page(out, tmp_path)


@needs_browser
def test_demo_report(tmp_path):
  out = tmp_path / "demo"
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  run = subprocess.run(
      ["provjax", "demo", "--out", str(out), "--distractors", "20"],
      capture_output=True,
      text=True,
      env=env,
      timeout=1200,
  )
  assert run.returncode == 0, run.stderr[-2000:]
  found = check_page(out / "report.html", tmp_path)
  assert found["images"] > 0


@needs_browser
def test_analyze_pages(tmp_path, capsys):
  from skimage import data

  image = tmp_path / "coffee.png"
  Image.fromarray(data.coffee()[::2, ::2]).save(image)
  (tmp_path / "broken.png").write_bytes(image.read_bytes()[:200])
  out = tmp_path / "out"
  argv = ["analyze", str(image), str(tmp_path / "broken.png"), "--out", str(out), "--no-progress"]
  assert cli.main(argv) == 1  # the broken file
  capsys.readouterr()
  assert check_page(out / "coffee.html", tmp_path)["images"] >= 2  # the image, the forgery maps
  assert check_page(out / "index.html", tmp_path)["images"] >= 1
