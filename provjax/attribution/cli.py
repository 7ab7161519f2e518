"""`provjax attribute`: is an image synthetic, and which generator made it (RepMix)."""

from __future__ import annotations

import argparse
import json
import sys

from provjax.data.images import failure_line

DEFAULT_MODEL = "repmix.synth-v1"

EPILOG = """\
output: one line per IMAGE, in order. With --json (the default when stdout is
not a terminal) each line is a JSON object:
  path           the IMAGE argument as given
  is_synthetic   true when P(real) is below the released threshold (chosen on
                 held-back real images, never on test data)
  p_real         probability of the real class
  source         "real", or the generator (arch.tag) the image is attributed to
  probabilities  {class: probability} over real and every generator of the zoo
  error          null, or why this image was skipped (the file is named; the
                 same reason goes to stderr and the other images go on)

The released weights know the zoo's generators only (64-px encoder-decoders,
see the model card); any image is resized (shorter side) and center-cropped to
the model's input.

exit status: 0 every image processed, 1 some image skipped, 2 bad arguments.
"""


def _human_line(record: dict) -> str:
  if record["error"]:
    return f"{record['path']}: skipped (reason on stderr)"
  verdict = f"synthetic ({record['source']})" if record["is_synthetic"] else "real"
  return f"{record['path']}: {verdict}, P(real) {record['p_real']:.3f}"


def _empty(path: str) -> dict:
  return {
      "path": path,
      "is_synthetic": None,
      "p_real": None,
      "source": None,
      "probabilities": None,
      "error": None,
  }


def cmd_attribute(args) -> int:
  from provjax.attribution.attributor import Attributor
  from provjax.data.images import read_image
  from tqdm import tqdm

  # The model first: a wrong --model is a bad argument, found before any image is read.
  attributor = Attributor.load(args.model, batch_size=args.batch_size)
  as_json = args.json or not sys.stdout.isatty()
  failed = 0
  bar = tqdm(
      total=len(args.images),
      disable=args.no_progress,
      file=sys.stderr,
      desc="attribute",
      unit="image",
  )
  for start in range(0, len(args.images), args.batch_size):
    records, decoded = [], []
    for path in args.images[start : start + args.batch_size]:
      record = _empty(path)
      try:
        decoded.append((record, read_image(path)))
      except Exception as e:  # pylint: disable=broad-exception-caught
        # A bad file costs only its own line: the batch goes on.
        record["error"] = failure_line(path, e)
        bar.write(f"provjax attribute: skipped {record['error']}", file=sys.stderr)
        failed += 1
      records.append(record)
    if decoded:
      for (record, _), verdict in zip(decoded, attributor([im for _, im in decoded])):
        record.update(verdict)
    for record in records:
      print(json.dumps(record) if as_json else _human_line(record), flush=True)
    bar.update(len(records))
  bar.close()
  return 1 if failed else 0


def _positive(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
  return value


def add_commands(sub) -> None:
  p = sub.add_parser(
      "attribute",
      help="RepMix: real or synthetic, and the generator an image came from",
      epilog=EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("images", nargs="+", metavar="IMAGE", help="images to attribute")
  p.add_argument(
      "--model", default=DEFAULT_MODEL, help=f"RepMix weights (arch.tag; default {DEFAULT_MODEL})"
  )
  p.add_argument("--batch-size", type=_positive, default=32, help="images per forward pass")
  p.add_argument(
      "--json",
      action="store_true",
      help="JSON lines even on a terminal (the default when stdout is not a terminal)",
  )
  p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
  p.set_defaults(fn=cmd_attribute)
