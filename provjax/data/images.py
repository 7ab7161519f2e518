"""Robust image decoding and encoding.

Every image that enters provjax, from a user's folder or from a dataset
record, goes through :func:`read_image`. It returns one canonical form,
HxWx3 uint8 RGB with EXIF orientation applied, or raises :class:`ImageError`
with a one-line message naming the file, so a batch job can report a bad
input and go on with the rest.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

# Modes whose transparency is composited over white rather than dropped, so a
# transparent background does not turn into arbitrary (often black) pixels.
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA", "P"})
# Single-channel modes holding more than 8 bits per pixel.
_WIDE_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})


class ImageError(ValueError):
  """An input that could not be decoded as an image.

  Attributes:
    path: the file name (or caller-supplied name) of the bad input.
    reason: a short, single-line explanation.
  """

  def __init__(self, path: str, reason: str):
    self.path = str(path)
    self.reason = " ".join(str(reason).split())  # one line, always
    super().__init__(f"{self.path}: {self.reason}")


def read_image(
    source: str | os.PathLike | bytes, *, max_pixels: int = 64_000_000, name: str | None = None
) -> np.ndarray:
  """Decodes an image file or encoded bytes to HxWx3 uint8 RGB.

  Applies EXIF orientation, takes the first frame of animated images,
  composites alpha over white and scales wide (16-bit, int32, float) data
  to 8 bits.

  Args:
    source: a path, or the encoded bytes of an image.
    max_pixels: images with more pixels than this are refused before they
      are decoded (decompression-bomb guard).
    name: how to name the input in errors; defaults to the path, or
      "<bytes>" for bytes.

  Returns:
    The decoded image, a C-contiguous HxWx3 uint8 array.

  Raises:
    ImageError: for a missing, empty, unreadable, truncated, corrupt,
      zero-size or oversized input. No other exception escapes.
  """
  if isinstance(source, (bytes, bytearray, memoryview)):
    label, data = name or "<bytes>", bytes(source)
  else:
    label = name or os.fspath(source)
    data = _read_file(source, label)
  if not data:
    raise ImageError(label, "empty file")
  try:
    return _decode(data, label, max_pixels)
  except ImageError:
    raise
  except Image.DecompressionBombError as e:
    raise ImageError(label, f"image too large: {e}") from e
  except Image.UnidentifiedImageError as e:
    raise ImageError(label, "not a recognised image format") from e
  except Exception as e:  # noqa: BLE001 - any decoder failure is bad input
    raise ImageError(label, f"corrupt image data ({_describe(e)})") from e


def _read_file(path: str | os.PathLike, label: str) -> bytes:
  """Reads a whole file, turning OS errors into ImageError."""
  try:
    return Path(path).read_bytes()
  except FileNotFoundError as e:
    raise ImageError(label, "file not found") from e
  except IsADirectoryError as e:
    raise ImageError(label, "is a directory, not a file") from e
  except OSError as e:
    raise ImageError(label, f"cannot read file ({_describe(e)})") from e


def failure_line(path: str, error: Exception) -> str:
  """One line naming the file and what went wrong with it (a CLI's `error` field).

  Errors whose message already starts with the file (ImageError, converter
  errors) are kept as they are, so the name is never said twice.
  """
  text = " ".join(str(error).split())
  if isinstance(error, ImageError) or text.startswith(str(path)):
    return text
  return f"{path}: {type(error).__name__}: {text}"


def _describe(e: BaseException) -> str:
  """Short text for an exception: its message, or its type if empty."""
  text = getattr(e, "strerror", None) or str(e)
  return text or type(e).__name__


def _decode(data: bytes, label: str, max_pixels: int) -> np.ndarray:
  """Opens, checks, fully decodes and normalises one encoded image."""
  with Image.open(io.BytesIO(data)) as im:
    _check_size(im, label, max_pixels)
    im.seek(0)  # animated images: the first frame
    im.load()  # forces a full decode, so truncation surfaces here
    oriented = ImageOps.exif_transpose(im)
    return _to_rgb(oriented)


def _check_size(im: Image.Image, label: str, max_pixels: int) -> None:
  """Refuses zero-size images and decompression bombs before decoding."""
  width, height = im.size
  if width <= 0 or height <= 0:
    raise ImageError(label, f"zero-size image ({width}x{height})")
  # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that. Treating its
  # limit as ours makes that warning an error without touching the global
  # warnings filter, which is not thread-safe under grain's reader threads.
  limit = max_pixels
  if Image.MAX_IMAGE_PIXELS is not None:
    limit = min(limit, Image.MAX_IMAGE_PIXELS)
  if width * height > limit:
    raise ImageError(
        label, f"image too large ({width}x{height} = {width * height} pixels," f" limit {limit})"
    )


def _to_rgb(im: Image.Image) -> np.ndarray:
  """Converts any Pillow mode to an HxWx3 uint8 RGB array."""
  if im.mode in _WIDE_MODES:
    gray = _scale_to_uint8(np.asarray(im))
    rgb = np.repeat(gray[..., None], 3, axis=-1)
  elif im.mode in _ALPHA_MODES:
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
  else:
    # RGB, L, 1, CMYK, YCbCr, LAB, HSV ... Pillow knows these conversions.
    rgb = np.asarray(im.convert("RGB"))
  return np.ascontiguousarray(rgb, dtype=np.uint8)


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
  """Scales wide single-channel data to uint8 by its real range.

  16-bit data is divided by 257 (65535 -> 255). int32 and float data are
  mapped from the smallest standard range that holds them ([0, 1] for
  floats, [0, 255], [0, 65535]); anything else is min-max stretched.
  """
  if values.dtype.kind == "u" and values.dtype.itemsize == 2:
    return np.round(values / 257.0).astype(np.uint8)
  x = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
  lo, hi = float(x.min()), float(x.max())
  if lo >= 0 and hi <= 1 and values.dtype.kind == "f":
    x = x * 255.0
  elif lo >= 0 and hi <= 255:
    pass
  elif lo >= 0 and hi <= 65535:
    x = x / 257.0
  else:
    x = (x - lo) * (255.0 / max(hi - lo, 1e-12))
  return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _as_pil(img: np.ndarray) -> Image.Image:
  """Wraps an HxW, HxWx3 or HxWx4 uint8 array as a Pillow image."""
  img = np.asarray(img)
  if img.dtype != np.uint8 or img.ndim not in (2, 3):
    raise ValueError(f"expected an HxW or HxWxC uint8 image, got {img.dtype} {img.shape}")
  if img.ndim == 3 and img.shape[-1] == 1:
    img = img[..., 0]
  return Image.fromarray(img)


def encode_png(img: np.ndarray) -> bytes:
  """Encodes a uint8 image (HxW, HxWx3 or HxWx4) as PNG bytes (lossless)."""
  buf = io.BytesIO()
  _as_pil(img).save(buf, format="PNG")
  return buf.getvalue()


def encode_jpeg(img: np.ndarray, quality: int = 90) -> bytes:
  """Encodes a uint8 image (HxW or HxWx3) as JPEG bytes at `quality` (1-100)."""
  pil = _as_pil(img)
  if pil.mode == "RGBA":
    raise ValueError("JPEG has no alpha channel; pass an RGB image")
  buf = io.BytesIO()
  pil.save(buf, format="JPEG", quality=int(quality))
  return buf.getvalue()


def read_small(path: str, sizes: tuple[int, ...]) -> tuple[np.ndarray, ...] | Exception:
  """The image at `path` resized (bilinear) to each `size` x `size`, or the error that stopped it.

  For decoding in worker processes: only the small copies travel back (full-size photos
  would not fit in memory), and a bad file comes back as its error instead of killing the
  pool.
  """
  try:
    image = _as_pil(read_image(path))
  except (ImageError, OSError) as e:
    return e
  return tuple(np.asarray(image.resize((s, s), Image.Resampling.BILINEAR)) for s in sizes)


def list_images(folder: str | os.PathLike) -> list[Path]:
  """Lists image files under `folder`, recursively, sorted by path.

  Files are chosen by extension (jpg jpeg png bmp gif tif tiff webp, any
  case); their content is not checked here (read_image does that).

  Raises:
    NotADirectoryError: if `folder` is not an existing directory.
  """
  return [Path(path) for path, _ in walk_images(folder)]


def walk_images(folder: str | os.PathLike) -> list[tuple[str, bool]]:
  """(path, is a symbolic link) of each image file under `folder`, sorted as
  `list_images` sorts them (by path components); links to directories are not
  followed (as `Path.rglob` does not).

  Strings and one `scandir` per directory: a gallery sync lists a million files.
  """
  root = os.fspath(folder)
  if not os.path.isdir(root):
    raise NotADirectoryError(f"{Path(root)}: not a directory")
  found, stack = [], [root]
  while stack:
    with os.scandir(stack.pop()) as entries:
      for entry in entries:
        if entry.is_dir(follow_symlinks=False):
          stack.append(entry.path)
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and entry.is_file():
          found.append((entry.path, entry.is_symlink()))
  return sorted(found, key=lambda item: item[0].split(os.sep))
