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
  return "matched original (file missing)" if result.match.get("missing") else "matched original"


def write_query_outputs(
    out: Path, stem: str, image: np.ndarray, result: QueryResult, top: int = 10
) -> dict:
  """Panel PNG (query | original | heatmap overlay) + heatmap .npy; JSON fields.

  Without a match there is no original to have been edited: the comparator's
  map against the nearest (distinct) candidate would mark differences between
  two unrelated images as edits, so the panel shows the query plainly and no
  .npy is written (`heatmap_npy` is None).
  """
  png, npy = out / f"{stem}.png", None
  if result.match:
    picture = panel(
        [image, matched_image(result), overlay(image, result.heatmap)],
        ["query", _original_label(result), f"edits ({result.match['verdict']})"],
    )
    npy = out / f"{stem}.heatmap.npy"
    np.save(npy, result.heatmap.astype(np.float32))
  else:
    picture = panel(
        [image, np.full_like(image, 255), image], ["query", "no match", "no edits shown (no match)"]
    )
  save_png(picture, png)
  return {
      "match": result.match,
      "candidates": result.candidates[:top],
      "heatmap_png": str(png),
      "heatmap_npy": npy and str(npy),
  }
