"""`provjax detect` and `provjax convert trufor`.

`add_commands` registers `detect`; `add_converters` registers `trufor` under
the `convert` group that `provjax.cli` owns (each system adds its own
converter there, so no system edits another's module).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

from provjax.data.images import failure_line
from provjax.forgery.detect import DEFAULT_MAX_PIXELS

DEFAULT_MODEL = "trufor.synth-v2"

DETECT_EPILOG = """\
output: one line per IMAGE, in order. With --json (the default when stdout is
not a terminal) each line is a JSON object:
  path         the IMAGE argument as given
  size         [height, width] of the image (null if it could not be read)
  score        whole-image forgery score in [0, 1] (sigmoid of the detection
               logit; higher = more likely manipulated)
  map_npz      .npz like the official TruFor tool's: map (probability that a
               pixel is forged, softmax of the localization logits), conf
               (reliability of the map, sigmoid), score, imgsize (H, W) and,
               with --save-np, np++ (the Noiseprint++ map); every map is
               float32 [H, W] on the image's own pixels
  overlay_png  picture: image | localization map | confidence map
  error        null, or why this image was skipped (the file is named; the
               same reason goes to stderr and the other images go on)

Images run whole at their native size (never resized or tiled, batch 1);
each new size is compiled once. Memory grows with the pixel count, so images
above --max-pixels are skipped with an error; `provjax bench --only detect`
measures the memory a size needs on this machine.

exit status: 0 every image processed, 1 some image skipped, 2 bad arguments.
"""


def _human_line(record: dict) -> str:
  """A terminal's summary of one detect record."""
  if record["error"]:
    return f"{record['path']}: skipped (reason on stderr)"
  h, w = record["size"]
  return (
      f"{record['path']} ({w}x{h}): forgery score {record['score']:.3f} -> {record['overlay_png']}"
  )


def _detect_one(detector, out: Path, n: int, path: str, args) -> dict:
  """The output record of IMAGE number `n`; raises whatever reading or running it raises."""
  from provjax.data.images import read_image
  from provjax.forgery.detect import write_outputs

  # The pixel limit is applied before decoding, so a huge file costs no memory.
  image = read_image(path, max_pixels=args.max_pixels)
  pred = detector(image)
  files = write_outputs(
      out, f"{n:04d}-{Path(path).stem}", image, pred, title=Path(path).name, save_np=args.save_np
  )
  return {"size": list(image.shape[:2]), "score": pred.score, **files}


def cmd_detect(args) -> int:
  import provjax
  from provjax.forgery.detect import Detector
  from tqdm import tqdm

  # The model first: a wrong --model is a bad argument, found before any image is read.
  detector = Detector(provjax.load(args.model), max_pixels=args.max_pixels)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  as_json = args.json or not sys.stdout.isatty()
  failed = 0
  bar = tqdm(args.images, disable=args.no_progress, file=sys.stderr, desc="detect", unit="image")
  for n, path in enumerate(bar):
    record = {
        "path": path,
        "size": None,
        "score": None,
        "map_npz": None,
        "overlay_png": None,
        "error": None,
    }
    try:
      record.update(_detect_one(detector, out, n, path, args))
    except Exception as e:  # pylint: disable=broad-exception-caught
      # Whatever one input does, it costs only its own line: the batch goes on.
      record["error"] = failure_line(path, e)
      bar.write(f"provjax detect: skipped {record['error']}", file=sys.stderr)
      failed += 1
    print(json.dumps(record) if as_json else _human_line(record), flush=True)
  bar.close()
  return 1 if failed else 0


def cmd_convert_trufor(args) -> int:
  from provjax.forgery.convert import convert_trufor
  from provjax.torch_convert import run_converter

  return run_converter(convert_trufor, args)


def _at_least(minimum: int):
  """An argparse type: an integer >= minimum (else exit 2 with usage)."""

  def parse(text: str) -> int:
    value = int(text)
    if value < minimum:
      raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value

  parse.__name__ = "integer"  # how argparse names the type in its message
  return parse


def add_commands(sub) -> None:
  p = sub.add_parser(
      "detect",
      help="TruFor: forgery map, confidence map and integrity score per image",
      epilog=DETECT_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("images", nargs="+", metavar="IMAGE", help="images to analyse")
  p.add_argument("--out", required=True, help="folder for the .npz maps and the pictures")
  p.add_argument(
      "--model", default=DEFAULT_MODEL, help=f"TruFor weights (arch.tag; default {DEFAULT_MODEL})"
  )
  p.add_argument(
      "--max-pixels",
      type=_at_least(1),
      default=DEFAULT_MAX_PIXELS,
      help=f"skip images with more pixels (the memory limit; default {DEFAULT_MAX_PIXELS})",
  )
  p.add_argument("--save-np", action="store_true", help="also store the Noiseprint++ map (np++)")
  p.add_argument(
      "--json",
      action="store_true",
      help="JSON lines even on a terminal (the default when stdout is not a terminal)",
  )
  p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
  p.set_defaults(fn=cmd_detect)


def add_converters(convert) -> None:
  """`provjax convert trufor FILE --name trufor.<tag>` under the runner's `convert` group."""
  from provjax.torch_convert import add_convert_command

  add_convert_command(
      convert,
      "trufor",
      "trufor",
      cmd_convert_trufor,
      help="official TruFor weights (trufor.pth.tar) -> released weights",
      description="Convert the official TruFor checkpoint into a released-weights folder "
      "($PROVJAX_CHECKPOINTS or checkpoints/) and print {name, folder} as JSON.",
      file_help="the official checkpoint",
      example="official",
  )
