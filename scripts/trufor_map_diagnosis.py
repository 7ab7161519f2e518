"""Does a TruFor map separate authentic from forged images, and does it follow smoothness?

    python scripts/trufor_map_diagnosis.py --model trufor.synth-v2 \
        --photo-dir ~/provjax-photos [--count 2000] [--resolution 160]
    python scripts/trufor_map_diagnosis.py --model runs/trufor_ph2 ...   # a work dir's latest

Runs the model on every record of the synthetic forgery builder's held-back
`test` split (`provjax.data.forgery`, the split a TruFor release is trained
beside; pass the `data.count`, `data.resolution` and `data.photo_dir` it was
trained with) and prints one JSON object:

* `auc`: the image-level AUC of each map statistic (mean, 99th percentile,
  max) and of the integrity score, over all records and per edit kind (each
  kind's forgeries against every authentic image);
* `map_level`: the map's mean inside forged regions, outside them, and over
  authentic images;
* `smoothness_correlation`: Pearson r between an image's share of flat pixels
  (horizontal grey-level step under 2) and its map's mean, on authentic
  images and outside the edit on forged ones.

A detector that learned local traces has a map that is low on authentic
images whatever they show; a map that rises with flat content has learned
"smooth = forged", which photographs with sky or bokeh break. It takes about
80 s for 200 records of 160 px on 2 cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from provjax.metrics.forgery import auc

STATISTICS = ("mean", "p99", "max", "score")
FLAT_STEP = 2.0  # grey levels: a horizontal step below this counts as flat


def flat_fraction(image: np.ndarray) -> float:
  """Share of horizontal neighbour pairs whose grey levels differ by less than FLAT_STEP."""
  grey = image.astype(np.float64).mean(axis=-1)
  return float(np.mean(np.abs(np.diff(grey, axis=1)) < FLAT_STEP))


def record_row(kind: str, image: np.ndarray, mask: np.ndarray, heat: np.ndarray, score: float):
  """What the summary needs of one record: its kind, map statistics and flatness."""
  return {
      "kind": kind,
      "mean": float(heat.mean()),
      "p99": float(np.quantile(heat, 0.99)),
      "max": float(heat.max()),
      "score": float(score),
      "inside": float(heat[mask].mean()) if mask.any() else None,
      "outside": float(heat[~mask].mean()),
      "flat": flat_fraction(image),
  }


def _correlation(xs, ys) -> float | None:
  """Pearson r, rounded; None when either side is constant (r is undefined there)."""
  if np.std(xs) == 0 or np.std(ys) == 0:
    return None
  return round(float(np.corrcoef(xs, ys)[0, 1]), 3)


def _auc(rows: list[dict], stat: str) -> float:
  labels = [r["kind"] != "authentic" for r in rows]
  return round(auc([r[stat] for r in rows], labels), 3)


def summary(rows: list[dict]) -> dict:
  """The JSON object the module docstring describes, from `record_row` rows."""
  authentic = [r for r in rows if r["kind"] == "authentic"]
  forged = [r for r in rows if r["kind"] != "authentic"]
  kinds = sorted({r["kind"] for r in forged})
  auc = {
      stat: {"all": _auc(rows, stat)}
      | {k: _auc(authentic + [r for r in forged if r["kind"] == k], stat) for k in kinds}
      for stat in STATISTICS
  }
  inside = [r["inside"] for r in forged if r["inside"] is not None]
  return {
      "records": len(rows),
      "auc": auc,
      "map_level": {
          "inside_forged": round(float(np.mean(inside)), 3),
          "outside_forged": round(float(np.mean([r["outside"] for r in forged])), 3),
          "authentic": round(float(np.mean([r["mean"] for r in authentic])), 3),
      },
      "smoothness_correlation": {
          "authentic": _correlation([r["flat"] for r in authentic], [r["mean"] for r in authentic]),
          "forged_outside": _correlation(
              [r["flat"] for r in forged], [r["outside"] for r in forged]
          ),
      },
  }


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="trufor.synth-v2", help="arch.tag, or a TruFor work dir")
  p.add_argument("--photo-dir", default=None)
  p.add_argument("--count", type=int, default=2000)
  p.add_argument("--resolution", type=int, default=160)
  p.add_argument("--data-dir", default="~/.cache/provjax/tensorflow_datasets")
  args = p.parse_args(argv)

  import os  # pylint: disable=g-import-not-at-top

  import provjax  # pylint: disable=g-import-not-at-top
  from provjax.data import forgery  # pylint: disable=g-import-not-at-top
  from provjax.data import forensics  # pylint: disable=g-import-not-at-top
  from provjax.tasks.trufor_loc import predict  # pylint: disable=g-import-not-at-top

  if Path(args.model).is_dir():  # a `provjax train` work dir: its latest checkpoint
    from provjax.train import evaluate, snapshot  # pylint: disable=g-import-not-at-top

    model, _ = evaluate.restore_model(snapshot.read(args.model), args.model)
  else:
    model = provjax.load(args.model)
  source = forgery.load_source(
      "test",
      data_dir=os.path.expanduser(args.data_dir),
      resolution=args.resolution,
      count=args.count,
      photo_dir=args.photo_dir,
  )
  rows = []
  for i in range(len(source)):
    record = source[i]
    image, mask, _ = forensics.decode_record(record)
    out = predict(model, image, full=True)
    rows.append(record_row(bytes(record["kind"]).decode(), image, mask, out["map"], out["score"]))
  print(json.dumps(summary(rows), indent=1))


if __name__ == "__main__":
  main()
