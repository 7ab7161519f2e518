"""The README's picture of an analyze page, made with the commands the README shows.

Builds a two-photo gallery (scikit-image's coffee and chelsea), analyses a
JPEG crop of coffee against it, and screenshots the page in headless
Chromium (Debian: `apt install chromium`):

    python scripts/readme_pictures.py        # -> scripts/pictures/analyze.jpg
"""

from pathlib import Path
import shutil
import subprocess
import sys
import tempfile

from PIL import Image
from skimage import data

OUT = Path(__file__).resolve().parent / "pictures"


def run(*argv: str) -> None:
  print("$", " ".join(argv), file=sys.stderr)
  subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def main() -> int:
  browser = shutil.which("chromium") or shutil.which("chromium-browser")
  if browser is None:
    raise SystemExit("needs Chromium (Debian: apt install chromium)")
  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    (tmp / "originals").mkdir()
    Image.fromarray(data.coffee()).save(tmp / "originals/coffee.png")
    Image.fromarray(data.chelsea()).save(tmp / "originals/chelsea.png")
    Image.fromarray(data.coffee()[40:360, 60:540]).save(tmp / "crop.jpg", quality=85)
    run("provjax", "index", "build", str(tmp / "originals"), "--index", str(tmp / "gallery"))
    run("provjax", "analyze", str(tmp / "crop.jpg"), "--index", str(tmp / "gallery"),
        "--out", str(tmp / "analysis"), "--no-progress")  # fmt: skip
    shot = tmp / "shot.png"
    page = (tmp / "analysis/crop.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    run(browser, *flags, "--window-size=1100,2080", f"--screenshot={shot}", page)
    OUT.mkdir(exist_ok=True)
    Image.open(shot).convert("RGB").save(OUT / "analyze.jpg", quality=80, optimize=True)
  print(OUT / "analyze.jpg", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
