"""The provenance benchmark on a folder of your own photographs, side by side.

    python scripts/provenance_folder_benchmark.py /usr/share/backgrounds/mate \
        --models simprov.synth-v2,simprov_comparator.synth-v2 \
        --models simprov.synth-v3,simprov_comparator.synth-v3
    python scripts/provenance_folder_benchmark.py --heldout --models ...   # the cards' benchmark

The folder's photographs (downscaled to --side) are the originals; procedural
images of the "distractors" split fill the gallery. Each pair of released
models is run through `provenance.benchmark.run_images` on the same images and
queries (the end-to-end table per query kind, and search recall@1 per benign
family beside the 16 x 16 thumbnail reference), at the comparator's stored
operating point and with the descriptor's stored search mix. Photographs
that a model trained on make its figures optimistic: use a folder no
training run saw. `--heldout` runs the model cards' held-back synthetic
benchmark instead (`provenance.benchmark.run`: 100 originals among 1,000
distractors), e.g. for a pair no card measured.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import provjax
from provjax.data import folder, splits
from provjax.data.images import ImageError, read_image
from provjax.provenance import benchmark
from provjax.provenance.engine import Fusion, thumbnail_weight
from provjax.provenance.evaluate import format_table
from provjax.viz.overlay import resize
from provjax.weights import read_config


def load_photos(root: str, side: int, limit: int) -> list[np.ndarray]:
  """Up to `limit` photos of `root`, the longer side scaled to `side`."""
  out = []
  for path in folder.list_photos(root)[:limit]:
    try:
      image = read_image(path)
    except ImageError as e:
      print(f"skipped {e}")
      continue
    h, w = image.shape[:2]
    s = side / max(h, w)
    out.append(resize(image, max(16, round(h * s)), max(16, round(w * s))))
  return out


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("folder", nargs="?")
  p.add_argument("--heldout", action="store_true", help="the cards' synthetic benchmark")
  p.add_argument("--models", action="append", required=True, metavar="DESC,CMP")
  p.add_argument("--distractors", type=int, default=500)
  p.add_argument("--side", type=int, default=256)
  p.add_argument("--limit", type=int, default=200)
  p.add_argument("--k", type=int, default=100)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  if args.heldout == bool(args.folder):
    p.error("give a folder or --heldout")
  if args.folder:
    originals = load_photos(args.folder, args.side, args.limit)
    rng = np.random.default_rng(args.seed)
    distractors = [
        splits.draw_procedural(rng, args.side, "distractors") for _ in range(args.distractors)
    ]
    images = originals + distractors
    report = {"folder": args.folder, "originals": len(originals), "gallery": len(images)}
  else:
    report = {"folder": "held-back synthetic benchmark (the cards')"}
  for pair in args.models:
    desc, cmp = pair.split(",")
    # Each release's stored operating point and search mix.
    stored = dict(
        fusion=Fusion.from_config(read_config(cmp)), thumbnail_weight=thumbnail_weight(desc)
    )
    models = provjax.load(desc), provjax.load(cmp)
    if args.folder:
      out = benchmark.run_images(
          *models, images, len(originals), k=args.k, seed=args.seed, **stored
      )
    else:
      out = benchmark.run(*models, k=args.k, **stored)
    report[pair] = out
    print(f"== {pair}\n{format_table(out['table'])}")
    for family, v in out["families"].items():
      print(f"  {family:14s} R@1 {v['R@1']:.3f}   thumbnail {v['thumbnail R@1']:.3f}")
  print(json.dumps(report, default=float))


if __name__ == "__main__":
  main()
