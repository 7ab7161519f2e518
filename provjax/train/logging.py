"""Metrics as JSON lines (one object per logged step) and on stderr."""

from __future__ import annotations

import json
import math
from pathlib import Path
import time

import jax
import numpy as np


def to_python(metrics: dict) -> dict:
  """Device scalars -> Python floats (this is the one host sync per log step)."""
  return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


def all_finite(metrics: dict) -> bool:
  return all(math.isfinite(v) for v in metrics.values())


class MetricWriter:
  """Appends `{"step": s, "time": t, **metrics}` lines to `metrics.jsonl`.

  Only process 0 writes, so multi-host runs keep one log.
  """

  def __init__(self, path: str | Path):
    self.path = Path(path)
    self.enabled = jax.process_index() == 0
    if self.enabled:
      self.path.parent.mkdir(parents=True, exist_ok=True)

  def write(self, step: int, metrics: dict) -> None:
    if not self.enabled:
      return
    record = {"step": step, "time": round(time.time(), 3), **metrics}
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")


def write_pictures(folder: Path, pictures: dict) -> None:
  """Evaluator pictures as PNG: uint8 as is, floats taken to be in [0, 1]."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if not pictures or jax.process_index() != 0:
    return
  folder.mkdir(parents=True, exist_ok=True)
  for name, image in pictures.items():
    image = np.asarray(image)
    if image.dtype != np.uint8:
      image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(folder / f"{name}.png")


def read_metrics(path: str | Path) -> list[dict]:
  """All records of a metrics.jsonl file (empty list when it does not exist)."""
  path = Path(path)
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_summary(workdir: str | Path) -> dict:
  """Steps, final loss and logged wall-clock minutes of a work dir's training log (for cards)."""
  log = [r for r in read_metrics(Path(workdir) / "metrics.jsonl") if "loss" in r]
  return {
      "steps": int(log[-1]["step"]),
      "final loss": float(log[-1]["loss"]),
      "logged wall-clock min": (log[-1]["time"] - log[0]["time"]) / 60.0,
  }
