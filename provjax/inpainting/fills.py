"""Inpainted fills as forgeries: a folder TruFor can train on or be evaluated on.

`write_fill_folder` runs any fill (a SafePaint `Inpainter`, the classical
`provjax.transforms.inpaint.inpaint`, ...) over (name, image, hole) triples
and writes the generic forgery layout that provjax.data.forensics reads
(its `folder` builder; TruFor's `config.data.folder`):

    out_dir/fake/<name>.png    the filled image
    out_dir/masks/<name>.png   the hole, 255 = filled (the forged pixels)
    out_dir/real/<name>.png    the image itself, its authentic counterpart

This is the blue team's half of SafePaint's red-team loop: a detector
fine-tuned on these learns the inpainter's traces.

    counts = write_fill_folder(triples, Inpainter(model), "runs/fills")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
import contextlib
import os
from pathlib import Path
import tempfile

import numpy as np

from provjax.data.images import encode_png

FAKE, MASKS, REAL = "fake", "masks", "real"


def _checked(name: str, image, hole) -> tuple[np.ndarray, np.ndarray]:
  """(image HxWx3 uint8, hole HxW bool) of one triple, or ValueError naming it."""
  if not name or name.startswith(".") or Path(name).name != name:
    raise ValueError(f"{name!r}: a fill's name must be a plain file stem")
  image, hole = np.asarray(image), np.asarray(hole)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"{name}: expected an HxWx3 uint8 image, got {image.dtype} {image.shape}")
  if hole.dtype != bool or hole.shape != image.shape[:2]:
    raise ValueError(
        f"{name}: expected an HxW bool hole of {image.shape[:2]}, got {hole.dtype} {hole.shape}"
    )
  if not hole.any():
    raise ValueError(f"{name}: the hole is empty, so its fill would be an unedited image")
  return image, hole


def fill_image(fill_fn: Callable, image: np.ndarray, hole: np.ndarray, name: str) -> np.ndarray:
  """`fill_fn(image, hole)` inside the hole and `image` outside it, so the mask is exact.

  A merged fill (SafePaint's output, the classical inpainting) is unchanged by this.
  """
  filled = np.asarray(fill_fn(image, hole))
  if filled.dtype != np.uint8 or filled.shape != image.shape:
    raise ValueError(
        f"{name}: the fill returned {filled.dtype} {filled.shape}, not uint8 {image.shape}"
    )
  return np.where(hole[..., None], filled, image)


def write_atomic(path: Path, data: bytes) -> None:
  """`data` to `path` through a synced temporary file beside it: never a partial file."""
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


def write_fill_folder(
    pairs: Iterable[tuple[str, np.ndarray, np.ndarray]],
    fill_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    out_dir: str | os.PathLike,
    *,
    authentic: bool = True,
) -> dict[str, int]:
  """Writes the fill of each (name, image, hole) in the generic forgery layout.

  Each file is written atomically, the mask and the authentic image before
  the fake, so an interrupted run never leaves a fake without its mask.
  Files already in `out_dir` under the same names are replaced; others stay
  (and are read with the rest).

  Args:
    pairs: (name, image HxWx3 uint8, hole HxW bool with True = fill) triples;
      names are unique plain file stems.
    fill_fn: any fill, `fill_fn(image, hole) -> HxWx3 uint8`; pixels outside
      the hole are taken from the image whatever it returns (`fill_image`).
    out_dir: the folder to write fake/, masks/ and real/ under.
    authentic: also write real/<name>.png, the unedited image.

  Returns:
    How many files went into each of fake/, masks/ and real/.

  Raises:
    ValueError: naming the triple, for a bad name (or a repeated one), image,
      hole or fill; the files of earlier triples are kept.
  """
  root = Path(out_dir)
  folders = (FAKE, MASKS, REAL) if authentic else (FAKE, MASKS)
  for folder in folders:
    (root / folder).mkdir(parents=True, exist_ok=True)
  counts, seen = dict.fromkeys((FAKE, MASKS, REAL), 0), set()
  for name, image, hole in pairs:
    image, hole = _checked(name, image, hole)
    if name in seen:
      raise ValueError(f"{name}: two fills of one name")
    seen.add(name)
    fake = fill_image(fill_fn, image, hole, name)
    files = [(MASKS, hole.astype(np.uint8) * 255)]
    files += [(REAL, image)] if authentic else []
    for folder, array in files + [(FAKE, fake)]:
      write_atomic(root / folder / f"{name}.png", encode_png(array))
      counts[folder] += 1
  return counts
