"""Scoring a forgery detector on held-back records, clean and after benign post-processing.

A detector here is any `predict_fn(image) -> (map, score)`: HxWx3 uint8 in,
an HxW map in [0, 1] (higher = forged) and an image score in [0, 1] out
(TruFor through `provjax.forgery.detect.Detector`, or ELA).

    samples = [decode(r) for r in records]          # agreed forgery records
    by_kind = summarize(predict_all(fn, samples), samples)
    rows = sweep(fn, samples)                        # the robustness table

`sweep` applies each perturbation AFTER the forgery, to the image a user
would receive: JPEG re-compression, a resize of both sides (the mask follows
with nearest neighbours), Gaussian blur and Gaussian noise, using
`provjax.transforms`. Every figure is the TruFor protocol's
(`provjax.metrics.forgery`): image AUC and balanced accuracy at score > 0.5
over all images, pixel F1 (best threshold / 0.5) and MCC over the forged ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
import dataclasses

import numpy as np

from provjax import transforms
from provjax.data import forensics
from provjax.metrics import forgery as metrics

PredictFn = Callable[[np.ndarray], tuple[np.ndarray, float]]

# perturbation -> levels: JPEG quality, resize factor (both sides), blur sigma (pixels),
# noise sigma (uint8 grey levels).
PERTURBATIONS = {
    "jpeg": (90, 70, 50),
    "resize": (0.75, 0.5),
    "blur": (1.0, 2.0),
    "noise": (3.0, 7.0),
}


@dataclasses.dataclass(frozen=True)
class Sample:
  """One decoded record: image HxWx3 uint8, mask HxW bool (True = forged), label, kind."""

  image: np.ndarray
  mask: np.ndarray
  label: int
  kind: str


def decode(record) -> Sample:
  """A Sample of an agreed-format forgery record (synthetic builder or benchmark)."""
  image, mask, label = forensics.decode_record(record)
  return Sample(image, mask, label, bytes(record["kind"]).decode())


def perturb(sample: Sample, name: str, level: float, rng: np.random.Generator) -> Sample:
  """`sample` after perturbation `name` at `level` (see PERTURBATIONS); `rng` draws the noise."""
  e = dataclasses.replace(transforms.identity(sample.image), mask=sample.mask)
  if name == "jpeg":
    e = transforms.jpeg(e, quality=int(level))
  elif name == "resize":
    h, w = e.shape
    e = transforms.resize(e, size=(max(1, round(h * level)), max(1, round(w * level))))
  elif name == "blur":
    e = transforms.blur(e, radius=float(level))  # PIL's radius is the Gaussian sigma
  elif name == "noise":
    e = transforms.noise(e, rng, std=float(level))
  else:
    raise ValueError(f"unknown perturbation {name!r}; expected one of {sorted(PERTURBATIONS)}")
  return dataclasses.replace(sample, image=e.image, mask=e.mask)


def predict_all(predict_fn: PredictFn, samples: Sequence[Sample]) -> list[tuple[np.ndarray, float]]:
  """(map, score) of every sample, maps checked against the image size."""
  out = []
  for s in samples:
    score_map, score = predict_fn(s.image)
    if np.shape(score_map) != s.mask.shape:
      raise ValueError(f"predict_fn gave a {np.shape(score_map)} map for a {s.mask.shape} image")
    out.append((np.asarray(score_map, np.float32), float(score)))
  return out


def scores(preds, samples: Sequence[Sample]) -> dict:
  """Detection over all the samples given, localization over their forged ones."""
  forged = [i for i, s in enumerate(samples) if s.label]
  det = metrics.detection_summary([p[1] for p in preds], [s.label for s in samples])
  loc = metrics.localization_summary(
      [preds[i][0] for i in forged], [samples[i].mask for i in forged]
  )
  return {
      "images": len(samples),
      "forged": len(forged),
      "auc": det["auc"],
      "bacc": det["bacc"],
      "f1_best": loc["f1_best"],
      "f1_fixed": loc["f1_fixed"],
      "mcc": loc["mcc"],
  }


def summarize(preds, samples: Sequence[Sample]) -> dict[str, dict]:
  """kind -> scores, per edit kind then "all".

  A kind's detection figures rank its forgeries against every authentic
  image; its localization figures average its own forgeries. Kinds come in
  the order they first appear among the forged samples.
  """
  kinds = list(dict.fromkeys(s.kind for s in samples if s.label))
  out = {}
  for kind in kinds + ["all"]:
    keep = [i for i, s in enumerate(samples) if not s.label or kind in ("all", s.kind)]
    out[kind] = scores([preds[i] for i in keep], [samples[i] for i in keep])
  return out


def sweep(
    predict_fn: PredictFn,
    records: Iterable,
    perturbations: dict[str, Sequence[float]] = PERTURBATIONS,
    *,
    seed: int = 0,
) -> list[dict]:
  """One row per (perturbation, level): {perturbation, level, auc, bacc, f1_best, f1_fixed}.

  Args:
    predict_fn: image -> (map, score).
    records: agreed-format forgery records, or Samples already decoded.
    perturbations: name -> levels, as PERTURBATIONS.
    seed: of the noise; sample i's noise at every level comes from (seed, i).
  """
  samples = [r if isinstance(r, Sample) else decode(r) for r in records]
  rows = []
  for name, levels in perturbations.items():
    for level in levels:
      changed = [
          perturb(s, name, level, np.random.default_rng([seed, i])) for i, s in enumerate(samples)
      ]
      figures = scores(predict_all(predict_fn, changed), changed)
      rows.append(
          {
              "perturbation": name,
              "level": level,
              **{k: figures[k] for k in ("auc", "bacc", "f1_best", "f1_fixed")},
          }
      )
  return rows
