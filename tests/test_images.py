"""read_image on a corpus of odd and broken files: decoded right or one clear error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image
import pytest

from provjax.data.images import ImageError, list_images, read_image


def _png_header_only(width: int, height: int) -> bytes:
  """A PNG whose IHDR claims a huge size (decompression bomb) with no real data."""

  def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

  ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return (
      b"\x89PNG\r\n\x1a\n"
      + chunk(b"IHDR", ihdr)
      + chunk(b"IDAT", zlib.compress(b""))
      + chunk(b"IEND", b"")
  )


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
  buf = io.BytesIO()
  img.save(buf, fmt, **kw)
  return buf.getvalue()


def _rgb(w=40, h=24):
  y, x = np.mgrid[0:h, 0:w]
  return np.stack(
      [x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, 80)], -1
  ).astype(np.uint8)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  d = tmp_path_factory.mktemp("odd")
  rgb = Image.fromarray(_rgb())
  files = {}

  def put(name, data):
    (d / name).write_bytes(data)
    files[name] = d / name

  exif = Image.Exif()
  exif[0x0112] = 6  # rotate 90 degrees clockwise to view
  put("exif_rotated.jpg", _save(rgb, "JPEG", exif=exif, quality=95))
  put("cmyk.jpg", _save(rgb.convert("CMYK"), "JPEG", quality=95))
  pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
  pal.info["transparency"] = 0
  put("palette_transparent.png", _save(pal, "PNG", transparency=0))
  rgba = rgb.convert("RGBA")
  rgba.putalpha(0)  # fully transparent -> white
  put("rgba_clear.png", _save(rgba, "PNG"))
  put("la.png", _save(rgb.convert("LA"), "PNG"))
  put("gray.png", _save(rgb.convert("L"), "PNG"))
  put("onebit.png", _save(rgb.convert("1"), "PNG"))
  put("sixteen.png", _save(Image.fromarray(np.full((8, 8), 65535, np.uint16)), "PNG"))
  put("float.tif", _save(Image.fromarray(np.full((8, 8), 0.5, np.float32)), "TIFF"))
  frames = [Image.new("RGB", (10, 10), c) for c in ("red", "blue")]
  put("animated.gif", _save(frames[0], "GIF", save_all=True, append_images=frames[1:]))
  put("tiny.png", _save(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"))
  put("image.webp", _save(rgb, "WEBP", lossless=True))
  put("image.bmp", _save(rgb, "BMP"))
  full_jpeg = _save(rgb, "JPEG", quality=95)
  put("truncated.jpg", full_jpeg[: len(full_jpeg) // 2])
  full_png = _save(rgb, "PNG")
  put("truncated.png", full_png[: len(full_png) - 30])
  put("empty.png", b"")
  put("random.jpg", np.random.default_rng(0).bytes(2000))
  put("text.jpg", b"hello, I am not a picture\n")
  put("bomb.png", _png_header_only(100_000, 100_000))
  return d, files


GOOD = [
    "exif_rotated.jpg",
    "cmyk.jpg",
    "palette_transparent.png",
    "rgba_clear.png",
    "la.png",
    "gray.png",
    "onebit.png",
    "sixteen.png",
    "float.tif",
    "animated.gif",
    "tiny.png",
    "image.webp",
    "image.bmp",
]
BAD = [
    "truncated.jpg",
    "truncated.png",
    "empty.png",
    "random.jpg",
    "text.jpg",
    "bomb.png",
    "missing.png",
]


def test_corpus_is_large_enough(corpus):
  assert len(GOOD) + len(BAD) >= 15


@pytest.mark.parametrize("name", GOOD)
def test_odd_files_decode_to_rgb_uint8(corpus, name):
  _, files = corpus
  img = read_image(files[name])
  assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


@pytest.mark.parametrize("name", BAD)
def test_broken_files_raise_one_clear_error(corpus, name):
  d, _ = corpus
  with pytest.raises(ImageError) as e:
    read_image(d / name)
  message = str(e.value)
  assert name in message and "\n" not in message and e.value.reason


def test_decoded_content_is_right(corpus):
  _, files = corpus
  rot = read_image(files["exif_rotated.jpg"])
  assert rot.shape == (40, 24, 3)  # 40x24 landscape shown as portrait
  # Orientation 6: the original top-left corner (dark red=0, green=0) ends top-right.
  assert rot[0, -1, 0] < 40 and rot[0, -1, 1] < 40 and rot[-1, -1, 0] > 200
  assert np.all(read_image(files["rgba_clear.png"]) == 255)  # alpha over white
  assert np.all(read_image(files["sixteen.png"]) == 255)  # 65535 / 257
  assert np.all(np.abs(read_image(files["float.tif"]).astype(int) - 128) <= 1)
  assert tuple(read_image(files["animated.gif"])[0, 0]) == (255, 0, 0)  # first frame
  assert tuple(read_image(files["tiny.png"])[0, 0]) == (1, 2, 3)
  np.testing.assert_array_equal(read_image(files["image.webp"]), _rgb())


def test_bytes_input_and_max_pixels(corpus):
  _, files = corpus
  data = files["image.bmp"].read_bytes()
  np.testing.assert_array_equal(read_image(data), _rgb())
  with pytest.raises(ImageError, match="too large"):
    read_image(data, max_pixels=100, name="small-limit.bmp")


def test_list_images_finds_by_extension(corpus):
  d, _ = corpus
  found = {p.name for p in list_images(d)}
  assert "image.bmp" in found and "float.tif" in found and "text.jpg" in found
