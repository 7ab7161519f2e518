"""Turn a folder of photographs into an ISC-style copy-detection benchmark on disk.

    python scripts/make_isc_folder.py make PHOTOS_DIR OUT_DIR [--seed 0] [--copies N] [--bundled]
        [--skip-test]
    provjax copydetect --queries OUT_DIR/queries --refs OUT_DIR/refs \
        --background OUT_DIR/background --out preds.csv
    provjax eval isc --gt OUT_DIR/gt.csv --preds preds.csv
    python scripts/make_isc_folder.py score OUT_DIR preds.csv   # per query family

Photographs of one source group (provjax.data.folder.group_key: frames of one
video, views of one scene, one calibration series) are related, so only the
first of each group is used. They are shuffled and dealt into three disjoint parts: references
(R*.jpg), unmatched originals and the background set (B*.jpg). Each
reference gets one query made by a family of `provjax.transforms.copy_recipe`
(families cycled), each unmatched original a query of the same families, so
about half of the queries have no reference, as in DISC21. Image-in-image
donors come from the unmatched part. `gt.csv` is the official ground truth
(empty reference for unmatched queries); `families.csv` names each query's
family, for the per-family figures of the `score` mode. Files of almost one flat colour
once decoded (grey-level standard deviation below `FLAT`: wallpaper patterns kept in an alpha
channel turn white over white) are left out: a copy of a blank image is nobody's copy.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from provjax.copydetect import isc_io
from provjax.data import folder, splits
from provjax.data.photos import sample_photos
from provjax.data.images import list_images, read_image
from provjax.metrics import isc
from provjax.transforms import copy_recipe, core

MAX_SIDE = 512  # photographs are reduced to this longer side first (wallpapers are 4K)
FLAT = 1.0  # grey-level standard deviation below which an image is blank


def _load(source) -> np.ndarray:
  """A photograph file, or an image already decoded, reduced to MAX_SIDE."""
  image = read_image(source) if isinstance(source, Path) else core.as_rgb_uint8(source)
  im = Image.fromarray(image)
  im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
  return np.asarray(im)


def _has_content(source) -> bool:
  gray = _load(source).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
  if gray.std() >= FLAT:
    return True
  print(
      f"make_isc_folder: left out {source if isinstance(source, Path) else 'a bundled photo'}: blank"
  )
  return False


def make(
    photos: str,
    out: str,
    seed: int = 0,
    copies: int = 1,
    bundled: bool = False,
    skip_test: bool = False,
) -> dict:
  rng = np.random.default_rng(seed)
  split_of = folder.split_groups(photos) if skip_test else {}
  sources = [
      (folder.group_key(p.stem), p)
      for p in list_images(photos)
      if split_of.get(folder.group_key(p.stem)) != "test"
  ]
  if bundled:
    sources += [
        (splits.bundled_group(name), image)
        for name, image in sample_photos()
        if not (skip_test and splits.bundled_split(name) == "test")
    ]
  by_group = {}
  for group, source in sources:  # one photograph per source group, the first not blank
    if group not in by_group and _has_content(source):
      by_group[group] = source
  paths = list(by_group.values())
  order = rng.permutation(len(paths))
  n_ref = len(paths) * 2 // 5
  n_unmatched = len(paths) * 2 // 5
  refs = [paths[i] for i in order[:n_ref]]
  unmatched = [paths[i] for i in order[n_ref : n_ref + n_unmatched]]
  background = [paths[i] for i in order[n_ref + n_unmatched :]]
  root = Path(out)
  for sub in ("refs", "queries", "background"):
    (root / sub).mkdir(parents=True, exist_ok=True)
  donors = [_load(p) for p in unmatched[:16]]
  families = copy_recipe.QUERY_FAMILIES
  jobs = [(p, f"R{i:05d}") for i, p in enumerate(refs)] + [(p, "") for p in unmatched]
  jobs = jobs * copies  # `copies` queries of every reference and unmatched original
  jobs = [jobs[i] for i in rng.permutation(len(jobs))]
  gt, fams = [], []
  for qi, (path, ref_id) in enumerate(jobs):
    image = _load(path)
    if ref_id:
      Image.fromarray(image).save(root / "refs" / f"{ref_id}.jpg", quality=95)
    family = families[qi % len(families)]
    pool = [d for d in donors if d is not image]
    query = copy_recipe.make_query(image, rng, family, donors=pool).image
    qid = f"Q{qi:05d}"
    Image.fromarray(query).save(root / "queries" / f"{qid}.jpg", quality=90)
    gt.append((qid, ref_id))
    fams.append((qid, family))
  for i, path in enumerate(background):
    Image.fromarray(_load(path)).save(root / "background" / f"B{i:05d}.jpg", quality=95)
  for name, rows, header in (
      ("gt.csv", gt, ("query_id", "reference_id")),
      ("families.csv", fams, ("query_id", "family")),
  ):
    with open(root / name, "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(header)
      w.writerows(rows)
  return {"references": len(refs), "queries": len(jobs), "background": len(background)}


def score(folder: str, preds: str) -> dict:
  """Overall and per-family ISC metrics (a family's copies + every unmatched query)."""
  root = Path(folder)
  pairs, queries = isc_io.read_ground_truth(root / "gt.csv")
  predictions = isc_io.read_predictions(preds)
  with open(root / "families.csv") as f:
    family = {row["query_id"]: row["family"] for row in csv.DictReader(f)}
  matched = {q for q, _ in pairs}
  unmatched = [q for q in queries if q not in matched]
  out = {"all": isc.evaluate(pairs, predictions, gt_queries=queries)}
  for fam in sorted(set(family.values())):
    keep = {q for q in matched if family[q] == fam} | set(unmatched)
    sub_pairs = [p for p in pairs if p[0] in keep]
    sub_preds = [p for p in predictions if p[0] in keep]
    out[fam] = isc.evaluate(sub_pairs, sub_preds, gt_queries=keep)
  keys = ("micro_ap", "recall_at_p90", "recall_at_rank1")
  return {name: {k: m[k] for k in keys} for name, m in out.items()}


def main() -> None:
  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  sub = p.add_subparsers(dest="mode", required=True)
  m = sub.add_parser("make", help="write refs/, queries/, background/, gt.csv, families.csv")
  m.add_argument("photos")
  m.add_argument("out")
  m.add_argument("--seed", type=int, default=0)
  m.add_argument(
      "--copies", type=int, default=1, help="queries made of each photograph (more copies)"
  )
  m.add_argument(
      "--bundled", action="store_true", help="add the bundled sample photographs as sources"
  )
  m.add_argument(
      "--skip-test",
      action="store_true",
      help="leave out photographs the zoo's splits give to `test` (for a development folder)",
  )
  s = sub.add_parser("score", help="overall and per-family metrics of a prediction CSV")
  s.add_argument("folder")
  s.add_argument("preds")
  args = p.parse_args()
  if args.mode == "make":
    out = make(args.photos, args.out, args.seed, args.copies, args.bundled, args.skip_test)
    print(json.dumps(out))
  else:
    print(json.dumps(score(args.folder, args.preds), indent=1))


if __name__ == "__main__":
  main()
