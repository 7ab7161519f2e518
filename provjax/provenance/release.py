"""Export trained SImProv models as released weights with cards written from measurements.

    python scripts/release_simprov.py --descriptor-workdir runs/desc --comparator-workdir runs/cmp

Every figure of the two cards is measured here, in this run: the task's own
held-back evaluation, the end-to-end benchmark on the "gallery" split among
"distractors", and the near-duplicate operating point chosen on the "test"
(validation) split. Sentences that compare or rank come from those figures.
"""

from __future__ import annotations

import json

import provjax
from provjax import cards, tasks, weights
from provjax.provenance import benchmark
from provjax.provenance.engine import Fusion, thumbnail_weight
from provjax.train.evaluate import restore_model
from provjax.train.logging import read_metrics
from provjax.config import apply_override
from provjax.train import snapshot
from provjax.train.snapshot import as_dict


def data_description(config) -> str:
  """Where the training originals came from, from the config alone."""
  d = config.data
  photos = (
      f"crops of the train-split photographs of the folder `{d.photo_dir}` (grouped and split "
      "by source, `provjax.data.folder`)"
      if d.get("photo_dir")
      else "crops of the train-split photographs bundled with scikit-image / scikit-learn / "
      "matplotlib (`provjax.data.splits`)"
  )
  hard = d.get("hard_negatives")
  negatives = (
      f" {hard.fraction:.0%} of the distinct pairs are hard negatives: one of the "
      f"original's {hard.k} nearest train records of another source by `{hard.descriptor}` "
      "(`provjax.data.hard_negatives`)."
      if hard and hard.get("fraction")
      else ""
  )
  start = (
      f"Started from `{config.init_from}`" if config.get("init_from") else "Trained from scratch"
  )
  return (
      f"`provjax_synthetic` (TFDS, ArrayRecord), {d.count} originals at {d.resolution} px: "
      f"half {photos}, half procedural images from the train seed namespace; edits from "
      "`provjax.transforms` with exact masks and coordinate tables."
      f"{negatives} No source of the "
      "benchmark below (bundled photos of the gallery and distractor splits, their procedural "
      f"seeds) is in the training data. {start} (no ImageNet or PSBattles weights offline)."
  )


def eval_log(workdir) -> list[dict]:
  """The held-back evaluation lines of a run's metrics.jsonl."""
  out = []
  for rec in read_metrics(f"{workdir}/metrics.jsonl"):
    values = {k.removeprefix("eval/"): v for k, v in rec.items() if k.startswith("eval/")}
    if "count" in values:  # JSONL keeps every metric as a float; a count is a whole number
      values["count"] = int(values["count"])
    if values:
      out.append({"step": rec["step"], **values})
  return out


def benchmark_tables(bench: dict, before: dict | None = None, base: str = "") -> dict:
  """The end-to-end and per-family tables, shared by both cards; with `before`
  (the same benchmark run on the `base` release) its table and recall beside them."""
  setup = (
      "Gallery: unseen originals (bundled photos of the gallery split and procedural gallery "
      "seeds) among distractors (distractor split); each original gets a benign and a "
      "manipulated query, plus unrelated queries; candidates re-ranked by the fused "
      "score; verdict at the calibrated operating point; heatmap IoU (the spec's upsampled "
      "protocol, and at native resolution against the exact edit mask) and emptiness as "
      "the evaluation section of specs/simprov.md defines them."
  )
  families = [{"family": f, **v} for f, v in bench["families"].items()]
  if before:
    families = [
        {**row, f"{base} R@1": before["families"][row["family"]]["R@1"]} for row in families
    ]
  tables = {
      "End-to-end benchmark (both released models)": (setup, bench["table"]),
      "Search recall of the originals per benign family (same gallery)": (
          "One query per original and family; the grayscale thumbnail reference "
          "(`provjax.retrieval.thumbnail`: mean removed, cosine) searched on the same queries and gallery"
          + (f"; the previous release {base} beside them." if before else "."),
          families,
      ),
  }
  if before:
    tables[f"The previous release ({base}) on the same benchmark"] = (
        "Same gallery and queries, at the operating point stored with those weights.",
        before["table"],
    )
  return tables


def findings(bench: dict, calib: dict) -> list[str]:
  """Sentences drawn from the figures: weakest families, verdicts, re-ranking, threshold."""
  fam = sorted(bench["families"].items(), key=lambda kv: kv[1]["R@1"])
  weak = ", ".join(f"{f} ({cards.fmt(v['R@1'])})" for f, v in fam[:3])
  verdicts = {r["queries"]: r["verdict acc"] for r in bench["table"]}
  worst = min(verdicts, key=verdicts.get)
  behind = [f for f, v in bench["families"].items() if v["R@1"] < v["thumbnail R@1"]]
  out = [
      f"Weakest benign families by search R@1: {weak}.",
      "Families where the thumbnail reference finds the original at rank 1 more often: "
      + (", ".join(behind) if behind else "none")
      + ".",
      (f"Lowest end-to-end verdict accuracy: {worst} queries ({cards.fmt(verdicts[worst])})."),
  ]
  for row in bench["table"]:
    if "search R@1" in row:
      change = "raises" if row["re-ranked R@1"] > row["search R@1"] else "does not raise"
      out.append(
          f"Re-ranking {change} R@1 for {row['queries']} queries "
          f"({cards.fmt(row['search R@1'])} -> {cards.fmt(row['re-ranked R@1'])})."
      )
  out.append(
      f"Ranking and verdict: fused score (1 - w) log P(related) + w cosine with "
      f"w = {cards.fmt(calib['weight'])}, a match when it reaches "
      f"{cards.fmt(calib['threshold'])} (`fusion_weight`, `fused_threshold` in config.json), "
      f"both chosen on the validation split (recall@1 {cards.fmt(calib['recall_at_1'])}, "
      f"balanced accuracy {cards.fmt(calib['balanced_accuracy'])} there)."
  )
  return out


def release(
    spec, config, workdir, restored, name, summary, bench, calib, extra=None, tables=None
) -> dict:
  """Evaluate a work dir's restored (model, step) and export it as `name` with its card."""
  model, step = restored
  metrics = tasks.get(config.task).evaluate({"model": model}, config)
  metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
  setup = {
      "gallery images": bench["gallery"],
      "originals": bench["originals"],
      "k (re-ranked)": bench["k"],
      "validation related queries": calib["n_related"],
      "validation unrelated queries": calib["n_unrelated"],
  }
  card = cards.Card(
      name=name,
      summary=summary,
      arch=config.model.name,
      config_spec=spec,
      config=as_dict(config),
      steps=step,
      data=data_description(config),
      metrics={
          "Held-back metrics of this model alone (`provjax eval`, test split)": metrics,
          "Benchmark setup": setup,
          "Fused ranking and operating point (validation split)": {
              "fusion weight": calib["weight"],
              "fused threshold": calib["threshold"],
              "re-ranked recall@1": calib["recall_at_1"],
              "balanced accuracy": calib["balanced_accuracy"],
          },
      },
      tables=tables or benchmark_tables(bench),
      findings=findings(bench, calib),
      training_log=eval_log(workdir),
  )
  weights.export(
      model,
      name,
      arch=config.model.name,
      overrides=as_dict(config.model).get("overrides", {}),
      preprocessing={
          "image_size": int(config.data.image_size),
          "value_range": [0, 1],
          "resize": "bilinear, whole image to a square",
      },
      card=card,
      extra={"config": spec, "steps": step, "train_config": as_dict(config), **(extra or {})},
  )
  return metrics


def release_pair(
    desc_spec, desc_config, desc_dir, cmp_spec, cmp_config, cmp_dir, tag: str, baseline=None
) -> dict:
  """Calibrate, benchmark and export both models; `baseline` (descriptor, comparator
  release names) is run on the same benchmark at its own stored operating point."""
  desc = restore_model(desc_config, desc_dir)  # (model, step), restored once
  cmp = restore_model(cmp_config, cmp_dir)
  desc_model, cmp_model = desc[0], cmp[0]
  calib = benchmark.calibrate_fusion(desc_model, cmp_model)
  fusion = Fusion(calib["weight"], calib["threshold"])
  bench = benchmark.run(desc_model, cmp_model, fusion=fusion)
  arch_d, arch_c = desc_config.model.name.split(".")[0], cmp_config.model.name.split(".")[0]
  out = {"benchmark": bench, "calibration": calib}
  tables = None
  if baseline:
    base_fusion = Fusion.from_config(weights.read_config(baseline[1]))
    before = benchmark.run(*map(provjax.load, baseline), fusion=base_fusion)
    out["before"] = before
    base_tag = baseline[0].split(".", 1)[1]
    tables = benchmark_tables(bench, before, base_tag)
  out["descriptor"] = release(
      desc_spec,
      desc_config,
      desc_dir,
      desc,
      f"{arch_d}.{tag}",
      "SImProv search encoder: a descriptor (L2-normalise before indexing) trained with the "
      "multi-positive NT-Xent on benign views of originals and of their manipulated copies.",
      bench,
      calib,
      tables=tables,
  )
  out["comparator"] = release(
      cmp_spec,
      cmp_config,
      cmp_dir,
      cmp,
      f"{arch_c}.{tag}",
      "SImProv comparator (ICN): affine STN + correlation-flow warp of the query onto the "
      "original, Siamese split ResNet, 3-way verdict (benign / manipulated / distinct) and an "
      "edit heatmap in the original's frame.",
      bench,
      calib,
      extra={"fusion_weight": fusion.weight, "fused_threshold": fusion.threshold},
      tables=tables,
  )
  return out


def release_comparator(
    cmp_spec, cmp_config, cmp_dir, descriptor: str, tag: str, *, photo_dir=None, baseline=None
) -> dict:
  """A comparator run exported as `simprov_comparator.<tag>` for the released `descriptor`.

  The operating point is chosen on the validation split with the descriptor's
  thumbnail share (and `photo_dir`'s test-split photographs when given), as
  `release_operating_point` does; `baseline` (descriptor, comparator release
  names) is run on the same held-back benchmark at its stored operating point.
  """
  cmp = restore_model(cmp_config, cmp_dir)
  desc_model, w = provjax.load(descriptor), thumbnail_weight(descriptor)
  calib = benchmark.calibrate_fusion(
      desc_model, cmp[0], n_originals=100, thumbnail_weight=w, photo_dir=photo_dir
  )
  fusion = Fusion(calib["weight"], calib["threshold"])
  bench = benchmark.run(desc_model, cmp[0], fusion=fusion, thumbnail_weight=w)
  out, tables = {"calibration": calib, "benchmark": bench}, None
  if baseline:
    base_desc, base_cmp = baseline
    out["before"] = benchmark.run(
        provjax.load(base_desc),
        provjax.load(base_cmp),
        fusion=Fusion.from_config(weights.read_config(base_cmp)),
        thumbnail_weight=thumbnail_weight(base_desc),
    )
    tables = benchmark_tables(bench, out["before"], base_cmp)
  out["comparator"] = release(
      cmp_spec,
      cmp_config,
      cmp_dir,
      cmp,
      f"{cmp_config.model.name.split('.')[0]}.{tag}",
      "SImProv comparator (ICN): affine STN + correlation-flow warp of the query onto the "
      f"original, Siamese split ResNet, 3-way verdict and an edit heatmap; served with the "
      f"descriptor `{descriptor}`, whose search cosine the fused score adds.",
      bench,
      calib,
      extra={
          "fusion_weight": fusion.weight,
          "fused_threshold": fusion.threshold,
          "calibrated_with": descriptor,
      },
      tables=tables,
  )
  return out


def run_config(workdir, overrides=()):
  """The config a run was trained with (its work dir snapshot), plus `a.b=value` overrides."""
  config = snapshot.read(workdir)
  for item in overrides:
    apply_override(config, item)
  return config


def main(argv=None) -> None:
  import argparse  # pylint: disable=g-import-not-at-top

  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--descriptor-config", default="configs/simprov/descriptor.py:tiny")
  which = p.add_mutually_exclusive_group(required=True)
  which.add_argument("--descriptor-workdir")
  which.add_argument(
      "--descriptor", help="released descriptor (arch.tag): release the comparator alone, for it"
  )
  p.add_argument("--photo-dir", help="with --descriptor: the photo folder (its test split)")
  p.add_argument("--comparator-config", default="configs/simprov/comparator.py:tiny")
  p.add_argument("--comparator-workdir", required=True)
  p.add_argument("--tag", default="synth-v3")
  p.add_argument(
      "--baseline",
      nargs=2,
      metavar=("DESCRIPTOR", "COMPARATOR"),
      help="released names run on the same benchmark as the 'before' rows",
  )
  p.add_argument("--descriptor-override", action="append", default=[], metavar="A.B=V")
  p.add_argument(
      "--comparator-override",
      action="append",
      default=[],
      metavar="A.B=V",
      help="change the snapshot config, e.g. model.name after an architecture rename",
  )
  args = p.parse_args(argv)
  cmp_config = run_config(args.comparator_workdir, args.comparator_override)
  if args.descriptor:
    out = release_comparator(
        args.comparator_config,
        cmp_config,
        args.comparator_workdir,
        args.descriptor,
        args.tag,
        photo_dir=args.photo_dir,
        baseline=args.baseline,
    )
  else:
    out = release_pair(
        args.descriptor_config,
        run_config(args.descriptor_workdir, args.descriptor_override),
        args.descriptor_workdir,
        args.comparator_config,
        cmp_config,
        args.comparator_workdir,
        args.tag,
        baseline=args.baseline,
    )
  print(json.dumps(out, indent=1, default=float))


def _benchmark_setup(bench: dict) -> dict:
  return {
      "gallery images": bench["gallery"],
      "originals": bench["originals"],
      "k (re-ranked)": bench["k"],
  }


def _export_again(model, name: str, stored: dict, card, **extra) -> None:
  """Released weights (`stored`: their config.json) exported as `name`, keeping their
  training record, with `extra` (what the re-release changes) in config.json."""
  weights.export(
      model,
      name,
      arch=stored["arch"],
      overrides=stored.get("overrides", {}),
      preprocessing=stored["preprocessing"],
      card=card,
      extra={
          "config": stored.get("config", ""),
          "steps": stored["steps"],
          "train_config": stored["train_config"],
          **extra,
      },
  )


def release_search_mix(descriptor: str, comparator: str, tag: str, photo_dir=None) -> dict:
  """Released descriptor weights again as `simprov.<tag>`, searching with a thumbnail share.

  The share is chosen on the validation split (`benchmark.choose_thumbnail_weight`,
  with `photo_dir`'s test photographs when given); the card holds that choice
  and the held-back benchmark of both searches beside `comparator` at its
  stored operating point. The weights are the same bit for bit.
  """
  import ml_collections  # pylint: disable=g-import-not-at-top

  stored = weights.read_config(descriptor)
  model, config = provjax.load(descriptor), ml_collections.ConfigDict(stored["train_config"])
  choice = benchmark.choose_thumbnail_weight(model, photo_dir=photo_dir)
  w = choice["weight"]
  fusion = Fusion.from_config(weights.read_config(comparator))
  cmp_model = provjax.load(comparator)
  bench = benchmark.run(model, cmp_model, fusion=fusion, thumbnail_weight=w)
  before = benchmark.run(model, cmp_model, fusion=fusion)
  name = f"simprov.{tag}"
  tables = benchmark_tables(bench, before, f"{descriptor} alone")
  tables["Thumbnail share chosen on the validation split"] = (
      "Search recall@1 of the validation originals among distractors, one query per benign "
      "family and a manipulated copy each; the best mean is released.",
      choice["rows"],
  )
  card = cards.Card(
      name=name,
      summary=(
          f"The weights of `{descriptor}`, searching with the grayscale thumbnail reference "
          "mixed into every similarity: cosine = (1 - w) descriptor cosine + w thumbnail "
          "cosine (search vectors join both, `thumbnail_weight` in config.json). The "
          "learned descriptor keeps geometric edits and the thumbnail photometric ones. The "
          f"end-to-end tables pair it with `{comparator}` at that release's operating point."
      ),
      arch=stored["arch"],
      config_spec=stored.get("config", ""),
      config=as_dict(config),
      steps=int(stored["steps"]),
      data=data_description(config),
      metrics={
          "Search mix (validation split)": {
              "thumbnail share": w,
              "validation originals": choice["originals"],
          },
          "Benchmark setup": _benchmark_setup(bench),
      },
      tables=tables,
      findings=findings_of_mix(bench, before, comparator),
  )
  _export_again(model, name, stored, card, weights_of=descriptor, thumbnail_weight=w)
  return {"choice": choice, "benchmark": bench, "before": before}


def release_operating_point(
    descriptor: str, comparator: str, tag: str, photo_dir=None, n_originals: int = 100
) -> dict:
  """Released comparator weights again as `simprov_comparator.<tag>`, with the fusion weight
  and threshold chosen for `descriptor` (`benchmark.calibrate_fusion` on the validation
  split, with `photo_dir`'s test photographs when given).

  The fused score adds the search cosine, so an operating point belongs to the
  descriptor it was chosen with (config.json's `calibrated_with`). The card
  holds the held-back benchmark of the pair at the new operating point and at
  `comparator`'s stored one. The weights are the same bit for bit.
  """
  import ml_collections  # pylint: disable=g-import-not-at-top

  stored = weights.read_config(comparator)
  cmp_model = provjax.load(comparator)
  desc_model, w = provjax.load(descriptor), thumbnail_weight(descriptor)
  calib = benchmark.calibrate_fusion(
      desc_model, cmp_model, n_originals=n_originals, thumbnail_weight=w, photo_dir=photo_dir
  )
  fusion = Fusion(calib["weight"], calib["threshold"])
  bench = benchmark.run(desc_model, cmp_model, fusion=fusion, thumbnail_weight=w)
  stored_fusion = Fusion.from_config(stored)
  before = benchmark.run(desc_model, cmp_model, fusion=stored_fusion, thumbnail_weight=w)
  name = f"simprov_comparator.{tag}"
  config = ml_collections.ConfigDict(stored["train_config"])
  tables = benchmark_tables(bench, before, f"{comparator}'s operating point")
  card = cards.Card(
      name=name,
      summary=(
          f"The weights of `{comparator}` with the ranking and near-duplicate operating point "
          f"chosen for the descriptor `{descriptor}` (search share of the thumbnail "
          f"{cards.fmt(w)}): `{comparator}` stored one chosen with another descriptor, and "
          "the fused score adds the search cosine. Chosen on the validation split's originals "
          + ("with the photo folder's test-split photographs" if photo_dir else "(bundled photos)")
          + " among distractors; the benchmark below never saw them."
      ),
      arch=stored["arch"],
      config_spec=stored.get("config", ""),
      config=as_dict(config),
      steps=int(stored["steps"]),
      data=data_description(config),
      metrics={
          "Operating point (validation split)": {
              "validation originals": n_originals,
              "fusion weight": calib["weight"],
              "fused threshold": calib["threshold"],
              "re-ranked recall@1": calib["recall_at_1"],
              "balanced accuracy": calib["balanced_accuracy"],
          },
          "Benchmark setup": _benchmark_setup(bench),
      },
      tables=tables,
      findings=findings(bench, calib),
  )
  _export_again(
      cmp_model,
      name,
      stored,
      card,
      weights_of=comparator,
      calibrated_with=descriptor,
      fusion_weight=fusion.weight,
      fused_threshold=fusion.threshold,
  )
  return {"calibration": calib, "benchmark": bench, "before": before}


def findings_of_mix(bench: dict, before: dict, comparator: str) -> list[str]:
  """Which families and query kinds the thumbnail share helps or hurts, from the figures."""
  gained = [f for f, v in bench["families"].items() if v["R@1"] > before["families"][f]["R@1"]]
  lost = [f for f, v in bench["families"].items() if v["R@1"] < before["families"][f]["R@1"]]
  out = [
      "Families whose search R@1 rises with the thumbnail share: "
      + (", ".join(gained) or "none")
      + "; falls: "
      + (", ".join(lost) or "none")
      + "."
  ]
  old = {r["queries"]: r for r in before["table"]}
  for row in bench["table"]:
    if "search R@1" in row:
      prev = old[row["queries"]]
      out.append(
          f"{row['queries']} queries with `{comparator}`: search R@1 "
          f"{cards.fmt(prev['search R@1'])} -> {cards.fmt(row['search R@1'])}, re-ranked "
          f"{cards.fmt(prev['re-ranked R@1'])} -> {cards.fmt(row['re-ranked R@1'])}."
      )
  return out
