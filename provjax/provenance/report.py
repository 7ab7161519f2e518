"""Pictures and JSON fields for provenance results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from provjax.provenance.engine import QueryResult
from provjax.viz.overlay import overlay, panel, save_png


def matched_image(result: QueryResult) -> np.ndarray:
  """The matched original at full size when its file is readable, else its thumbnail."""
  path = result.match and result.match.get("path")
  if path and Path(path).is_file():
    try:
      with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
    except OSError:
      pass
  return result.best_thumb


def _original_label(result: QueryResult) -> str:
  if not result.match:
    return "no match"
  return "matched original (file missing)" if result.match.get("missing") else "matched original"


def write_query_outputs(
    out: Path, stem: str, image: np.ndarray, result: QueryResult, top: int = 10
) -> dict:
  """Panel PNG (query | original | heatmap overlay) + heatmap .npy; JSON fields."""
  verdict = result.match["verdict"] if result.match else "no match"
  original = matched_image(result) if result.match else np.full_like(image, 255)
  picture = panel(
      [image, original, overlay(image, result.heatmap)],
      ["query", _original_label(result), f"edits ({verdict})"],
  )
  png, npy = out / f"{stem}.png", out / f"{stem}.heatmap.npy"
  save_png(picture, png)
  np.save(npy, result.heatmap.astype(np.float32))
  return {
      "match": result.match,
      "candidates": result.candidates[:top],
      "heatmap_png": str(png),
      "heatmap_npy": str(npy),
  }
