"""Export a trained SafePaint with a card written from measurements, red-team rounds included.

    python scripts/release_safepaint.py --run runs/safepaint_tiny \
        --redteam runs/safepaint_red --blueteam runs/trufor_blue --tag synth-v1

Measured here, in this run, on `provjax_inpainting` (provjax.data.inpainting)
at the records' 256 x 256, with the records' own held-out masks (every
hole-ratio bin and both mask kinds in equal numbers):

* on the `val` split, the base run and its red-team fine-tune are compared
  under the zoo's TruFor (`trufor.synth-v1`): the released generator is the
  red-team one only if it lowers TruFor's image AUC on val while keeping val
  PSNR within 1 dB of the base run; the test split chooses nothing;
* on `test`, quality per ratio bin (provjax.inpainting.evaluate) of SafePaint,
  the classical push-pull fill and, where OpenCV is installed, OpenCV's Telea
  inpainting (the peer a user compares with; OpenCV is not a provjax
  dependency), and the detector vs inpainter table: every inpainter under
  `trufor.synth-v1` and under the blue-team TruFor (fine-tuned on SafePaint
  fills of the train split, `--blueteam`).
"""

from __future__ import annotations

import json
import math

import numpy as np

from provjax import cards, weights
from provjax.data import inpainting as inpainting_data
from provjax.forgery.detect import Detector
from provjax.inpainting import evaluate, fills
from provjax.inpainting.inpainter import Inpainter
from provjax.metrics import inpainting as quality_metrics
from provjax.train.evaluate import restore_model, restore_models
from provjax.train.logging import run_summary
from provjax.train.snapshot import as_dict, read

PAPER = "Chen et al., SafePaint, ACM MM 2024, arXiv 2404.18136"
DETECTOR = "trufor.synth-v1"
PSNR_SLACK_DB = 1.0  # the red-team generator may cost at most this much val PSNR


def pairs(config, split: str, count: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
  """The first `count` (name, image, hole) records of a split (the mask plan cycles every 24)."""
  source = inpainting_data.source_from_config(config.data, split)
  out = []
  for i in range(min(count, len(source))):
    record = source[i]
    image, hole = inpainting_data.decode(record)
    out.append((bytes(record["name"]).decode(), image, hole))
  return out


def write_train_fills(run, out_dir, *, count: int = 240) -> dict:
  """The blue team's data: a run's generator fills the first `count` train records' holes.

  Written in the generic forgery layout (provjax.inpainting.fills) for TruFor's
  `config.data.folder`; train records only, so the test figures stay held out.
  """
  config = read(run)
  model = restore_model(config, run, "generator")[0]
  return fills.write_fill_folder(pairs(config, "train", count), Inpainter(model), out_dir)


def telea_fill():
  """OpenCV's Telea inpainting (radius 3) when OpenCV is installed, else None."""
  try:
    import cv2  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None

  def fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    bgr = np.ascontiguousarray(image[..., ::-1])
    out = cv2.inpaint(bgr, hole.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
    return out[..., ::-1]

  return fill


def choose(base: Inpainter, red: Inpainter | None, val: list, detector: Detector) -> tuple:
  """('base' | 'redteam', val table): the rule in the module docstring."""
  methods = {"base": base} if red is None else {"base": base, "redteam": red}
  table = evaluate.evaluate(methods, val, detector, progress=True)
  if red is None:
    return "base", table
  b, r = table["base"], table["redteam"]
  better = r["image_auc"] < b["image_auc"] and r["psnr"] >= b["psnr"] - PSNR_SLACK_DB
  return ("redteam" if better else "base"), table


def _rows(table: dict, **fixed) -> list[dict]:
  """Flat card rows of an evaluate table (per-bin cells left out)."""
  keys = ("images", *evaluate.QUALITY, *evaluate.FORENSIC)
  return [
      {**fixed, "inpainter": name, **{k: row[k] for k in keys if k in row}}
      for name, row in table.items()
  ]


def _bin_rows(table: dict) -> list[dict]:
  rows = []
  for name, row in table.items():
    for label, cell in row["per_bin"].items():
      rows.append({"inpainter": name, "hole ratio": label, **cell})
  return rows


def release(run, *, redteam=None, blueteam=None, tag: str, val_count=48, test_count=72) -> dict:
  config = read(run)
  base_model, base_step = restore_model(config, run, "generator")
  red_model = restore_model(read(redteam), redteam, "generator")[0] if redteam else None
  detector = Detector(weights.load(DETECTOR))
  val, test = pairs(config, "val", val_count), pairs(config, "test", test_count)
  base = Inpainter(base_model)
  red = Inpainter(red_model) if red_model is not None else None
  chosen, val_table = choose(base, red, val, detector)
  name = f"safepaint.{tag}"
  methods = {f"SafePaint (base run, step {base_step})": base}
  if red is not None:
    methods["SafePaint (red-team round)"] = red
  methods.update(evaluate.BASELINES)
  telea = telea_fill()
  if telea is not None:
    methods["OpenCV Telea r=3 (peer)"] = telea
  test_table = evaluate.evaluate(methods, test, detector, progress=True)
  rounds = _rows(test_table, detector=DETECTOR)
  if blueteam:
    blue_cfg = read(blueteam)
    blue = Detector(restore_models(blue_cfg, blueteam)[0]["model"])
    blue_table = evaluate.evaluate(methods, test, blue, progress=True)
    rounds += _rows(blue_table, detector="TruFor blue-team round")
  released_model = red_model if chosen == "redteam" else base_model
  released_run = redteam if chosen == "redteam" else run
  card = _card(name, read(released_run), released_run, val, test, val_table, rounds, test_table)
  weights.export(
      released_model,
      name,
      arch=f"safepaint.{config.model.variant}",
      overrides=dict(config.model.get("generator", {})),
      preprocessing={
          "input": "RGB uint8 / 255 and a hole mask (1 = hole), any size (padded inside)",
          "merge": "output * mask + image * (1 - mask); pixels outside the hole are the input's",
          "chosen_on_val": chosen,
      },
      card=card,
      extra={
          "paper": PAPER,
          "config": card.config_spec,
          "steps": card.steps,
          "train_config": as_dict(read(released_run)),
          # The card's per-bin rows are labelled by these bounds (hole percentage, (lo, hi]).
          "ratio_bins_percent": [[round(100 * x) for x in b] for b in quality_metrics.RATIO_BINS],
      },
  )
  return {"chosen": chosen, "val": _rows(val_table), "test": rounds}


def _card(name, config, workdir, val, test, val_table, rounds, test_table) -> cards.Card:
  how = (
      "Held-back `test` records of provjax_inpainting at 256 x 256 with their own held-out "
      "masks; every fill merged (the original kept outside the hole). Quality: PSNR / SSIM of "
      "the whole image and PSNR inside the hole (higher = better). Detector: image AUC of the "
      "fills' integrity scores against the originals', pixel F1 (best threshold, TruFor "
      "protocol) and pixel AUC against the hole (lower = stronger anti-forensics; 0.5 = chance)."
  )
  summary = run_summary(workdir)
  return cards.Card(
      name=name,
      summary=(
          "SafePaint (coarse generator, RWSA fine generator, 16-d domain codes pulled towards the "
          f"background; {PAPER}) trained from scratch on CPU. Run it with `provjax inpaint IMAGE "
          "--mask MASK --out FILE`."
      ),
      arch=f"safepaint.{config.model.variant}",
      config_spec=f"configs/safepaint/safepaint.py:{config.model.variant}",
      config=as_dict(config),
      steps=summary["steps"],
      data=(
          "provjax_inpainting (provjax.data.inpainting): 256-pixel crops of the photo folder "
          f"{config.data.photo_dir or '(the bundled samples)'} and procedural images, honest "
          "splits by source; training masks drawn fresh per sample (provjax.transforms.masks), "
          "val / test masks fixed per record. The perceptual and style losses use the zoo's "
          f"own `{config.vgg}` features (no ImageNet VGG19 offline)."
      ),
      metrics={
          "Evaluation": {"val images": len(val), "test images": len(test)},
          "Training": summary,
      },
      tables={
          "Test: detector vs inpainter": (how, rounds),
          "Test: quality per hole-ratio bin": ("The same fills, per bin.", _bin_rows(test_table)),
          "Val (choosing only)": (
              f"Base run against its red-team fine-tune under {DETECTOR}; the red-team one is "
              f"released only if its image AUC is lower with PSNR within {PSNR_SLACK_DB} dB.",
              _rows(val_table),
          ),
      },
      findings=_findings(rounds),
  )


def _findings(rounds: list[dict]) -> list[str]:
  """One sentence per detector: the inpainter it finds least and most (image AUC)."""
  out = []
  for det in dict.fromkeys(r["detector"] for r in rounds):
    rows = [r for r in rounds if r["detector"] == det and not math.isnan(r["image_auc"])]
    if rows:
      lo = min(rows, key=lambda r: r["image_auc"])
      hi = max(rows, key=lambda r: r["image_auc"])
      out.append(
          f"Under {det}, the hardest fills to detect are {lo['inpainter']}'s (image AUC "
          f"{lo['image_auc']:.3f}) and the easiest {hi['inpainter']}'s ({hi['image_auc']:.3f})."
      )
  return out


def main(argv=None) -> None:
  import argparse  # pylint: disable=g-import-not-at-top

  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--run", required=True, help="the SafePaint work dir")
  p.add_argument("--redteam", help="the red-team fine-tune's work dir")
  p.add_argument("--blueteam", help="the blue-team TruFor work dir (ph2 on SafePaint fills)")
  p.add_argument("--tag", default="synth-v1")
  p.add_argument(
      "--write-fills",
      metavar="DIR",
      help="instead of releasing: write --run's fills of train records to DIR (blue-team data)",
  )
  p.add_argument("--val-count", type=int, default=48)
  p.add_argument("--test-count", type=int, default=72)
  args = p.parse_args(argv)
  if args.write_fills:
    print(json.dumps(write_train_fills(args.run, args.write_fills)))
    return
  out = release(
      args.run,
      redteam=args.redteam,
      blueteam=args.blueteam,
      tag=args.tag,
      val_count=args.val_count,
      test_count=args.test_count,
  )
  print(json.dumps(out, indent=1, default=float))
