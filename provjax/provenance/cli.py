"""`provjax index build`, `provjax query` and `provjax demo`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys


from provjax.data.images import failure_line

# The default pair did best on held-out real photographs: the synth-v3 descriptor
# searching with a thumbnail share (synth-v3-mix) finds more originals, and the
# synth-v4 comparator (synth-v2 trained on with hard negatives, its operating
# point chosen for synth-v3-mix) re-ranks them best there (README, "Released weights").
DEFAULT_DESCRIPTOR = "simprov.synth-v3-mix"
DEFAULT_COMPARATOR = "simprov_comparator.synth-v4"


def _models(args):
  import provjax

  return provjax.load(args.descriptor), provjax.load(args.comparator)


def cmd_index_build(args) -> int:
  import provjax
  from provjax.provenance.build import build_gallery
  from provjax.provenance.engine import Describer, thumbnail_weight
  from provjax.weights import read_config

  shard = _shard(args)
  descriptor = provjax.load(args.descriptor)
  thumb = read_config(args.comparator)["preprocessing"]["image_size"]
  stats = build_gallery(
      args.images_dir,
      args.index,
      describer=Describer(descriptor, thumbnail_weight=thumbnail_weight(args.descriptor)),
      descriptor_name=args.descriptor,
      thumb_size=thumb,
      backend=args.backend,
      save_every=args.save_every,
      progress=not args.no_progress,
      shard=shard,
      delete=not args.no_delete,
      rehash=args.rehash,
  )
  print(json.dumps({"index": str(args.index), **stats}))
  return 1 if stats["errors"] else 0


def cmd_index_stats(args) -> int:
  from provjax.provenance.gallery import Gallery

  print(json.dumps({"index": str(args.index), **Gallery.open(args.index).stats()}))
  return 0


def cmd_index_verify(args) -> int:
  """Every checksum of the gallery (index files and thumbnails); exit 1 names a corrupt file."""
  from provjax.provenance.gallery import Gallery
  from provjax.retrieval.index import IndexCorruptError

  try:
    result = Gallery.open(args.index, verify=False).verify()
  except IndexCorruptError as e:
    print(f"provjax index verify: {e}", file=sys.stderr)
    print(json.dumps({"index": str(args.index), "ok": False, "error": str(e)}))
    return 1
  print(json.dumps({"index": str(args.index), **result}))
  return 0


def cmd_index_compact(args) -> int:
  from provjax.provenance.gallery import Gallery

  print(json.dumps({"index": str(args.index), **Gallery.open(args.index).compact()}))
  return 0


def _process(args) -> tuple[int, int]:
  """This process's (index, count) in the JAX multi-process job (`--distributed`)."""
  from provjax.provenance import distributed

  return distributed.initialize(args.coordinator, args.num_processes, args.process_id)


def _shard(args) -> tuple[int, int] | None:
  """This host's (index, count): from flags, or from JAX after distributed init."""
  if args.distributed:
    return _process(args)
  if args.shard:
    i, _, n = args.shard.partition("/")
    return int(i), int(n)
  return None


QUERY_EPILOG = """\
output: one line per IMAGE, in order. With --json (the default when stdout is
not a terminal) each line is a JSON object:
  query        the IMAGE argument as given
  match        the best candidate unless it is judged distinct, else null:
               the candidate fields plus verdict ("benign" or "manipulated")
  candidates   up to --top gallery images after re-ranking, most likely
               source first: id, path, missing (true when the file is gone
               since indexing: pictures use the stored thumbnail), score
               (descriptor cosine), p_benign, p_manipulated, p_distinct
               (comparator probabilities)
  heatmap_png  picture: query | matched original | edit heatmap overlay
  heatmap_npy  the edit heatmap on the query's pixels (float32 [H, W], 0..1);
               null when there is no match (no original to compare with)
  error        null, or why this image was skipped (the file is named; the
               same reason goes to stderr and the other images go on)

exit status: 0 every image processed, 1 some image skipped, 2 bad arguments.
"""


def _human_line(record: dict) -> str:
  """A terminal's summary of one query record."""
  query = record["query"]
  if record["error"]:
    return f"{query}: skipped (reason on stderr)"
  match = record["match"]
  if match:
    found = f"{match['verdict']} copy of {match['path']} (p_distinct {match['p_distinct']:.2f})"
  else:
    found = "no match in the gallery"
  return f"{query}: {found} -> {record['heatmap_png']}"


def cmd_query(args) -> int:
  from provjax.provenance.engine import Engine, Fusion
  from provjax.provenance.gallery import Gallery
  from provjax.provenance.report import write_query_outputs
  from provjax.data.images import read_image
  from provjax.weights import read_config

  # The gallery first: a wrong --index is a bad argument, found before the
  # models are loaded.
  if args.distributed:
    from provjax.provenance.distributed import DistributedGallery

    process = _process(args)
    gallery = DistributedGallery.open(args.index, process)
  else:
    process, gallery = (0, 1), Gallery.open(args.index)
  built_with = gallery.info.get("descriptor")
  if built_with and built_with != args.descriptor:
    # Another descriptor's vectors live in another space: the search would answer nonsense.
    raise ValueError(
        f"--index {args.index} was built with --descriptor {built_with}, not {args.descriptor}: "
        "query with the same descriptor, or rebuild the index"
    )
  # Every process runs every query (the search and the candidates are collective);
  # the first one writes the pictures and prints.
  writer = process[0] == 0
  descriptor, comparator = _models(args)
  fusion = Fusion.from_config(read_config(args.comparator))
  engine = Engine(gallery, descriptor, comparator, k=args.k, fusion=fusion)
  out = Path(args.out)
  if writer:
    out.mkdir(parents=True, exist_ok=True)
  as_json = args.json or not sys.stdout.isatty()
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
      if writer:
        stem = f"{n:04d}-{Path(path).stem}"
        record.update(write_query_outputs(out, stem, image, result, top=args.top))
    except Exception as e:  # pylint: disable=broad-exception-caught
      # Whatever one input does, it costs only its own line: the batch goes on.
      record["error"] = failure_line(path, e)
      if writer:
        print(f"provjax query: skipped {record['error']}", file=sys.stderr, flush=True)
      failed += 1
    if writer:
      print(json.dumps(record) if as_json else _human_line(record), flush=True)
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


def _at_least(minimum: int):
  """An argparse type: an integer >= minimum (else exit 2 with usage)."""

  def parse(text: str) -> int:
    value = int(text)
    if value < minimum:
      raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value

  parse.__name__ = "integer"  # how argparse names the type in its message
  return parse


def _distributed_flags(p, what: str) -> None:
  p.add_argument(
      "--distributed",
      action="store_true",
      help=f"a JAX multi-process job (jax.distributed.initialize()): {what}",
  )
  g = p.add_argument_group(
      "distributed", "the job's layout, where the cluster does not give it (SLURM, TPU, ... do)"
  )
  g.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
  g.add_argument("--num-processes", type=_at_least(1), help="processes in the job")
  g.add_argument("--process-id", type=_at_least(0), help="this process's index")


def _model_flags(p) -> None:
  p.add_argument(
      "--descriptor", default=DEFAULT_DESCRIPTOR, help="search encoder weights (arch.tag)"
  )
  p.add_argument("--comparator", default=DEFAULT_COMPARATOR, help="comparator weights (arch.tag)")


def add_commands(sub) -> None:
  p = sub.add_parser("index", help="descriptor index of a trusted database")
  isub = p.add_subparsers(dest="index_command", required=True, metavar="ACTION")
  b = isub.add_parser(
      "build",
      help="sync --index DIR with IMAGES_DIR: add new, remove gone, re-index changed (resumable)",
  )
  b.add_argument("images_dir", help="folder of trusted images (searched recursively)")
  b.add_argument("--index", required=True, help="gallery folder to create or sync")
  b.add_argument(
      "--no-delete",
      action="store_true",
      help="keep entries whose files are gone (archives on removable storage)",
  )
  b.add_argument(
      "--backend",
      default="scann",
      choices=["scann", "exact"],
      help="search backend: scann (fast, approximate) or exact (brute force)",
  )
  b.add_argument(
      "--save-every",
      type=_at_least(1),
      default=1000,
      help="save progress every N images, so an interrupted build resumes there",
  )
  b.add_argument(
      "--rehash",
      action="store_true",
      help="read every file for its sha256, even those whose size and time are unchanged",
  )
  b.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
  b.add_argument(
      "--shard",
      default=None,
      metavar="I/N",
      help="sync shard I of N (one per host): the files whose path hashes to I",
  )
  _distributed_flags(b, "shard = process: each process syncs the files whose path hashes to it")
  _model_flags(b)
  b.set_defaults(fn=cmd_index_build)
  for name, fn, text in (
      ("stats", cmd_index_stats, "size, shards, tombstones, bytes and last sync as JSON"),
      ("compact", cmd_index_compact, "rebuild the search structures without tombstones (atomic)"),
      ("verify", cmd_index_verify, "check the sha256 of every index file and thumbnail chunk"),
  ):
    c = isub.add_parser(name, help=text)
    c.add_argument("--index", required=True, help="gallery folder made by `provjax index build`")
    c.set_defaults(fn=fn)

  p = sub.add_parser(
      "query",
      help="provenance: match, verdict and edit heatmap per image",
      epilog=QUERY_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("images", nargs="+", metavar="IMAGE", help="query images")
  p.add_argument("--index", required=True, help="gallery folder made by `provjax index build`")
  p.add_argument("--out", required=True, help="folder for the pictures and heatmaps")
  p.add_argument(
      "--k", type=_at_least(1), default=100, help="candidates re-ranked by the comparator"
  )
  p.add_argument("--top", type=_at_least(0), default=10, help="candidates listed in the JSON")
  p.add_argument(
      "--json",
      action="store_true",
      help="JSON lines even on a terminal (the default when stdout is not a terminal)",
  )
  _distributed_flags(
      p, "each process opens only its own shard DIR/shard-<i>-of-<n>/; top-k lists merged"
  )
  _model_flags(p)
  p.set_defaults(fn=cmd_query)

  p = sub.add_parser("demo", help="the main job on the embedded sample photographs")
  p.add_argument("--out", default="provjax-demo", help="folder for the demo gallery and report")
  p.add_argument(
      "--distractors",
      type=_at_least(0),
      default=1000,
      help="unrelated gallery images added around the originals",
  )
  p.add_argument(
      "--k", type=_at_least(1), default=100, help="candidates re-ranked by the comparator"
  )
  p.add_argument("--seed", type=int, default=0, help="seed of the edits and distractors")
  _model_flags(p)
  p.set_defaults(fn=cmd_demo)


# ------------------------------------------------------------- converters ---


def cmd_convert_simprov(args) -> int:
  from provjax.provenance.convert import convert_descriptor
  from provjax.torch_convert import run_converter

  return run_converter(convert_descriptor, args)


def cmd_convert_simprov_comparator(args) -> int:
  from provjax.provenance.convert import convert_comparator
  from provjax.torch_convert import run_converter

  return run_converter(convert_comparator, args)


def add_converters(convert) -> None:
  """`convert simprov FILE --name simprov.<tag>`, `convert simprov_comparator FILE --name ...`.

  Both read a torchvision ResNet-50 state dict (e.g. ImageNet or
  DeepAugment+AugMix weights) into the r50 model's ResNet parts; the parts
  with no torchvision counterpart stay untrained (provjax.provenance.convert).
  """
  from provjax.torch_convert import add_convert_command

  for arch, what, fn in (
      ("simprov", "the descriptor's backbone (the head stays untrained)", cmd_convert_simprov),
      (
          "simprov_comparator",
          "the comparator's split stem and trunk (warp, fusion and heads stay untrained)",
          cmd_convert_simprov_comparator,
      ),
  ):
    add_convert_command(
        convert,
        arch,
        arch,
        fn,
        help=f"a torchvision ResNet-50 state dict -> {what}",
        description=f"Convert a torchvision ResNet-50 state dict (.pth, or .npz of the same keys; "
        f"fc.* ignored) into {what}: a released-weights folder ($PROVJAX_CHECKPOINTS or "
        f"checkpoints/) to start `provjax train` from (--config.init_from={arch}.<tag>). Prints "
        "{name, folder} as JSON.",
        file_help="the state dict",
        example="imagenet",
    )


def add_evals(p) -> dict:
  """`provjax eval psbattles`: its flags on the runner's `eval` parser; {name: (fn, summary)}."""
  from provjax.provenance import psbattles_eval

  return psbattles_eval.add_evals(p)
