"""`provjax index build`, `provjax query` and `provjax demo`."""

from __future__ import annotations

import json
from pathlib import Path
import sys

import numpy as np

DEFAULT_DESCRIPTOR = "simprov.synth-v1"
DEFAULT_COMPARATOR = "comparator.synth-v1"


def _models(args):
  import provjax

  return provjax.load(args.descriptor), provjax.load(args.comparator)


def cmd_index_build(args) -> int:
  import provjax
  from provjax.provenance.build import build_gallery
  from provjax.provenance.engine import Describer
  from provjax.weights import read_config

  shard = _shard(args)
  descriptor = provjax.load(args.descriptor)
  thumb = read_config(args.comparator)["preprocessing"]["image_size"]
  stats = build_gallery(
      args.images_dir,
      args.index,
      describer=Describer(descriptor),
      descriptor_name=args.descriptor,
      thumb_size=thumb,
      backend=args.backend,
      save_every=args.save_every,
      progress=not args.no_progress,
      shard=shard,
  )
  print(json.dumps({"index": str(args.index), **stats}))
  return 1 if stats["errors"] else 0


def _shard(args) -> tuple[int, int] | None:
  """This host's (index, count): from flags, or from JAX after distributed init."""
  if args.distributed:
    import jax

    jax.distributed.initialize()
    return jax.process_index(), jax.process_count()
  if args.shard:
    i, _, n = args.shard.partition("/")
    return int(i), int(n)
  return None


def cmd_query(args) -> int:
  from provjax.provenance.engine import Engine
  from provjax.provenance.gallery import Gallery
  from provjax.provenance.report import write_query_outputs
  from provjax.data.images import ImageError, read_image
  from provjax.weights import read_config

  descriptor, comparator = _models(args)
  threshold = read_config(args.comparator).get("distinct_threshold", 0.5)
  engine = Engine(
      Gallery.open(args.index), descriptor, comparator, k=args.k, distinct_threshold=threshold
  )
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  failed = 0
  for n, path in enumerate(args.images):
    record = {
        "query": path,
        "match": None,
        "candidates": [],
        "heatmap_png": None,
        "heatmap_npy": None,
        "error": None,
    }
    try:
      image = read_image(path)
      result = engine.query(image)
      record.update(
          write_query_outputs(out, f"{n:04d}-{Path(path).stem}", image, result, top=args.top)
      )
    except ImageError as e:
      record["error"] = str(e)
      print(f"provjax query: skipped {e}", file=sys.stderr)
      failed += 1
    print(json.dumps(record), flush=True)
  return 1 if failed else 0


def cmd_demo(args) -> int:
  from provjax.provenance.demo import run_demo

  run_demo(
      Path(args.out),
      descriptor=args.descriptor,
      comparator=args.comparator,
      distractors=args.distractors,
      k=args.k,
      seed=args.seed,
  )
  return 0


def _model_flags(p) -> None:
  p.add_argument(
      "--descriptor", default=DEFAULT_DESCRIPTOR, help="search encoder weights (arch.tag)"
  )
  p.add_argument("--comparator", default=DEFAULT_COMPARATOR, help="comparator weights (arch.tag)")


def add_commands(sub) -> None:
  p = sub.add_parser("index", help="descriptor index of a trusted database")
  isub = p.add_subparsers(dest="index_command", required=True, metavar="ACTION")
  b = isub.add_parser("build", help="index IMAGES_DIR into --index DIR (resumable)")
  b.add_argument("images_dir")
  b.add_argument("--index", required=True)
  b.add_argument("--backend", default="scann", choices=["scann", "exact"])
  b.add_argument("--save-every", type=int, default=1000)
  b.add_argument("--no-progress", action="store_true")
  b.add_argument(
      "--shard",
      default=None,
      metavar="I/N",
      help="index files I::N into shard I of N (one per host)",
  )
  b.add_argument(
      "--distributed",
      action="store_true",
      help="multi-host JAX job: jax.distributed.initialize(), shard = process",
  )
  _model_flags(b)
  b.set_defaults(fn=cmd_index_build)

  p = sub.add_parser("query", help="provenance: match, verdict and edit heatmap per image")
  p.add_argument("images", nargs="+", metavar="IMAGE")
  p.add_argument("--index", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--k", type=int, default=100, help="candidates re-ranked by the comparator")
  p.add_argument("--top", type=int, default=10, help="candidates listed in the JSON")
  _model_flags(p)
  p.set_defaults(fn=cmd_query)

  p = sub.add_parser("demo", help="the main job on the embedded sample photographs")
  p.add_argument("--out", default="provjax-demo")
  p.add_argument("--distractors", type=int, default=1000)
  p.add_argument("--k", type=int, default=100)
  p.add_argument("--seed", type=int, default=0)
  _model_flags(p)
  p.set_defaults(fn=cmd_demo)
