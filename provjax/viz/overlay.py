"""Pictures a person can read: heatmap overlays and labelled panels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from PIL import Image, ImageDraw, ImageFont


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  mode_image = Image.fromarray(image)
  return np.asarray(mode_image.resize((width, height), Image.Resampling.BILINEAR))


def resize_map(values: np.ndarray, height: int, width: int) -> np.ndarray:
  """Float map resize (bilinear), e.g. a heatmap onto an image's pixels."""
  img = Image.fromarray(values.astype(np.float32), mode="F")
  return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR))


def overlay(
    image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.6, threshold: float = 0.5
) -> np.ndarray:
  """Tint an RGB image red where a [0, 1] heatmap (any size) is hot, outline the hot area.

  A single saturated hue reads on any photo, where a multi-colour map gets
  lost in the picture's own colours; the outline marks heat >= `threshold`.
  """
  h, w = image.shape[:2]
  heat = np.clip(resize_map(heatmap, h, w), 0.0, 1.0)
  weight = (alpha * heat)[..., None]
  red = np.array([230.0, 20.0, 20.0], np.float32)
  out = image.astype(np.float32) * (1 - weight) + red * weight
  hot = heat >= threshold
  edge = hot & ~ndimage.binary_erosion(hot, iterations=max(1, round(min(h, w) / 150)))
  out[edge] = (255.0, 255.0, 0.0)
  return out.round().astype(np.uint8)


def panel(images: list[np.ndarray], titles: list[str], height: int = 256) -> np.ndarray:
  """Side-by-side images at a common height, each with a title bar above it."""
  font = ImageFont.load_default(size=14)
  bar = 22
  tiles = []
  for image, title in zip(images, titles):
    h, w = image.shape[:2]
    tile = Image.new("RGB", (max(1, round(w * height / h)), height + bar), "white")
    tile.paste(Image.fromarray(resize(image, height, tile.width)), (0, bar))
    ImageDraw.Draw(tile).text((4, 3), title, fill="black", font=font)
    tiles.append(np.asarray(tile))
  gap = np.full((height + bar, 6, 3), 255, np.uint8)
  parts = [t for tile in tiles for t in (tile, gap)][:-1]
  return np.concatenate(parts, axis=1)


def save_png(image: np.ndarray, path) -> None:
  Image.fromarray(image).save(path)
