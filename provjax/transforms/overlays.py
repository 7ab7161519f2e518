"""Benign overlays: text, emoji-like stickers and small pasted pictures.

SImProv treats overlays as benign (specs/simprov.md section 10), so they never
set the mask; but the covered pixels show none of the original, so their
coords (and geo) become -1 wherever the overlay is mostly opaque
(alpha >= `OPAQUE`). Fainter overlay pixels keep their source, as the
original still shows through.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from provjax.transforms import core
from provjax.transforms.core import Edited

OPAQUE = 0.5  # overlay alpha from which a pixel counts as having no source

_WORDS = (
    "hello",
    "world",
    "sale",
    "news",
    "photo",
    "lol",
    "wow",
    "copy",
    "meme",
    "best",
    "day",
    "ever",
    "cat",
    "dog",
    "sunset",
    "beach",
    "follow",
    "like",
    "share",
    "original",
    "breaking",
    "omg",
    "free",
    "look",
    "this",
    "is",
    "not",
    "fake",
    "real",
    "2024",
    "#1",
    "team",
    "summer",
    "city",
    "party",
)


def _position(
    rng: np.random.Generator, frame: tuple[int, int], size: tuple[int, int]
) -> tuple[int, int]:
  """Random (top, left) keeping a `size` box inside `frame` when it fits."""
  return (
      int(rng.integers(0, max(0, frame[0] - size[0]) + 1)),
      int(rng.integers(0, max(0, frame[1] - size[1]) + 1)),
  )


def _place(
    frame: tuple[int, int], rgb: np.ndarray, alpha: np.ndarray, top: int, left: int
) -> tuple[np.ndarray, np.ndarray]:
  """Puts a patch on a full-frame layer and alpha, clipped to the frame."""
  h, w = frame
  layer = np.zeros((h, w, 3), np.uint8)
  full = np.zeros((h, w), np.float32)
  ph, pw = alpha.shape
  y0, x0 = max(top, 0), max(left, 0)
  y1, x1 = min(top + ph, h), min(left + pw, w)
  if y1 > y0 and x1 > x0:
    src = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    layer[y0:y1, x0:x1] = rgb[src]
    full[y0:y1, x0:x1] = alpha[src]
  return layer, full


def composite(e: Edited, layer: np.ndarray, alpha: np.ndarray) -> Edited:
  """Blends a full-frame benign overlay and invalidates its opaque pixels."""
  e = core.replace(e, image=core.blend(e.image, layer, alpha))
  return core.invalidate(e, alpha >= OPAQUE, geometric=True)


def overlay_text(
    e: Edited,
    rng: np.random.Generator,
    text: str | None = None,
    size: float | None = None,
    opacity: float | None = None,
    color=None,
    position: tuple[int, int] | None = None,
) -> Edited:
  """Draws `text` with PIL's default font.

  Args:
    e: the record to edit.
    rng: draws what is not given.
    text: 1-3 random words when None.
    size: font height as a fraction of the shorter side (0.1-0.3 if None).
    opacity: 0.4-1 if None.
    color: RGB, random if None.
    position: (top, left) of the text, random if None.
  """
  h, w = e.shape
  text = text or " ".join(rng.choice(_WORDS, size=rng.integers(1, 4)))
  size = rng.uniform(0.1, 0.3) if size is None else size
  opacity = rng.uniform(0.4, 1.0) if opacity is None else opacity
  color = rng.integers(0, 256, size=3) if color is None else color
  font = ImageFont.load_default(size=max(8, round(size * min(h, w))))
  x0, y0, x1, y1 = font.getbbox(text)
  if position is None:
    position = _position(rng, (h, w), (y1, x1))
  canvas = Image.new("L", (w, h), 0)
  ImageDraw.Draw(canvas).text((position[1], position[0]), text, fill=255, font=font)
  alpha = np.asarray(canvas, np.float32) * (opacity / 255.0)
  layer = np.broadcast_to(np.asarray(color, np.uint8), (h, w, 3))
  return composite(e, layer, alpha)


def draw_emoji(rng: np.random.Generator, px: int, kind: str | None = None) -> Image.Image:
  """A procedural px x px RGBA sticker: a smiley, a heart or a star.

  Drawn at 4x and downsampled so the edges are antialiased.
  """
  kind = kind or str(rng.choice(["face", "heart", "star"]))
  s = 4 * px
  img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
  d = ImageDraw.Draw(img)
  col = tuple(int(v) for v in rng.integers(40, 256, size=3)) + (255,)
  ink = (30, 20, 20, 255)
  if kind == "face":
    d.ellipse([0, 0, s - 1, s - 1], fill=col, outline=ink, width=max(1, s // 40))
    eye = s // 10
    for cx in (0.33 * s, 0.67 * s):
      d.ellipse([cx - eye, 0.32 * s, cx + eye, 0.32 * s + 2 * eye], fill=ink)
    mood = (20, 160) if rng.random() < 0.7 else (200, 340)  # smile or frown
    d.arc([0.22 * s, 0.3 * s, 0.78 * s, 0.82 * s], *mood, fill=ink, width=max(1, s // 20))
  elif kind == "heart":
    r = s // 4
    d.ellipse([0, 0.1 * s, 2 * r, 0.1 * s + 2 * r], fill=col)
    d.ellipse([s - 2 * r, 0.1 * s, s - 1, 0.1 * s + 2 * r], fill=col)
    d.polygon([(0.02 * s, 0.45 * s), (0.98 * s, 0.45 * s), (s / 2, s - 1)], fill=col)
  else:
    ang = np.pi / 2 + np.arange(10) * np.pi / 5
    rad = np.where(np.arange(10) % 2 == 0, 0.5, 0.2) * s
    d.polygon(
        list(zip(s / 2 + rad * np.cos(ang), s / 2 - rad * np.sin(ang))), fill=col, outline=ink
    )
  return img.resize((px, px), Image.Resampling.LANCZOS)


def overlay_emoji(
    e: Edited,
    rng: np.random.Generator,
    size: float | None = None,
    opacity: float | None = None,
    position: tuple[int, int] | None = None,
    kind: str | None = None,
) -> Edited:
  """Pastes a procedural emoji-like sticker (AugLy overlay_emoji).

  `size` is its side as a fraction of the shorter image side (0.1-0.5 if
  None), `opacity` 0.7-1 if None, `position` its (top, left).
  """
  h, w = e.shape
  size = rng.uniform(0.1, 0.5) if size is None else size
  opacity = rng.uniform(0.7, 1.0) if opacity is None else opacity
  px = max(4, round(size * min(h, w)))
  sticker = np.asarray(draw_emoji(rng, px, kind))
  if position is None:
    position = _position(rng, (h, w), (px, px))
  alpha = sticker[..., 3].astype(np.float32) * (opacity / 255.0)
  layer, alpha = _place((h, w), sticker[..., :3], alpha, *position)
  return composite(e, layer, alpha)


def random_picture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  """A smooth random colour picture (bicubic-upsampled noise), HxWx3 uint8."""
  small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
  return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


def overlay_image(
    e: Edited,
    rng: np.random.Generator,
    other: np.ndarray | None = None,
    scale: float | None = None,
    opacity: float | None = None,
    position: tuple[int, int] | None = None,
) -> Edited:
  """Pastes a small other picture (a random smooth one if `other` is None).

  `scale` is its width as a fraction of the image width (0.15-0.5 if None;
  its aspect is kept, its height capped at the image height), `opacity`
  0.8-1 if None, `position` its (top, left).
  """
  h, w = e.shape
  scale = rng.uniform(0.15, 0.5) if scale is None else scale
  opacity = rng.uniform(0.8, 1.0) if opacity is None else opacity
  if other is None:
    other = random_picture(rng, 64, 64)
  other = core.as_rgb_uint8(other)
  pw = max(1, round(scale * w))
  ph = min(h, max(1, round(pw * other.shape[0] / other.shape[1])))
  patch = np.asarray(Image.fromarray(other).resize((pw, ph), Image.Resampling.BILINEAR))
  if position is None:
    position = _position(rng, (h, w), (ph, pw))
  alpha = np.full((ph, pw), opacity, np.float32)
  layer, alpha = _place((h, w), patch, alpha, *position)
  return composite(e, layer, alpha)
