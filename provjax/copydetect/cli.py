"""`provjax copydetect` (ISC prediction CSV) and `provjax convert copynce`.

`add_commands` registers `copydetect`; `add_converters` registers `copynce`
under the `convert` group that `provjax.cli` owns.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from provjax.data.images import failure_line

DEFAULT_MODEL = "copynce.synth-v4"
TRACK_DIM = 256  # the most dimensions DISC21's descriptor track accepts

EPILOG = """\
Writes the official ISC2021 prediction CSV (query_id,reference_id,score;
ids are file names without extension; higher score = more likely a copy),
which `provjax eval isc --gt GT.csv --preds PREDS.csv` scores. Prints one JSON
object: counts, the protocol used, and the files written.

The protocol defaults to what the release chose on held-back data (see the
model card): k nearest references per query by descriptor similarity, score
normalisation against --background when one is given (without one, scores are
not normalised), matcher re-scoring of the top candidates when the weights
name a matcher, and local-feature verification of each query's best
candidates (--verify N: SIFT matches one affine map explains, or a
near-duplicate thumbnail, add a bonus to the score; see
provjax/copydetect/verification.py). --model thumbnail
runs the classical reference (16 x 16 grayscale thumbnails, cosine).

A file that cannot be read is reported on stderr (one line naming it) and
skipped; the rest go on. exit status: 0 all files used, 1 some skipped,
2 bad arguments.
"""


def _positive(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
  return value


def _non_negative(text: str) -> int:
  value = int(text)
  if value < 0:
    raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
  return value


def _share(text: str) -> float:
  value = float(text)
  if not 0.0 <= value < 1.0:
    raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value} (1 is --model thumbnail)")
  return value


def describe_folder(det, folder: str, *, what: str, progress: bool, views: bool = False) -> dict:
  """Descriptors of every readable image under `folder`: ids (file stems), paths, vectors.

  With `views`, queries are described with the protocol's crops too: `vectors` then holds
  every view, `owner` the image of each, and `whole` the one vector of each image.
  """
  import numpy as np
  from tqdm import tqdm

  from provjax.data.images import list_images, read_image

  paths = list_images(folder)
  seen = {}
  for p in paths:
    if p.stem in seen:
      raise ValueError(f"{folder}: two files share the id {p.stem!r}: {seen[p.stem]} and {p}")
    seen[p.stem] = p
  ids, kept, vecs, owners, failed = [], [], [], [], 0
  bar = tqdm(total=len(paths), disable=not progress, file=sys.stderr, desc=what, unit="image")
  for start in range(0, len(paths), det.batch_size):
    images = []
    for p in paths[start : start + det.batch_size]:
      try:
        images.append(read_image(p))
      except Exception as e:  # pylint: disable=broad-exception-caught
        bar.write(f"provjax copydetect: skipped {failure_line(str(p), e)}", file=sys.stderr)
        failed += 1
        continue
      ids.append(p.stem)
      kept.append(str(p))
    if images and views:
      v, owner = det.describe_queries(images)
      vecs.append(v)
      owners.append(owner + len(ids) - len(images))
    elif images:
      vecs.append(det.describe(images))
    bar.update(min(det.batch_size, len(paths) - start))
  bar.close()
  dim = vecs[0].shape[1] if vecs else 0
  vectors = np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)
  found = {"ids": ids, "paths": kept, "vectors": vectors, "failed": failed, "owner": None}
  if views:
    owner = np.concatenate(owners) if owners else np.zeros((0,), np.int64)
    first = np.r_[True, owner[1:] != owner[:-1]] if len(owner) else owner.astype(bool)
    found.update(owner=owner, whole=vectors[first])
  return found


def cmd_copydetect(args) -> int:
  from provjax.copydetect import isc_io
  from provjax.copydetect.detector import CopyDetector
  from provjax.data.images import read_image

  for flag, folder in (("--queries", args.queries), ("--refs", args.refs)):
    if not os.path.isdir(folder):
      raise ValueError(f"{flag} {folder}: not a directory")
  if args.background and not os.path.isdir(args.background):
    raise ValueError(f"--background {args.background}: not a directory")
  if not args.background and ((args.score_norm or "none") != "none" or args.pcaw):
    raise ValueError("--score-norm / --pcaw need --background DIR (images that are neither)")
  det = CopyDetector.load(
      args.model,
      matcher=args.matcher,
      search=args.search,
      k=args.k,
      # The released protocol may normalise scores; without a background set it cannot.
      score_norm=args.score_norm or (None if args.background else "none"),
      pcaw=args.pcaw if args.background else 0,
      rescore=args.rescore,
      query_crops=args.query_crops,
      backend=args.backend,
      thumbnail_weight=args.thumbnail_weight,
      verify=args.verify,
  )
  det.batch_size, det.workers = args.batch_size, args.workers
  progress = not args.no_progress
  sets = {"query": args.queries, "reference": args.refs}
  if args.background:
    sets["background"] = args.background
  found = {
      k: describe_folder(det, d, what=k, progress=progress, views=k == "query")
      for k, d in sets.items()
  }
  q, r = found["query"], found["reference"]
  if not q["ids"] or not r["ids"]:
    raise ValueError("no readable query or reference image")
  if args.descriptors:
    dim = q["vectors"].shape[1]
    if dim > TRACK_DIM:
      print(
          f"provjax copydetect: the descriptors written are {dim}-d (the thumbnail share joins "
          f"two vectors); DISC21's descriptor track allows {TRACK_DIM}: add --thumbnail-weight 0",
          file=sys.stderr,
      )
    os.makedirs(args.descriptors, exist_ok=True)
    for kind, got in found.items():
      path = os.path.join(args.descriptors, f"{kind}_descriptors.hdf5")
      # One vector per image, as the official layout has (query crops are not written).
      isc_io.write_descriptors(path, got["ids"], got.get("whole", got["vectors"]))
  background = found["background"]["vectors"] if "background" in found else None
  qi, ri, scores = det.search(q["vectors"], r["vectors"], background, owner=q["owner"])
  load_q = lambda i: read_image(q["paths"][i])
  load_r = lambda j: read_image(r["paths"][j])
  if det.protocol.rescore and det.matcher is not None:
    qi, ri, scores = det.rescore_top(qi, ri, scores, load_q, load_r)
  if det.protocol.verify:
    qi, ri, scores = det.verify_top(qi, ri, scores, load_q, load_r, len(q["ids"]))
  preds = [(q["ids"][i], r["ids"][j], float(s)) for i, j, s in zip(qi, ri, scores)]
  isc_io.write_predictions(args.out, preds)
  failed = sum(got["failed"] for got in found.values())
  print(
      json.dumps(
          {
              "queries": len(q["ids"]),
              "references": len(r["ids"]),
              "background": len(found["background"]["ids"]) if background is not None else 0,
              "skipped": failed,
              "predictions": len(preds),
              "protocol": vars(det.protocol),
              "model": args.model,
              "matcher": args.matcher if det.matcher is not None else None,
              "out": args.out,
              "descriptors": args.descriptors,
          }
      ),
      flush=True,
  )
  return 1 if failed else 0


def add_commands(sub) -> None:
  p = sub.add_parser(
      "copydetect",
      help="copy detection: ISC-format predictions of which queries copy which references",
      epilog=EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--queries", required=True, metavar="DIR", help="query images")
  p.add_argument("--refs", required=True, metavar="DIR", help="reference images")
  p.add_argument(
      "--background",
      metavar="DIR",
      help="images that are neither (for score normalisation / PCA-whitening)",
  )
  p.add_argument("--out", required=True, metavar="PREDS.csv", help="prediction CSV to write")
  p.add_argument("--descriptors", metavar="DIR", help="also write the descriptors (HDF5)")
  p.add_argument(
      "--model",
      default=DEFAULT_MODEL,
      help=f"descriptor weights (arch.tag, or 'thumbnail'; default {DEFAULT_MODEL})",
  )
  p.add_argument(
      "--matcher", default=None, help="matcher weights (default: the one the descriptor names)"
  )
  p.add_argument("--search", choices=["knn", "global"], default=None, help="k per query, or nq*k")
  p.add_argument("--k", type=_positive, default=None, help="candidates per query (default 10)")
  p.add_argument(
      "--score-norm",
      choices=["none", "isc2021", "sscd", "copynce"],
      default=None,
      help="score normalisation against --background",
  )
  p.add_argument("--pcaw", type=_non_negative, default=None, help="PCA-whitening dims (0: off)")
  p.add_argument(
      "--rescore", type=_non_negative, default=None, help="matcher re-scores this many per query"
  )
  p.add_argument(
      "--query-crops",
      choices=["none", "grid"],
      default=None,
      help="also search crops of each query (copies inside other images)",
  )
  p.add_argument(
      "--backend",
      choices=["exact", "scann"],
      default=None,
      help="exact search (default) or ScaNN (approximate; for large reference sets)",
  )
  p.add_argument(
      "--thumbnail-weight",
      type=_share,
      default=None,
      help="the 16x16 thumbnail's share of each similarity, in [0, 1) (default: the released one)",
  )
  p.add_argument(
      "--verify",
      type=_non_negative,
      default=None,
      help="verify this many candidates per query by local features (SIFT + RANSAC; 0: off)",
  )
  p.add_argument("--batch-size", type=_positive, default=64, help="images per forward pass")
  p.add_argument(
      "--workers",
      type=_positive,
      default=os.cpu_count() or 1,
      help="processes that find verification keypoints (default: one per CPU core)",
  )
  p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
  p.set_defaults(fn=cmd_copydetect)


def cmd_convert_copynce(args) -> int:
  from provjax.copydetect.convert import convert_copynce

  try:
    folder = convert_copynce(args.file, args.name)
  except (OSError, ValueError) as e:
    print(f"provjax convert: error: {failure_line(args.file, e)}", file=sys.stderr)
    return 2
  print(json.dumps({"name": args.name, "folder": str(folder)}))
  return 0


def add_converters(convert) -> None:
  """`provjax convert copynce FILE --name copynce.<tag>` (descriptor or matcher, from the keys)."""
  p = convert.add_parser(
      "copynce", help="official CopyNCE descriptor or matcher state dict -> released weights"
  )
  p.add_argument("file", help="the official .pth / .pth.tar, or an .npz of the same keys")
  p.add_argument("--name", required=True, help="copynce.<tag> or copynce_matcher.<tag>")
  p.set_defaults(fn=cmd_convert_copynce)
