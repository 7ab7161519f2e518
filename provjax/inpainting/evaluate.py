"""Inpainting methods side by side: quality, and how well a forgery detector finds their fills.

    methods = {"safepaint.synth-v1": Inpainter(model), **BASELINES}
    table = evaluate(methods, pairs, Detector(provjax.load("trufor.synth-v1")))
    print(markdown(table, detector="trufor.synth-v1"))

`pairs` are (name, image, hole): the original HxWx3 uint8 image, which is the
ground truth, and an HxW bool hole (True = fill). A method is any callable
fn(image, hole) -> HxWx3 uint8; its output is merged (the original kept
outside the hole, `fills.fill_image`) before anything is measured, so every
method is judged on its hole only. `BASELINES` holds the classical push-pull fill
(`provjax.transforms.inpaint`, without added grain, so it is deterministic).

Quality (higher = better), the mean over images, overall and per hole-ratio
bin (`provjax.metrics.inpainting.RATIO_BINS`; an image outside every bin
counts in the overall means only):
  psnr, ssim   of the whole merged image against the original, as the papers
               report them (max 255; SSIM with the Gaussian window)
  psnr_hole    PSNR over the hole's pixels only, which does not grow as the
               hole shrinks

Anti-forensics (lower = stronger anti-forensics; an AUC of 0.5 is chance),
from a TruFor `Detector` run on every filled image and every original:
  image_auc       ROC AUC of the integrity scores, filled images (positives)
                  against the originals (negatives)
  image_bacc      balanced accuracy of score > 0.5 on the same images
  pixel_f1        F1 of the localization map against the hole at the best
                  threshold per image, with TruFor's protocol (border band
                  excluded, the inverted map allowed; trufor.md section 7)
  pixel_f1_fixed  the same at the fixed threshold map > 0.5
  pixel_auc       ROC AUC of the map's pixels against the hole, all pixels,
                  per image, then the mean (an image whose hole covers it
                  whole has no negatives and is left out)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import math
import sys

import numpy as np

from provjax.inpainting import fills
from provjax.metrics import forgery
from provjax.metrics import inpainting as quality_metrics
from provjax.transforms import inpaint as classical

Fill = Callable[[np.ndarray, np.ndarray], np.ndarray]
QUALITY = ("psnr", "ssim", "psnr_hole")
FORENSIC = ("image_auc", "image_bacc", "pixel_f1", "pixel_f1_fixed", "pixel_auc")


def classical_fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
  """Push-pull interpolation (provjax.transforms.inpaint), without grain."""
  return classical.inpaint(image, hole)


BASELINES: dict[str, Fill] = {"push-pull (classical)": classical_fill}


def hole_psnr(original: np.ndarray, filled: np.ndarray, hole: np.ndarray) -> float:
  """PSNR (max 255) over the hole's pixels and channels only; NaN for an empty hole."""
  if not hole.any():
    return float("nan")
  return quality_metrics.psnr(original[hole], filled[hole])


def image_quality(original: np.ndarray, filled: np.ndarray, hole: np.ndarray) -> dict:
  """{psnr, ssim, psnr_hole} of one filled image against its original."""
  return {
      "psnr": quality_metrics.psnr(original, filled),
      "ssim": quality_metrics.ssim(original, filled),
      "psnr_hole": hole_psnr(original, filled, hole),
  }


def _mean(values: Sequence[float]) -> float:
  """The mean ignoring NaN (an undefined case), NaN when nothing is left; inf stays inf."""
  kept = [v for v in values if not math.isnan(v)]
  return float(np.mean(kept)) if kept else float("nan")


def quality_row(scores: Sequence[dict], bins: Sequence[int | None]) -> dict:
  """Means of per-image quality over all images and per ratio bin (with each bin's count)."""
  row = {k: _mean([s[k] for s in scores]) for k in QUALITY}
  row["images"] = len(scores)
  row["per_bin"] = {}
  for index in sorted({b for b in bins if b is not None}):
    kept = [s for s, b in zip(scores, bins) if b == index]
    cell = {k: _mean([s[k] for s in kept]) for k in QUALITY}
    row["per_bin"][quality_metrics.bin_label(index)] = {**cell, "images": len(kept)}
  return row


def pixel_auc(score_map: np.ndarray, hole: np.ndarray) -> float:
  """ROC AUC of one map's pixels against the hole; NaN when the hole is empty or everything."""
  return forgery.auc(score_map.ravel(), hole.ravel())


def forensic_row(filled_preds, authentic_scores: Sequence[float], holes) -> dict:
  """Detector figures of one method: its Predictions on the filled images, the originals' scores."""
  scores = [p.score for p in filled_preds] + list(authentic_scores)
  labels = [1] * len(filled_preds) + [0] * len(authentic_scores)
  localization = forgery.localization_summary([p.map for p in filled_preds], holes)
  return {
      "image_auc": forgery.auc(scores, labels),
      "image_bacc": forgery.balanced_accuracy(scores, labels),
      "pixel_f1": localization["f1_best"],
      "pixel_f1_fixed": localization["f1_fixed"],
      "pixel_auc": _mean([pixel_auc(p.map, h) for p, h in zip(filled_preds, holes)]),
  }


def evaluate(
    methods: Mapping[str, Fill],
    pairs: Sequence[tuple[str, np.ndarray, np.ndarray]],
    detector=None,
    *,
    progress: bool = False,
) -> dict[str, dict]:
  """{method: row}: quality (see the module docstring) and, with a detector, its figures.

  Args:
    methods: name -> fn(image, hole) -> filled image.
    pairs: (name, original HxWx3 uint8, hole HxW bool) triples.
    detector: a `provjax.forgery.detect.Detector`, or None for quality only.
    progress: a bar on stderr.
  """
  from tqdm import tqdm

  if not pairs:
    raise ValueError("evaluate needs at least one (name, image, hole) pair")
  names = [name for name, _, _ in pairs]
  holes = [np.asarray(hole, bool) for _, _, hole in pairs]
  originals = [image for _, image, _ in pairs]
  bins = [quality_metrics.ratio_bin(hole) for hole in holes]
  total = len(pairs) * (len(methods) + (detector is not None))
  bar = tqdm(total=total, disable=not progress, file=sys.stderr, desc="eval", unit="image")
  authentic = []
  if detector is not None:
    for image in originals:
      authentic.append(detector(image).score)
      bar.update()
  table = {}
  for name, fill in methods.items():
    scores, preds = [], []
    for pair_name, image, hole in zip(names, originals, holes):
      filled = fills.fill_image(fill, image, hole, f"{name} on {pair_name}")
      scores.append(image_quality(image, filled, hole))
      if detector is not None:
        preds.append(detector(filled))
      bar.update()
    table[name] = quality_row(scores, bins)
    if detector is not None:
      table[name].update(forensic_row(preds, authentic, holes))
  bar.close()
  return table


def _cell(value: float, digits: int) -> str:
  if math.isnan(value):
    return "-"
  return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def markdown(table: Mapping[str, dict], *, detector: str = "the detector") -> str:
  """The table as markdown: quality overall and per bin, then the detector's figures."""
  labels = list(dict.fromkeys(label for row in table.values() for label in row["per_bin"]))
  head = ["method", "images", "PSNR", "SSIM", "hole PSNR"] + [f"{b} PSNR / SSIM" for b in labels]
  lines = [
      "Quality (higher = better): the merged image against the original; hole PSNR over the "
      "hole only.",
      "",
      "| " + " | ".join(head) + " |",
      "|" + "---|" * len(head),
  ]
  for name, row in table.items():
    cells = [name, str(row["images"]), _cell(row["psnr"], 2), _cell(row["ssim"], 3)]
    cells.append(_cell(row["psnr_hole"], 2))
    for label in labels:
      cell = row["per_bin"].get(label)
      cells.append(f"{_cell(cell['psnr'], 2)} / {_cell(cell['ssim'], 3)}" if cell else "-")
    lines.append("| " + " | ".join(cells) + " |")
  if any("image_auc" in row for row in table.values()):
    head = ["method", "image AUC", "image bACC", "pixel F1 (best)", "pixel F1 @0.5", "pixel AUC"]
    lines += [
        "",
        f"Anti-forensics against {detector} (lower = stronger anti-forensics; AUC 0.5 = chance).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, row in table.items():
      if "image_auc" in row:
        lines.append("| " + " | ".join([name] + [_cell(row[k], 3) for k in FORENSIC]) + " |")
  return "\n".join(lines) + "\n"
