"""`provjax inpaint`, `provjax eval inpainting`, `provjax convert safepaint` and `convert vgg19`.

`add_commands` registers `inpaint`; `add_converters` registers `safepaint` and
`vgg19` under the `convert` group that `provjax.cli` owns; `add_evals` adds
the `inpainting` benchmark to `provjax eval` (quality and anti-forensic
figures, `provjax.inpainting.evaluate`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
import sys

from provjax import results
from provjax.data.images import IMAGE_EXTENSIONS, failure_line
from provjax.inpainting.fills import write_atomic
from provjax.inpainting.inpainter import DEFAULT_MAX_PIXELS

DEFAULT_MODEL = "safepaint.synth-v1"
DEFAULT_DETECTOR = "trufor.synth-v1"

INPAINT_EPILOG = """\
two forms:
  provjax inpaint IMAGE --mask MASK --out FILE.png
  provjax inpaint IMAGE... --masks DIR --out DIR
In the second, the mask of photo.jpg is photo.<any image extension> in the
--masks folder and the result is photo.png in the --out folder (an output
that would overwrite an input is refused). A mask is any image of its IMAGE's size, in any
mode: luminance above 127 (white) is the hole to fill, the rest is kept pixel
for pixel.

output: one line per IMAGE, in order. With --json (the default when stdout is
not a terminal) each line is a JSON object:
  path           the IMAGE argument as given
  mask           the mask file used (null if none was found)
  output         the filled image, PNG (lossless, written whole or not at all)
  size           [height, width] of the image (null if it could not be read)
  hole_fraction  share of the image's pixels inside the hole (0 = written
                 unchanged, the model is not run)
  error          null, or why this image was skipped (the file is named; the
                 same reason goes to stderr and the other images go on)

Images run whole at their native size (padded by reflection to a multiple of
4 and at least 64 pixels a side, cropped back; never resized); each new size
is compiled once. Memory grows with the pixel count, so images above
--max-pixels are skipped with an error; `provjax bench --only inpaint`
measures what a size needs.

exit status: 0 every image processed, 1 some image skipped, 2 bad arguments.
"""


def _positive(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
  return value


# ------------------------------------------------------------------ masks ---


def masks_by_stem(folder: str) -> dict[str, list[Path]]:
  """The image files directly in `folder` by file stem (a stem may have several)."""
  if not os.path.isdir(folder):
    raise ValueError(f"--masks {folder}: not a directory")
  found: dict[str, list[Path]] = {}
  for path in sorted(Path(folder).iterdir()):
    if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
      found.setdefault(path.stem, []).append(path)
  return found


def mask_of(image: str, found: dict[str, list[Path]], folder: str) -> Path:
  """The one mask named like `image`; raises FileNotFoundError / ValueError naming the files."""
  stem = Path(image).stem
  candidates = found.get(stem, [])
  if not candidates:
    raise FileNotFoundError(f"{image}: no mask {stem}.<image extension> in {folder}")
  if len(candidates) > 1:
    raise ValueError(f"{image}: more than one mask: {', '.join(map(str, candidates))}")
  return candidates[0]


def read_pair(image_path: str, mask_path, max_pixels: int):
  """(image uint8 HxWx3, hole bool HxW) of one input; raises with the offending file named."""
  from provjax.data.images import read_image
  from provjax.inpainting.inpainter import read_mask

  image = read_image(image_path, max_pixels=max_pixels)
  hole = read_mask(str(mask_path), max_pixels=max_pixels)
  if hole.shape != image.shape[:2]:
    (h, w), (mh, mw) = image.shape[:2], hole.shape
    raise ValueError(f"{mask_path}: the mask is {mw}x{mh} but {image_path} is {w}x{h}")
  return image, hole


# ---------------------------------------------------------------- inpaint ---


def _spares_inputs(jobs: list[tuple[str, Path | Exception, Path]]) -> None:
  """Raise ValueError if an output would overwrite an input image or mask."""
  inputs = {Path(image).resolve() for image, _, _ in jobs}
  inputs |= {mask.resolve() for _, mask, _ in jobs if isinstance(mask, Path)}
  for _, _, out in jobs:
    if out.resolve() in inputs:
      raise ValueError(f"--out: {out} is an input; write the results elsewhere")


def _jobs(args) -> list[tuple[str, Path | Exception, Path]]:
  """(image, its mask or why there is none, output file) per IMAGE; ValueError for bad arguments."""
  jobs = _pairs_and_outputs(args)
  _spares_inputs(jobs)
  return jobs


def _pairs_and_outputs(args) -> list[tuple[str, Path | Exception, Path]]:
  out = Path(args.out)
  if args.mask is not None:
    if len(args.images) != 1:
      raise ValueError("--mask MASK takes one IMAGE; for several use --masks DIR --out DIR")
    if out.suffix.lower() != ".png" or out.is_dir():
      raise ValueError(f"--out {out}: expected a .png file (the output is lossless PNG)")
    return [(args.images[0], Path(args.mask), out)]
  if out.exists() and not out.is_dir():
    raise ValueError(f"--out {out}: not a directory (with --masks, --out is a folder)")
  stems: dict[str, str] = {}
  for image in args.images:
    stem = Path(image).stem
    if stem in stems:
      raise ValueError(
          f"{stems[stem]} and {image} share the name {stem!r} (and so mask and output)"
      )
    stems[stem] = image
  found = masks_by_stem(args.masks)
  jobs = []
  for image in args.images:
    try:
      mask: Path | Exception = mask_of(image, found, args.masks)
    except (FileNotFoundError, ValueError) as e:
      mask = e
    jobs.append((image, mask, out / f"{Path(image).stem}.png"))
  return jobs


def _inpaint_one(inpainter, image_path: str, mask, out: Path, max_pixels: int) -> dict:
  """The output record of one job; raises whatever reading, running or writing it raises."""
  if isinstance(mask, Exception):
    raise mask
  from provjax.data.images import encode_png

  image, hole = read_pair(image_path, mask, max_pixels)
  write_atomic(out, encode_png(inpainter(image, hole)))
  return {"output": str(out), "size": list(image.shape[:2]), "hole_fraction": float(hole.mean())}


def _human_line(record: dict) -> str:
  """A terminal's summary of one inpaint record."""
  if record["error"]:
    return f"{record['path']}: skipped (reason on stderr)"
  h, w = record["size"]
  hole = 100 * record["hole_fraction"]
  return f"{record['path']} ({w}x{h}, hole {hole:.1f}%) -> {record['output']}"


def cmd_inpaint(args) -> int:
  import provjax
  from provjax.inpainting.inpainter import Inpainter
  from tqdm import tqdm

  jobs = _jobs(args)
  # The model next: a wrong --model is a bad argument, found before any image is read.
  inpainter = Inpainter(provjax.load(args.model), max_pixels=args.max_pixels)
  for folder in {out.parent for _, _, out in jobs}:
    folder.mkdir(parents=True, exist_ok=True)
  as_json = args.json or not sys.stdout.isatty()
  failed = 0
  bar = tqdm(jobs, disable=args.no_progress, file=sys.stderr, desc="inpaint", unit="image")
  for image, mask, out in bar:
    record = {
        "path": image,
        "mask": None if isinstance(mask, Exception) else str(mask),
        "output": None,
        "size": None,
        "hole_fraction": None,
        "error": None,
    }
    try:
      record.update(_inpaint_one(inpainter, image, mask, out, args.max_pixels))
    except Exception as e:  # pylint: disable=broad-exception-caught
      # Whatever one input does, it costs only its own line: the batch goes on.
      record["error"] = failure_line(image, e)
      bar.write(f"provjax inpaint: skipped {record['error']}", file=sys.stderr)
      failed += 1
    print(json.dumps(record) if as_json else _human_line(record), flush=True)
  bar.close()
  return 1 if failed else 0


def add_commands(sub) -> None:
  p = sub.add_parser(
      "inpaint",
      help="SafePaint: fill the masked hole of each image (anti-forensic inpainting)",
      epilog=INPAINT_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("images", nargs="+", metavar="IMAGE", help="images to fill")
  masks = p.add_mutually_exclusive_group(required=True)
  masks.add_argument("--mask", metavar="MASK", help="the hole of the one IMAGE (white = fill)")
  masks.add_argument("--masks", metavar="DIR", help="folder of masks named like the images")
  p.add_argument(
      "--out", required=True, help="the output .png (with --mask) or folder (with --masks)"
  )
  p.add_argument(
      "--model",
      default=DEFAULT_MODEL,
      help=f"SafePaint weights (arch.tag; default {DEFAULT_MODEL})",
  )
  p.add_argument(
      "--max-pixels",
      type=_positive,
      default=DEFAULT_MAX_PIXELS,
      help=f"skip images with more pixels (the memory limit; default {DEFAULT_MAX_PIXELS})",
  )
  p.add_argument(
      "--json",
      action="store_true",
      help="JSON lines even on a terminal (the default when stdout is not a terminal)",
  )
  p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
  p.set_defaults(fn=cmd_inpaint)


# ------------------------------------------------------- eval inpainting ---


def _read_pairs(args, found: dict[str, list[Path]]) -> tuple[list, int]:
  """(name, image, hole) of every readable image of --images with its mask; and the skip count."""
  from provjax.data.images import list_images

  pairs, skipped = [], 0
  for path in list_images(args.images):
    try:
      pairs.append(
          (path.name, *read_pair(str(path), mask_of(str(path), found, args.masks), args.max_pixels))
      )
    except Exception as e:  # pylint: disable=broad-exception-caught
      print(f"provjax eval: skipped {failure_line(str(path), e)}", file=sys.stderr)
      skipped += 1
  if not pairs:
    raise ValueError(f"no readable image with a mask in {args.images}")
  return pairs, skipped


def _json_ready(value):
  """`value` with every non-finite number (an undefined figure, an exact fill's PSNR) as None."""
  if isinstance(value, dict):
    return {k: _json_ready(v) for k, v in value.items()}
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def cmd_eval_inpainting(args) -> int:
  import provjax
  from provjax.forgery.detect import Detector
  from provjax.inpainting import evaluate
  from provjax.inpainting.inpainter import Inpainter

  if not (args.images and args.masks):
    raise ValueError("eval inpainting needs --images DIR and --masks DIR")
  if not os.path.isdir(args.images):
    raise ValueError(f"--images {args.images}: not a directory")
  found = masks_by_stem(args.masks)
  # Both models next: a wrong name is a bad argument, found before any image is read.
  detector = Detector(provjax.load(args.detector), max_pixels=args.max_pixels)
  inpainter = Inpainter(provjax.load(args.model), max_pixels=args.max_pixels)
  pairs, skipped = _read_pairs(args, found)
  methods = {args.model: inpainter, **evaluate.BASELINES}
  table = evaluate.evaluate(methods, pairs, detector, progress=not args.no_progress)
  report = {
      "benchmark": "inpainting",
      "images": len(pairs),
      "skipped": skipped,
      "model": args.model,
      "detector": args.detector,
      "rows": _json_ready(table),
      "markdown": evaluate.markdown(table, detector=args.detector),
  }
  if args.out:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, (json.dumps(report, indent=2) + "\n").encode())
  print(json.dumps(report), flush=True)
  results.record(args, "inpainting", result_rows(table, args.detector, args.images))
  return 1 if skipped else 0


def result_rows(table: dict, detector: str, images: str) -> list[dict]:
  """The report's table as results rows: one model per method, the detector named in the metric.

  A classical baseline has no tag: "push-pull (classical)" is named `push-pull.classical`.
  """
  from provjax.inpainting import evaluate

  rows = []
  split = f"folder:{Path(images).resolve().name}"
  for method, row in table.items():
    name = method if "." in method else f"{method.split(' (')[0]}.classical"
    metrics = {k: v for k, v in row.items() if k in evaluate.QUALITY or k == "images"}
    metrics.update(
        {f"{b}/{k}": v for b, cell in row.get("per_bin", {}).items() for k, v in cell.items()}
    )
    metrics.update({f"{detector}/{k}": v for k, v in row.items() if k in evaluate.FORENSIC})
    rows += results.rows_from_metrics(name, split, metrics)
  return rows


def add_evals(p) -> dict:
  """`provjax eval inpainting`: its flags on the runner's `eval` parser; {name: (fn, summary)}."""
  group = p.add_argument_group(
      "eval inpainting",
      "quality per hole-ratio bin (PSNR, SSIM) and anti-forensic figures of a TruFor "
      "(lower = stronger anti-forensics) for SafePaint beside the classical push-pull fill; "
      "prints the report as JSON",
  )
  group.add_argument("--images", metavar="DIR", help="original images (the ground truth)")
  group.add_argument("--masks", metavar="DIR", help="their holes, named like the images")
  group.add_argument(
      "--model", default=DEFAULT_MODEL, help=f"SafePaint weights (default {DEFAULT_MODEL})"
  )
  group.add_argument(
      "--detector", default=DEFAULT_DETECTOR, help=f"TruFor weights (default {DEFAULT_DETECTOR})"
  )
  group.add_argument("--out", metavar="REPORT.json", help="also write the report there")
  group.add_argument(
      "--max-pixels",
      type=_positive,
      default=DEFAULT_MAX_PIXELS,
      help=f"skip images with more pixels (default {DEFAULT_MAX_PIXELS})",
  )
  group.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
  return {"inpainting": (cmd_eval_inpainting, "inpainting quality and anti-forensics (SafePaint)")}


# ------------------------------------------------------------- converters ---


def cmd_convert_safepaint(args) -> int:
  from provjax.inpainting.convert import convert_safepaint
  from provjax.torch_convert import run_converter

  return run_converter(convert_safepaint, args)


def cmd_convert_vgg19(args) -> int:
  from provjax.inpainting.vgg_convert import convert_vgg19
  from provjax.torch_convert import run_converter

  return run_converter(convert_vgg19, args)


def _add_converter(convert, system: str, arch: str, what: str, fn) -> None:
  from provjax.torch_convert import add_convert_command

  add_convert_command(
      convert,
      system,
      arch,
      fn,
      help=f"{what} -> released weights",
      description=f"Convert {what} into a released-weights folder ($PROVJAX_CHECKPOINTS or "
      "checkpoints/) and print {name, folder} as JSON.",
      file_help="the PyTorch state dict",
      example="official",
  )


def add_converters(convert) -> None:
  """`convert safepaint FILE --name safepaint.<tag>` and `convert vgg19 FILE --name vgg.<tag>`."""
  _add_converter(
      convert,
      "safepaint",
      "safepaint",
      "an official SafePaint generator state dict (InpaintGenerator)",
      cmd_convert_safepaint,
  )
  _add_converter(
      convert,
      "vgg19",
      "vgg",
      "a torchvision VGG19 state dict (features.N.*; the classifier is ignored)",
      cmd_convert_vgg19,
  )
