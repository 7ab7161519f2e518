"""Export a trained TruFor as released weights with a card written from measurements.

    python scripts/release_trufor.py --ph3-workdir runs/trufor_ph3_tiny \
        --ph2-workdir runs/trufor_ph2_tiny --np-workdir runs/trufor_np_tiny --tag synth-v1

Every figure of the card is measured here, in this run, on the synthetic
forgery builder's held-back test split (the phase-3 config's data, split
`test`: sources disjoint from training, `provjax.data.splits`):

* per edit kind (splice, copy_move, removal) and over all kinds: image AUC,
  balanced accuracy at score > 0.5, pixel F1 (best threshold and 0.5) and MCC
  (`provjax.metrics.forgery`), for TruFor and for the ELA reference;
* the robustness sweep (`provjax.forgery.robustness`) of both detectors;
* training steps and wall-clock time of each phase, read from the work dirs'
  metrics.jsonl, and each phase's held-back evaluation lines.

No operating point is tuned: the protocol's thresholds are fixed at 0.5, so
the test split only measures. Sentences that compare or rank come from those
figures.
"""

from __future__ import annotations

import json
from pathlib import Path
import statistics

from provjax import cards, weights
from provjax.data import forgery
from provjax.forgery import robustness
from provjax.models import ela
from provjax.forgery.detect import Detector
from provjax.metrics import forgery as forgery_metrics
from provjax.train import init_from as init_from_lib
from provjax.train import snapshot
from provjax.train.evaluate import restore_model
from provjax.train.logging import read_metrics
from provjax.train.snapshot import as_dict

PHASES = (
    ("np", "1 Noiseprint++"),
    ("ph2", "2 encoder + localization"),
    ("ph3", "3 confidence + detection"),
)
PREPROCESSING = {
    "scale": 1.0 / 256.0,
    "normalisation": "imagenet on the RGB branch only",
    "input": "RGB uint8 / 256, NHWC float32, whole image at native size "
    "(provjax.models.trufor.preprocess; provjax.forgery.detect.Detector)",
}
PAPER = "Guillaro et al., TruFor, CVPR 2023, arXiv 2212.10957"
SUMMARY = (
    f"TruFor ({PAPER}) in JAX/Flax NNX: a Noiseprint++ extractor, a dual MiT "
    "encoder over the RGB image and its noiseprint with FRM/FFM fusion, an anomaly (localization) "
    "decoder, a confidence decoder and a detector pooling both maps into a whole-image score. "
    "Trained from scratch in three phases on synthetic forgeries (no official weights offline). "
    "Run it with `provjax detect IMAGE... --out DIR --model NAME`."
)
# Card columns: the protocol's names for the robustness / per-kind figures.
COLUMNS = {
    "images": "images",
    "forged": "forged",
    "auc": "image AUC",
    "bacc": "bACC",
    "f1_best": "pixel F1 best",
    "f1_fixed": "pixel F1 fixed",
    "mcc": "MCC",
}


def data_description(config) -> str:
  """Where the training and test forgeries came from, from the config alone."""
  d = config.data
  photos = f"the photo folder `{d.photo_dir}`" if d.get("photo_dir") else "the bundled photographs"
  return (
      f"`provjax_forgery` (TFDS, ArrayRecord), {d.count} training records at {d.resolution} px "
      f"made from {photos} and procedural images: half authentic, the rest splice, copy-move and "
      "removal with exact masks, then resize / JPEG post-processing (`provjax.data.forgery`). "
      "The card's test figures use the builder's held-back `test` split, whose photographs and "
      "procedural seeds no training record uses (`provjax.data.splits`)."
  )


# ------------------------------------------------------------ measurements ---


def test_samples(config, num_images: int | None = None) -> list[robustness.Sample]:
  """The first `num_images` (default: all) records of the builder's test split, decoded."""
  source = forgery.source_from_config(config.data, "test")
  count = len(source) if num_images is None else min(num_images, len(source))
  return [robustness.decode(source[i]) for i in range(count)]


def detectors(model) -> dict:
  """name -> predict_fn(image) -> (map, score): the released model and the ELA reference."""
  detector = Detector(model)

  def trufor(image):
    pred = detector(image)
    return pred.map, pred.score

  return {"TruFor": trufor, "ELA": ela.ela}


def kind_rows(by_kind: dict) -> list[dict]:
  return [{"edit kind": k, **{COLUMNS[c]: v for c, v in fig.items()}} for k, fig in by_kind.items()]


def robustness_rows(clean: dict, sweep_rows: list[dict]) -> list[dict]:
  """The clean figures first, then one row per perturbation and level."""
  keys = ("auc", "bacc", "f1_best", "f1_fixed")
  rows = [{"perturbation": "none", **{COLUMNS[k]: clean[k] for k in keys}}]
  for r in sweep_rows:
    rows.append(
        {"perturbation": f"{r['perturbation']} {r['level']}", **{COLUMNS[k]: r[k] for k in keys}}
    )
  return rows


def measure(model, config, *, num_images=None, perturbations=robustness.PERTURBATIONS) -> dict:
  """Per-kind figures and robustness rows of TruFor and ELA on the same test samples."""
  samples = test_samples(config, num_images)
  out = {"images": len(samples), "forged": sum(s.label for s in samples), "detectors": {}}
  for name, fn in detectors(model).items():
    by_kind = robustness.summarize(robustness.predict_all(fn, samples), samples)
    sweep = robustness.sweep(fn, samples, perturbations)
    out["detectors"][name] = {
        "by_kind": by_kind,
        "robustness": robustness_rows(by_kind["all"], sweep),
    }
  return out


def started_from(init_from) -> str:
  """A run's `init_from` in words: each source (a work dir by its name) and the part copied."""
  out = []
  for entry in init_from_lib.entries(init_from):
    source = Path(entry["source"]).name
    out.append(f"{source} ({entry['from']})" if entry["from"] else source)
  return ", ".join(out) or "scratch"


def phase_row(label: str, workdir) -> dict:
  """Steps and wall-clock of one training phase, from its metrics.jsonl log lines.

  The median seconds per step between consecutive log lines leaves out
  pauses (a resumed run, an evaluation) that the first-to-last span includes.
  """
  log = [r for r in read_metrics(f"{workdir}/metrics.jsonl") if "loss" in r]
  if not log:
    raise FileNotFoundError(f"{workdir}/metrics.jsonl: no training log lines")
  rates = [
      (b["time"] - a["time"]) / (b["step"] - a["step"])
      for a, b in zip(log, log[1:])
      if b["step"] > a["step"]
  ]
  config = snapshot.read(workdir)
  row = {
      "phase": label,
      "task": config.task,
      "started from": started_from(config.get("init_from")),
      "steps": int(log[-1]["step"]),
      "logged wall-clock h": (log[-1]["time"] - log[0]["time"]) / 3600.0,
      "median s/step": statistics.median(rates) if rates else None,
      "final loss": float(log[-1]["loss"]),
  }
  return row


def eval_log(workdir) -> list[dict]:
  """A run's held-back evaluation lines (overall figures; per-kind ones are in the tables)."""
  out = []
  for rec in read_metrics(f"{workdir}/metrics.jsonl"):
    values = {
        k.removeprefix("eval/"): v
        for k, v in rec.items()
        if k.startswith("eval/") and "/" not in k.removeprefix("eval/")
    }
    if values:
      out.append({"step": rec["step"], **values})
  return out


# -------------------------------------------------------------------- card ---


def findings(measured: dict) -> list[str]:
  """Sentences drawn from the figures: weakest kind, TruFor vs ELA, largest robustness drop."""
  trufor, reference = (measured["detectors"][n] for n in ("TruFor", "ELA"))
  kinds = {k: v for k, v in trufor["by_kind"].items() if k != "all"}
  out = []
  if kinds:
    weakest = min(kinds, key=lambda k: kinds[k]["f1_best"])
    out.append(
        f"Weakest edit kind by pixel F1 best: {weakest} ({cards.fmt(kinds[weakest]['f1_best'])})."
    )
  for key in ("auc", "f1_best"):
    a, b = trufor["by_kind"]["all"][key], reference["by_kind"]["all"][key]
    relation = "above" if a > b else "not above"
    out.append(
        f"TruFor's {COLUMNS[key]} over all kinds is {relation} the ELA reference's "
        f"({cards.fmt(a)} vs {cards.fmt(b)})."
    )
  clean, *perturbed = trufor["robustness"]
  if perturbed:
    worst = min(perturbed, key=lambda r: r["image AUC"])
    out.append(
        f"TruFor's lowest image AUC after post-processing: {worst['perturbation']} "
        f"({cards.fmt(worst['image AUC'])}; {cards.fmt(clean['image AUC'])} without)."
    )
  return out


def tables(measured: dict, phases: list[dict], logs: dict) -> dict:
  how_kind = (
      "{name} on the held-back test split: a kind's image AUC / bACC rank its forgeries against "
      "every authentic image; pixel F1 / MCC average its forged images (border band excluded)."
  )
  how_robust = (
      "{name} after post-processing the test images (after the forgery; resize moves the mask "
      "with nearest neighbours): JPEG quality, resize factor, Gaussian blur sigma (px), "
      "Gaussian noise sigma (grey levels)."
  )
  out = {}
  for name, m in measured["detectors"].items():
    title = "TruFor" if name == "TruFor" else f"{name} reference"
    out[f"{title}: per edit kind"] = (how_kind.format(name=name), kind_rows(m["by_kind"]))
    out[f"{title}: robustness"] = (how_robust.format(name=name), m["robustness"])
  out["Training phases"] = (
      "From each work dir's config.json and metrics.jsonl: what it started from (a work dir "
      "by its name, a release by its tag, and the part copied), last step, time between the "
      "first and last log lines, median seconds per step between log lines, last logged loss.",
      phases,
  )
  for phase, log in logs.items():
    if log:
      out[f"Held-back evaluation during phase {phase}"] = ("From its metrics.jsonl.", log)
  return out


def make_card(name, spec, config, step, measured, phases, logs) -> cards.Card:
  """The card; phase 3's evaluation lines are its training log, earlier phases' are tables."""
  earlier = {phase: log for phase, log in logs.items() if phase != "3"}
  setup = {
      "test images": measured["images"],
      "forged test images": measured["forged"],
      "fixed decision threshold (score, map)": forgery_metrics.THRESHOLD,
  }
  headline = {
      n: {COLUMNS[k]: v for k, v in m["by_kind"]["all"].items() if k not in ("images", "forged")}
      for n, m in measured["detectors"].items()
  }
  return cards.Card(
      name=name,
      summary=SUMMARY,
      arch=config.model.name,
      config_spec=spec,
      config=as_dict(config),
      steps=step,
      data=data_description(config),
      metrics={
          "Evaluation setup (held-back test split; thresholds fixed, none tuned)": setup,
          "TruFor, all edit kinds": headline["TruFor"],
          "ELA reference, all edit kinds (same images)": headline["ELA"],
      },
      tables=tables(measured, phases, earlier),
      findings=findings(measured),
      training_log=logs.get("3", []),
  )


# ----------------------------------------------------------------- release ---


def release(
    ph3_workdir,
    *,
    tag: str,
    earlier: dict | None = None,
    spec: str | None = None,
    num_images: int | None = None,
    perturbations=robustness.PERTURBATIONS,
) -> dict:
  """Measure the phase-3 work dir's model and export it as `trufor.<tag>` with its card.

  Args:
    ph3_workdir: the phase-3 `provjax train` work dir (its latest checkpoint is released).
    tag: the release tag; the weights are named `<arch>.<tag>`.
    earlier: {"np": dir, "ph2": dir} of the earlier phases, for the training log (optional).
    spec: the config the model was trained with; default configs/trufor/ph3.py:<variant>.
    num_images: test records to measure (default: the whole test split).
    perturbations: the robustness sweep's (see robustness.PERTURBATIONS).

  Returns:
    {"name", "folder", "measured"}.
  """
  config = snapshot.read(ph3_workdir)
  arch, variant = config.model.name.split(".")
  spec = spec or f"configs/trufor/ph3.py:{variant}"
  model, step = restore_model(config, ph3_workdir)
  measured = measure(model, config, num_images=num_images, perturbations=perturbations)
  dirs = {**(earlier or {}), "ph3": ph3_workdir}
  phases = [phase_row(label, dirs[key]) for key, label in PHASES if dirs.get(key)]
  logs = {label.split()[0]: eval_log(dirs[key]) for key, label in PHASES if dirs.get(key)}
  name = f"{arch}.{tag}"
  card = make_card(name, spec, config, step, measured, phases, logs)
  folder = weights.export(
      model,
      name,
      arch=config.model.name,
      overrides=dict(config.model.get("overrides", {})),
      preprocessing=PREPROCESSING,
      card=card,
      extra={
          "paper": PAPER,
          "config": spec,
          "steps": step,
          "train_config": as_dict(config),
          "work_dirs": {k: str(v) for k, v in dirs.items()},
      },
  )
  return {"name": name, "folder": str(folder), "measured": measured}


def main(argv=None) -> None:
  import argparse  # pylint: disable=g-import-not-at-top

  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--ph3-workdir", required=True, help="phase-3 work dir (the model released)")
  p.add_argument("--ph2-workdir", default=None, help="phase-2 work dir (training log only)")
  p.add_argument("--np-workdir", default=None, help="phase-1 work dir (training log only)")
  p.add_argument("--tag", default="synth-v1", help="release tag: trufor.<tag>")
  p.add_argument("--config", default=None, help="config spec for the card (default: ph3's)")
  p.add_argument("--num-images", type=int, default=None, help="test records (default: all)")
  args = p.parse_args(argv)
  out = release(
      args.ph3_workdir,
      tag=args.tag,
      earlier={"np": args.np_workdir, "ph2": args.ph2_workdir},
      spec=args.config,
      num_images=args.num_images,
  )
  print(json.dumps(out, indent=1, default=float))
