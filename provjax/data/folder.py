"""A folder of photographs as an image source with honest splits.

Any directory works (searched recursively for jpg, jpeg, png, webp, bmp, tif,
tiff files), e.g. Debian's /usr/share/doc/opencv-doc/examples/data or
/usr/share/backgrounds/gnome. This is how weights get trained on more real photos
than the bundled samples; a fresh install never needs a folder.

Files are grouped into *sources* so near-identical files (stereo views, frames
of one sequence, light/dark variants of a wallpaper) are one source and land in
one split. The group key of a file is its stem with, repeatedly, trailing
digits, separators and a variant suffix stripped, then lower-cased:

- trailing digits and separators: ``left01``, ``left02`` -> ``left``;
  ``graf1``, ``graf3`` -> ``graf``; ``basketball1`` -> ``basketball``;
- a variant word after a separator (``-d``, ``_l``, ``-left``, ``_right``,
  ``-dark``, ``_original``, ``_modified`` ...): ``adwaita-d``, ``adwaita-l`` ->
  ``adwaita``; ``ela_original``, ``ela_modified`` -> ``ela``;
- one or two capitals ending a camelCase stem: ``aloeL``, ``aloeR``,
  ``aloeGT`` -> ``aloe``; ``leuvenA``, ``leuvenB`` -> ``leuven``;
- a stem that is only a stereo side (``left``, ``right``) becomes ``left``, so
  both cameras of a rig are one source.

Groups go to splits by a stable hash of their key (splits.assign_groups).
The rule only sees names: two unrelated files with one key are merely kept
together (harmless), but near-copies with unrelated names are not found.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
import re
import sys

import numpy as np
from PIL import Image

from provjax.data import splits
from provjax.data.images import ImageError, read_image

PHOTO_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
MAX_SIDE = 1024  # longer sides are downscaled on load, to bound memory
MIN_SIDE = 64  # smaller images (icons, templates) are skipped

_VARIANT_WORDS = "l|r|d|a|b|left|right|dark|light|gt|orig|original|modified|edited|white|black"
_STRIP_RULES = (
    re.compile(r"[\s_.\-]*\d+$"),  # trailing digits (and the separator before them)
    re.compile(r"[\s_.\-]+$"),  # trailing separators
    re.compile(rf"[\s_.\-]+(?:{_VARIANT_WORDS})$", re.IGNORECASE),  # adwaita-d, ela_original
    re.compile(r"(?<=[a-z0-9])[A-Z]{1,2}$"),  # camelCase variant: aloeL, aloeGT, leuvenA
)
_SIDES = {"right": "left"}  # both views of a stereo rig: one source


def group_key(stem: str) -> str:
  """The source group of a file stem (the rule is in the module docstring)."""
  key = stem
  while True:
    stripped = key
    for rule in _STRIP_RULES:
      stripped = rule.sub("", stripped)
    if not stripped or stripped == key:
      break
    key = stripped
  key = key.lower()
  return _SIDES.get(key, key)


def list_photos(root: str | os.PathLike) -> list[Path]:
  """Photo files under `root`, recursively, sorted by path (chosen by extension).

  Raises:
    NotADirectoryError: if `root` is not an existing directory.
  """
  root = Path(root).expanduser()
  if not root.is_dir():
    raise NotADirectoryError(f"{root}: not a directory")
  return sorted(p for p in root.rglob("*") if p.suffix.lower() in PHOTO_EXTENSIONS and p.is_file())


def groups(root: str | os.PathLike) -> dict[str, list[Path]]:
  """{group key: files} for the photos under `root`."""
  out: dict[str, list[Path]] = {}
  for path in list_photos(root):
    out.setdefault(group_key(path.stem), []).append(path)
  return out


def split_groups(root: str | os.PathLike) -> dict[str, str]:
  """{group key: split} for the photos under `root` (splits.assign_groups)."""
  return splits.assign_groups(groups(root))


def fingerprint(root: str | os.PathLike) -> str:
  """A short hash of the folder's path and file list, to name prepared datasets by."""
  root = Path(root).expanduser().resolve()
  digest = hashlib.sha256(str(root).encode())
  for path in list_photos(root):
    digest.update(b"\0" + str(path.relative_to(root)).encode())
  return digest.hexdigest()[:10]


def _fit(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
  """Downscales so the longer side is at most `max_side`; read-only, since it is cached."""
  height, width = image.shape[:2]
  scale = max_side / max(height, width)
  if scale < 1:
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
  image = np.ascontiguousarray(image)
  image.flags.writeable = False
  return image


def _load(path: Path) -> np.ndarray | None:
  """One photo, fitted; None (with a one-line warning) if unreadable, None if too small."""
  try:
    image = read_image(path)
  except ImageError as e:
    print(f"provjax: skipping unreadable image {e}", file=sys.stderr)
    return None
  if min(image.shape[:2]) < MIN_SIDE:
    return None
  return _fit(image)


@functools.lru_cache(maxsize=16)
def _load_split(root: str, split: str) -> tuple[tuple[str, np.ndarray], ...]:
  assignment = split_groups(root)
  out = []
  for key, paths in groups(root).items():
    if assignment[key] != split:
      continue
    out.extend((key, image) for image in map(_load, paths) if image is not None)
  return tuple(out)


def load_split(root: str | os.PathLike, split: str) -> tuple[tuple[str, np.ndarray], ...]:
  """The photos of `split` under `root`, as (group key, image) pairs; cached per process.

  Only that split's files are read. Images are HxWx3 uint8, read-only, with
  the longer side at most MAX_SIDE; unreadable files are skipped with a
  one-line warning on stderr, images under MIN_SIDE pixels are skipped.
  """
  return _load_split(str(Path(root).expanduser().resolve()), splits.check_split(split))
