"""Export a trained RepMix with a card written from measurements.

    python scripts/release_repmix.py --workdir runs/repmix_tiny \
        --nomix-workdir runs/repmix_tiny_nomix --tag synth-v1

Measured here, in this run:

* the real / synthetic threshold on P(real), chosen on the zoo's held-back
  `val` split (its real images, clean and with a training corruption): the
  largest threshold, at most 0.5, that calls at most `target_fpr` of them
  synthetic. The test splits never choose anything;
* the official test.py figures (argmax: detection accuracy, attribution
  accuracy, NMI, seen / unseen semantics) on the clean, seen-corruption and
  unseen-corruption test copies, for the released model and for the same
  recipe without mixing (what mixing buys);
* at the released threshold: the share of test real images called synthetic
  (all semantics and the photographs alone) and of test fakes caught;
* the clean test confusion matrix, purity and FD ratio of the embeddings.
"""

from __future__ import annotations

import json

import numpy as np

from provjax import cards, weights
from provjax.data import genzoo
from provjax.metrics import attribution as metrics
from provjax.tasks import repmix as repmix_task
from provjax.train.evaluate import restore_model
from provjax.train.logging import run_summary
from provjax.train.snapshot import as_dict, read
from provjax.transforms import corruptions

PAPER = "Bui, Yu, Collomosse, RepMix, ECCV 2022, arXiv 2207.02063"
SUMMARY = (
    f"RepMix ({PAPER}) in JAX/Flax NNX: a ResNet with a representation-mixing layer and "
    "detection-gated attribution heads, trained from scratch on provjax's generator zoo (real "
    "content + small encoder-decoders that differ only in their upsampling path, several "
    "semantics, the official training corruptions). It says whether an image is real or made "
    "by one of the zoo's "
    "generators; generators outside the zoo are outside its closed set. Run it with "
    "`provjax attribute IMAGE... --model NAME`."
)
COPIES = {"test": "clean", "test_seen": "seen corruptions", "test_unseen": "unseen corruptions"}
PHOTO = genzoo.SEMANTICS.index("photo")


def calibrate(model, config, target_fpr: float) -> dict:
  """The threshold on P(real) from the val split's real images, clean and corrupted."""
  arrays = repmix_task.split_arrays(config, "val")
  real = arrays["images"][arrays["labels"] == 0]
  rng = np.random.default_rng(0)
  corrupted = np.stack([corruptions.random_corruption(im, rng, p=1.0)[0] for im in real])
  p_real = repmix_task.predict(model, np.concatenate([real, corrupted]))[0][:, 0]
  # The k-th smallest P(real), k = floor(target * n): at most k reals fall strictly below it.
  k = int(np.floor(target_fpr * len(p_real)))
  threshold = float(min(0.5, np.sort(p_real)[k]))
  return {
      "threshold": threshold,
      "val real images": int(len(p_real)),
      "target share of val reals called synthetic": target_fpr,
      "val reals called synthetic": float(np.mean(p_real < threshold)),
  }


def measure(model, config, threshold: float | None = None) -> dict:
  """Per test copy: the official figures and, given a threshold, the thresholded ones."""
  out = {}
  for split, title in COPIES.items():
    arrays = repmix_task.split_arrays(config, split)
    probs, embeds = repmix_task.predict(model, arrays["images"])
    labels, sem = arrays["labels"], arrays["semantics"]
    row = metrics.summary(labels, probs.argmax(-1), sem, genzoo.NUM_SEEN)
    if threshold is not None:
      synthetic = probs[:, 0] < threshold
      row["reals called synthetic"] = float(np.mean(synthetic[labels == 0]))
      row["real photos called synthetic"] = float(
          np.mean(synthetic[(labels == 0) & (sem == PHOTO)])
      )
      row["fakes caught"] = float(np.mean(synthetic[labels > 0]))
    out[title] = {"row": row, "preds": probs.argmax(-1), "labels": labels, "embeds": embeds}
  return out


def rows(measured: dict) -> list[dict]:
  return [{"test copy": title, **m["row"]} for title, m in measured.items()]


def confusion_rows(clean: dict, classes) -> list[dict]:
  matrix = metrics.confusion(clean["labels"], clean["preds"], len(classes))
  return [
      {"true \\ predicted": c, **{p: int(v) for p, v in zip(classes, r)}}
      for c, r in zip(classes, matrix)
  ]


def findings(mixed: dict, nomix: dict | None, classes) -> list[str]:
  clean = mixed["clean"]
  matrix = metrics.confusion(clean["labels"], clean["preds"], len(classes))
  off = matrix - np.diag(np.diag(matrix))
  true, pred = np.unravel_index(np.argmax(off), off.shape)
  out = [
      f"Most confused on the clean copy: {classes[true]} predicted as {classes[pred]} "
      f"{int(off[true, pred])} times of {int(matrix[true].sum())}."
  ]
  for title in COPIES.values():
    a = mixed[title]["row"]
    line = f"{title}: attribution accuracy {cards.fmt(a['attr_acc'])}"
    if nomix is not None:
      line += f" with mixing, {cards.fmt(nomix[title]['row']['attr_acc'])} without"
    if "unseen/attr_acc" in a:
      line += (
          f"; seen semantics {cards.fmt(a['seen/attr_acc'])}, unseen "
          f"{cards.fmt(a['unseen/attr_acc'])}"
      )
    out.append(line + ".")
  return out


def release(workdir, *, tag: str, nomix_workdir=None, target_fpr: float = 0.01) -> dict:
  config = read(workdir)
  arch, variant = config.model.name.split(".")
  model, step = restore_model(config, workdir)
  classes = genzoo.class_names(tuple(config.data.generators))
  cal = calibrate(model, config, target_fpr)
  mixed = measure(model, config, cal["threshold"])
  nomix = None
  if nomix_workdir:
    nomix_model, _ = restore_model(read(nomix_workdir), nomix_workdir)
    nomix = measure(nomix_model, read(nomix_workdir))
  clean = mixed["clean"]
  name = f"{arch}.{tag}"
  how = (
      "Official test.py figures (no mixing at test, pred = argmax of the gated attribution; "
      "seen semantics: dlabel < 4) on the zoo's held-back test split, each image once per "
      "copy; the thresholded columns use the released threshold."
  )
  tables = {"RepMix (released)": (how, rows(mixed))}
  if nomix is not None:
    tables["Same recipe without mixing (what mixing buys)"] = (
        f"`{read(nomix_workdir).model.name}` trained with `nomix` (one image per sample, twice "
        "the batch), measured the same way.",
        rows(nomix),
    )
  tables["Confusion matrix, clean test copy"] = (
      "Rows: true class; columns: argmax.",
      confusion_rows(clean, classes),
  )
  structure = {
      "purity (clean)": metrics.purity(clean["labels"], clean["preds"]),
      "FD ratio of the embeddings (clean; lower is better)": metrics.fd_ratio(
          clean["embeds"], clean["labels"], np.random.default_rng(0)
      ),
  }
  card = cards.Card(
      name=name,
      summary=SUMMARY,
      arch=config.model.name,
      config_spec=f"configs/repmix/repmix.py:{variant}",
      config=as_dict(config),
      steps=step,
      data=(
          f"`provjax_genzoo` (TFDS, ArrayRecord): real + {len(classes) - 1} generators "
          f"({', '.join(classes[1:])}) x {len(genzoo.SEMANTICS)} semantics at "
          f"{config.data.resolution} px, "
          f"{dict(config.data.per_class)} images per (semantic, class) cell per split, photo "
          f"crops from {config.data.photo_dir or 'the bundled photographs'}; train and val hold "
          "the seen semantics, test all of them (`provjax.data.genzoo`, honest splits)."
      ),
      metrics={
          "Data": {
              "classes (real + generators)": len(classes),
              "semantics": len(genzoo.SEMANTICS),
              "seen semantics": genzoo.NUM_SEEN,
              "test images per copy": int(len(clean["labels"])),
              "test images per class and copy": int(np.sum(clean["labels"] == 0)),
          },
          "Threshold on P(real), chosen on the val split": cal,
          "Embedding structure": structure,
          "Training": run_summary(workdir),
      },
      tables=tables,
      findings=findings(mixed, nomix, classes),
  )
  preprocessing = {
      "resize": config.data.resolution,
      "crop": config.data.crop,
      "classes": list(classes),
      "threshold": cal["threshold"],
      "normalisation": "RGB / 255, then (x - 0.5) / 0.5 inside the model",
      "input": "shorter side to `resize` (bicubic), center crop `crop`",
  }
  folder = weights.export(
      model,
      name,
      arch=config.model.name,
      overrides={**dict(config.model.get("overrides", {})), "mix_level": config.mix.level},
      preprocessing=preprocessing,
      card=card,
      extra={
          "paper": PAPER,
          "config": card.config_spec,
          "steps": step,
          "train_config": as_dict(config),
      },
  )
  return {
      "name": name,
      "folder": str(folder),
      "threshold": cal["threshold"],
      "rows": rows(mixed),
      "nomix": rows(nomix) if nomix else None,
  }


def main(argv=None) -> None:
  import argparse  # pylint: disable=g-import-not-at-top

  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--workdir", required=True, help="the RepMix work dir released")
  p.add_argument("--nomix-workdir", default=None, help="the same recipe without mixing")
  p.add_argument("--tag", default="synth-v1")
  p.add_argument(
      "--target-fpr",
      type=float,
      default=0.01,
      help="share of held-back (val) reals the threshold may call synthetic",
  )
  args = p.parse_args(argv)
  out = release(
      args.workdir, tag=args.tag, nomix_workdir=args.nomix_workdir, target_fpr=args.target_fpr
  )
  print(json.dumps(out, indent=1, default=float))
