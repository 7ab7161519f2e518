"""Export trained zoo generators as released weights `genzoo.<variant>-s<seed>`.

    python scripts/release_genzoo.py --workdirs runs/gen_tconv_s0 runs/gen_nearest_s0 ...

Each card's figures are measured here: reconstruction PSNR per semantic on
held-back content of the zoo's val and test splits (the task's evaluation),
and the training steps and wall-clock from the work dir's log.
"""

from __future__ import annotations

import json

import numpy as np

from provjax import cards, weights
from provjax.models import genzoo as genzoo_models
from provjax.tasks import genzoo as genzoo_task
from provjax.train.evaluate import restore_model
from provjax.train.logging import read_metrics
from provjax.train.snapshot import as_dict, read

SUMMARY = (
    "One generator of provjax's offline stand-in for Attribution88 (specs/repmix.md section "
    "12): a small encoder-decoder trained to reconstruct real content; its decoder's upsampling "
    "path ({upsample}) is what leaves its fingerprint. `provjax_genzoo` uses its outputs as one "
    "synthetic class; it is data for RepMix, not a model to use on its own."
)


def release_one(workdir) -> dict:
  config = read(workdir)
  arch, variant = config.model.name.split(".")
  model, step = restore_model(config, workdir)
  measured = {
      k: v for k, v in genzoo_task.evaluate({"model": model}, config).items() if np.ndim(v) == 0
  }
  log = [r for r in read_metrics(f"{workdir}/metrics.jsonl") if "loss" in r]
  name = f"{arch}.{variant}-s{config.seed}"
  upsample = genzoo_models.VARIANTS[variant]["upsample"]
  card = cards.Card(
      name=name,
      summary=SUMMARY.format(upsample=upsample + (" VAE" if variant == "vae" else "")),
      arch=config.model.name,
      config_spec=f"configs/repmix/generator.py:{variant},seed={config.seed}",
      config=as_dict(config),
      steps=step,
      data="Seen semantics (photo crops of the train photographs, fractal, shapes, blobs) of "
      "the zoo's train split, drawn on the fly at 64 px (`provjax.data.genzoo`).",
      metrics={
          "Reconstruction PSNR (dB), 16 held-back images per semantic and split": measured,
          "Training": {
              "steps": step,
              "final loss": float(log[-1]["loss"]),
              "wall-clock s": log[-1]["time"] - log[0]["time"],
          },
      },
  )
  folder = weights.export(
      model,
      name,
      arch=config.model.name,
      overrides=dict(config.model.get("overrides", {})),
      preprocessing={"input": "RGB uint8 / 255, NHWC, sides multiples of 8"},
      card=card,
      extra={"config": card.config_spec, "steps": step, "train_config": as_dict(config)},
  )
  return {"name": name, "folder": str(folder), "measured": measured}


def main(argv=None) -> None:
  import argparse  # pylint: disable=g-import-not-at-top

  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--workdirs", nargs="+", required=True, help="generator work dirs")
  args = p.parse_args(argv)
  for workdir in args.workdirs:
    print(json.dumps(release_one(workdir), default=float))
