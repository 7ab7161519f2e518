"""Export the trained copy-detection models with cards written from measurements.

    python scripts/release_copydetect.py --descriptor runs/copynce_tiny \
        --matcher runs/copynce_matcher_tiny --sscd runs/sscd_tiny --tag synth-v1

Measured here, in this run, on `provjax_copydetect` (provjax.data.copydetect):

* on the held-back `val` benchmark, for each descriptor (CopyNCE, SSCD, and the
  16 x 16 thumbnail reference), kNN (k = 10) search with each score
  normalisation (none, isc2021, SSCD, CopyNCE; background = the `background`
  split, which shares no source with val or test); the variant with the best
  val µAP is what the released weights use, and whether the matcher re-scores
  the top 10, whether query crops are searched, and the thumbnail's share of
  the similarity (`Protocol.thumbnail_weight`, for a learned descriptor) are
  chosen the same way. The test split never chooses anything;
* the official ISC metrics (µAP, RP90, R@1) on `test` for every row, and per
  query family for the released pipeline and the thumbnail reference.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import ml_collections
import numpy as np

from provjax import cards, weights
from provjax.copydetect import verification
from provjax.copydetect.detector import CopyDetector, Protocol, query_views
from provjax.data.images import read_image
from provjax.metrics import isc
from provjax.retrieval.thumbnail import thumbnail, with_thumbnail
from provjax.tasks import copy_data
from provjax.train.evaluate import restore_model
from provjax.train.logging import run_summary
from provjax.train.snapshot import as_dict, read

PAPER = "Lu et al., PixTrace + CopyNCE, ICCV 2025, arXiv 2602.17484"
SSCD_PAPER = "Pizzi et al., SSCD, CVPR 2022, arXiv 2202.10261"
SCORE_NORMS = ("none", "isc2021", "sscd", "copynce")
QUERY_CROPS = ("none", "grid")
# The thumbnail's shares of the similarity compared for a learned descriptor (0: descriptor only).
THUMBNAIL_WEIGHTS = (0.0, 0.25, 0.5, 0.75)
METRICS = ("micro_ap", "recall_at_p90", "recall_at_rank1")


def _benchmark(config, split: str) -> dict:
  cfg = config.copy_and_resolve_references()
  cfg.eval.max_queries = 0
  return copy_data.held_back(cfg, split)


def _background(config) -> list[np.ndarray]:
  src = copy_data.source(config, "background")
  return [read_image(bytes(src[i]["image"])) for i in range(len(src))]


def score(data: dict, qi, ri, s, queries=None) -> dict:
  """ISC metrics of predictions (index arrays) on `data`, optionally on a subset of queries."""
  keep = None if queries is None else set(queries)
  preds = [
      (data["query_ids"][i], data["ref_ids"][j], float(v))
      for i, j, v in zip(qi, ri, s)
      if keep is None or data["query_ids"][i] in keep
  ]
  pairs = [p for p in data["pairs"] if keep is None or p[0] in keep]
  gt_queries = data["gt_queries"] if keep is None else keep
  m = isc.evaluate(pairs, preds, gt_queries=gt_queries)
  return {k: m[k] for k in METRICS}


REFERENCE = "thumbnail 16x16 (reference)"  # the classical row every benchmark carries


class Bench:
  """One descriptor's vectors on val, test and the background set, and its searches.

  A learned descriptor's vectors are kept beside the thumbnails of the same
  images, so that every thumbnail share (`Protocol.thumbnail_weight`) is a
  cheap mix of the two rather than another forward pass.
  """

  def __init__(self, det: CopyDetector, sets: dict, background: list):
    self.det = det
    self.sets = sets
    det.protocol = Protocol()
    self.learned = det.descriptor is not None
    self.refs = {split: self._describe(d["refs"]) for split, d in sets.items()}
    self.queries = {}
    for crops in QUERY_CROPS:
      for split, d in sets.items():
        views = [query_views(im, crops) for im in d["queries"]]
        owner = np.repeat(np.arange(len(views)), [len(v) for v in views])
        self.queries[split, crops] = self._describe([v for vs in views for v in vs]), owner
    self.background = self._describe(background)
    self.verified = {}  # (split, query upsampling, contrast) -> verify_top's memo

  def _describe(self, images):
    return self.det.describe(images), thumbnail(images) if self.learned else None

  def run(
      self,
      split: str,
      score_norm: str,
      rescore: int = 0,
      query_crops: str = "none",
      thumbnail_weight: float = 0.0,
      **verification,
  ):
    self.det.protocol = Protocol(
        score_norm=score_norm, rescore=rescore, query_crops=query_crops, **verification
    )
    mix = lambda pair: with_thumbnail(*pair, thumbnail_weight)
    q, owner = self.queries[split, query_crops]
    qi, ri, s = self.det.search(mix(q), mix(self.refs[split]), mix(self.background), owner=owner)
    data = self.sets[split]
    load_q, load_r = data["queries"].__getitem__, data["refs"].__getitem__
    if rescore:
      qi, ri, s = self.det.rescore_top(qi, ri, s, load_q, load_r)
    p = self.det.protocol
    if p.verify:
      # The same images and pairs recur across depths, chances and near-duplicate levels; their
      # keypoints depend only on the query's upsampling and the contrast threshold.
      memo = self.verified.setdefault((split, p.verify_upsampling, p.verify_contrast), {})
      qi, ri, s = self.det.verify_top(qi, ri, s, load_q, load_r, len(data["queries"]), memo)
    return qi, ri, s

  def measure(self, split: str, queries=None, **protocol) -> dict:
    return score(self.sets[split], *self.run(split, **protocol), queries=queries)


def options(with_matcher: bool, learned: bool = True) -> list[dict]:
  """Every protocol the release compares: score normalisation x query crops (x re-scoring)
  (x the thumbnail's share, for a learned descriptor)."""
  return [
      {"score_norm": norm, "query_crops": crops, "rescore": rescore, "thumbnail_weight": w}
      for norm in SCORE_NORMS
      for crops in QUERY_CROPS
      for rescore in ((0, 10) if with_matcher else (0,))
      for w in (THUMBNAIL_WEIGHTS if learned else (0.0,))
  ]


def choose(bench: Bench, with_matcher: bool) -> tuple[dict, list[dict]]:
  """The val-best protocol (best µAP) and the val rows of every option."""
  rows, best = [], None
  for option in options(with_matcher, bench.learned):
    m = bench.measure("val", **option)
    rows.append({**_columns(option), **m})
    if best is None or m["micro_ap"] > best[1]["micro_ap"]:
      best = (option, m)
  return best[0], rows


def _columns(option: dict) -> dict:
  return {
      "score normalisation": option["score_norm"],
      "query crops": option["query_crops"],
      "matcher re-scores": option["rescore"],
      "thumbnail share": option["thumbnail_weight"],
  }


def family_rows(bench: Bench, chosen: dict, label: str, split: str = "test") -> list[dict]:
  """Metrics per query family: that family's copies plus every unmatched query."""
  data = bench.sets[split]
  unmatched = [q for q, r in zip(data["query_ids"], _refs_of(data)) if not r]
  preds = bench.run(split, **chosen)
  rows = []
  for family in sorted(set(data["families"])):
    mine = [
        q for q, f, r in zip(data["query_ids"], data["families"], _refs_of(data)) if f == family
    ]
    copies = [q for q in mine if q not in set(unmatched)]
    if not copies:
      continue
    m = score(data, *preds, queries=copies + unmatched)
    rows.append({"descriptor": label, "family": family, "copies": len(copies), **m})
  return rows


def _keyed_family_rows(bench: Bench, chosen: dict, label: str, split: str = "test") -> list[dict]:
  """`family_rows` with one key column, so that each row of metrics.json is named by it alone."""
  rows = []
  for row in family_rows(bench, chosen, label, split):
    del row["descriptor"]
    rows.append({"protocol / family": f"{label} / {row.pop('family')}", **row})
  return rows


def _refs_of(data: dict) -> list[str]:
  truth = dict(data["pairs"])
  return [truth.get(q, "") for q in data["query_ids"]]


def _data_text(config) -> str:
  d = config.data
  return (
      f"`provjax_copydetect` (TFDS, ArrayRecord; provjax.data.copydetect): train sources are "
      f"photo crops ({d.get('photo_dir') or 'the bundled photographs'}) and procedural images of "
      "the train split, made into pairs on the fly by the copy recipe "
      "(provjax.transforms.copy_recipe); val / test references and queries (copies of several "
      "families plus unmatched queries) and the background set come from sources no other "
      "split holds."
  )


def _restore(source: str):
  """(config, model, step, released name or None) of a work dir or of released weights."""
  if Path(source).is_dir():
    config = read(source)
    return (config, *restore_model(config, source), None)
  stored = weights.read_config(source)
  config = ml_collections.ConfigDict(stored["train_config"])
  return config, weights.load(source), stored["steps"], source


def release(descriptor, matcher, sscd, *, tag: str) -> dict:
  """Measure the three models and export those given as work dirs as `arch.tag`.

  Each of them may instead be released weights (`arch.tag`): measured beside
  the others and named in their cards, not exported again.
  """
  d_cfg, d_model, d_step, d_name = _restore(descriptor)
  m_cfg, m_model, m_step, m_name = _restore(matcher)
  s_cfg, s_model, s_step, s_name = _restore(sscd)
  sets = {split: _benchmark(d_cfg, split) for split in ("val", "test")}
  background = _background(d_cfg)
  size, m_size = d_cfg.data.image_size, m_cfg.data.image_size
  benches = {
      "CopyNCE descriptor": Bench(
          CopyDetector(d_model, size, Protocol(), m_model, m_size), sets, background
      ),
      "SSCD": Bench(CopyDetector(s_model, s_cfg.data.image_size, Protocol()), sets, background),
      REFERENCE: Bench(CopyDetector(None, 0, Protocol()), sets, background),
  }
  chosen, val_rows, test_rows = {}, [], []
  for label, bench in benches.items():
    with_matcher = bench.det.matcher is not None
    chosen[label], rows = choose(bench, with_matcher)
    val_rows += [{"descriptor": label, **r} for r in rows]
    for option in options(with_matcher, bench.learned):
      m = bench.measure("test", **option)
      picked = "yes" if chosen[label] == option else ""
      test_rows.append({"descriptor": label, **_columns(option), **m, "chosen on val": picked})
  fam = family_rows(benches["CopyNCE descriptor"], chosen["CopyNCE descriptor"], "CopyNCE")
  fam += family_rows(benches[REFERENCE], chosen[REFERENCE], "thumbnail")
  names = {
      "descriptor": d_name or f"copynce.{tag}",
      "matcher": m_name or f"copynce_matcher.{tag}",
      "sscd": s_name or f"sscd.{tag}",
  }
  how_test = (
      "Official ISC metrics (provjax.metrics.isc, checked bit-for-bit against isc2021's code) "
      "on the held-back `test` benchmark: kNN k = 10 per query (exact inner product), score "
      "normalisation against the `background` split; 'matcher re-scores 10' replaces each "
      "query's 10 candidates' scores by the matcher's P(copy)."
  )
  tables = {
      "Test: every descriptor and protocol": (how_test, test_rows),
      "Test, per query family (copies of that family + every unmatched query)": (
          "The released pipeline (protocol chosen on val) and the thumbnail reference.",
          fam,
      ),
      "Val (choosing only)": (
          "The same on `val`; the best µAP here is the released protocol.",
          val_rows,
      ),
  }
  counts = {
      "val references": len(sets["val"]["refs"]),
      "val queries": len(sets["val"]["queries"]),
      "test references": len(sets["test"]["refs"]),
      "test queries": len(sets["test"]["queries"]),
      "test copies (queries with a reference)": len(sets["test"]["pairs"]),
      "background images": len(background),
  }
  best = chosen["CopyNCE descriptor"]
  out = {"chosen": chosen, "test": test_rows, "families": fam, "names": names}

  def export(model, name, config, workdir, step, paper, summary, preprocessing):
    card = _card(name, config, workdir, step, summary, counts, tables)
    _export(model, card, paper, preprocessing)

  if m_name is None:
    export(
        m_model,
        names["matcher"],
        m_cfg,
        matcher,
        m_step,
        PAPER,
        "The CopyNCE matcher (shared ViT encoder + joint fusion blocks + copy / no-copy head), "
        f"trained from scratch ({PAPER}). It re-scores descriptor candidates; run it through "
        f"`provjax copydetect --matcher {names['matcher']}`.",
        {"size": m_size, "input": "resized whole to size x size"},
    )
  if d_name is None:
    export(
        d_model,
        names["descriptor"],
        d_cfg,
        descriptor,
        d_step,
        PAPER,
        "The CopyNCE descriptor (ViT -> CLS -> linear -> BN -> L2) trained from scratch with "
        f"InfoNCE + CopyNCE (PixTrace patch overlaps) + KoLeo ({PAPER}). `provjax copydetect` "
        "uses it by default, with the protocol chosen on held-back data.",
        {
            "size": size,
            "input": "resized whole to size x size (bicubic), ImageNet normalisation",
            "protocol": {"search": "knn", "k": 10, **best},
            "matcher": names["matcher"] if best["rescore"] else None,
        },
    )
  if s_name is None:
    export(
        s_model,
        names["sscd"],
        s_cfg,
        sscd,
        s_step,
        SSCD_PAPER,
        f"The SSCD baseline ({SSCD_PAPER}): ResNet + GeM + linear + L2, InfoNCE + KoLeo, trained "
        "from scratch on the same data.",
        {
            "size": s_cfg.data.image_size,
            "input": "resized whole to size x size (bicubic), ImageNet normalisation",
            "protocol": {"search": "knn", "k": 10, **chosen["SSCD"]},
        },
    )
  return out


def _export(model, card: cards.Card, paper: str, preprocessing: dict, **extra) -> None:
  """Released weights named by the card, with config.json recording the paper and the run
  (and `extra` entries, such as `weights_of` for a re-release of other weights)."""
  weights.export(
      model,
      card.name,
      arch=card.arch,
      preprocessing=preprocessing,
      card=card,
      extra={
          "paper": paper,
          "config": card.config_spec,
          "steps": card.steps,
          "train_config": card.config,
          **extra,
      },
  )


def _card(name, config, workdir, step, summary, counts, tables) -> cards.Card:
  variant = config.model.name.split(".")[1]
  return cards.Card(
      name=name,
      summary=summary,
      arch=config.model.name,
      config_spec=f"configs/copynce/{config.get('config_file', config.task)}.py:{variant}",
      config=as_dict(config),
      steps=step,
      data=_data_text(config),
      metrics={"Benchmark": counts, "Training": run_summary(workdir)},
      tables=tables,
  )


# Local-feature verification compared on the development folder: candidates verified per
# query (0: none), the query's SIFT upsampling, the keypoints' contrast threshold, the inliers
# that earn no bonus, and the thumbnail cosine from which a near-duplicate earns it (1: never).
VERIFY_DEPTHS = (0, 10, 30)
VERIFY_UPSAMPLING = (1, 2)
VERIFY_CONTRASTS = (0.04, 0.02, 0.01)
VERIFY_CHANCES = (4, 5, 6, 8)
VERIFY_NEAR_DUPLICATES = (1.0, 0.95, 0.9)


def folder_benchmark(folder: str) -> tuple[dict, list[np.ndarray]]:
  """An ISC folder on disk (`scripts/make_isc_folder.py make`) as a benchmark and its background.

  The folder holds refs/, queries/, background/ and gt.csv; families.csv is optional.
  """
  from provjax.copydetect import isc_io  # pylint: disable=g-import-not-at-top
  from provjax.data.images import list_images  # pylint: disable=g-import-not-at-top

  root = Path(folder)
  pairs, gt_queries = isc_io.read_ground_truth(root / "gt.csv")
  family = {}
  if (root / "families.csv").exists():
    import csv  # pylint: disable=g-import-not-at-top

    with open(root / "families.csv") as f:
      family = {row["query_id"]: row["family"] for row in csv.DictReader(f)}
  images = {sub: list_images(root / sub) for sub in ("refs", "queries", "background")}
  data = {
      "ref_ids": [p.stem for p in images["refs"]],
      "refs": [read_image(p) for p in images["refs"]],
      "query_ids": [p.stem for p in images["queries"]],
      "queries": [read_image(p) for p in images["queries"]],
      "pairs": pairs,
      "gt_queries": gt_queries,
  }
  data["families"] = [family.get(q, "") for q in data["query_ids"]]
  return data, [read_image(p) for p in images["background"]]


def release_verification(descriptor: str, tag: str, dev: str) -> dict:
  """Released descriptor weights again as `copynce.<tag>`, with local-feature verification.

  How many candidates per query are verified, the query's SIFT upsampling, the keypoints'
  contrast threshold, the inliers that earn no bonus and the thumbnail cosine of a
  near-duplicate are chosen on `dev`, an ISC folder of photographs (never the test data);
  the rest of the released protocol stays. Nothing is released when no verification beats
  none there (ValueError).
  The card holds those rows and the synthetic `test` benchmark with and without verification.
  The weights are the same bit for bit.
  """
  stored = weights.read_config(descriptor)
  pre = stored["preprocessing"]
  kept = ("score_norm", "query_crops", "rescore", "thumbnail_weight")
  base = {k: pre["protocol"][k] for k in kept}
  model, size = weights.load(descriptor), int(pre["size"])
  config = ml_collections.ConfigDict(stored["train_config"])
  dev_data, dev_background = folder_benchmark(dev)
  workers = os.cpu_count() or 1
  dev_bench = Bench(
      CopyDetector(model, size, Protocol(), workers=workers), {"dev": dev_data}, dev_background
  )
  dev_rows, best = [], None
  grid = [{"verify": 0}] + [
      {
          "verify": depth,
          "verify_upsampling": up,
          "verify_contrast": contrast,
          "verify_chance": chance,
          "verify_near_duplicate": near,
      }
      for depth in VERIFY_DEPTHS[1:]
      for up in VERIFY_UPSAMPLING
      for contrast in VERIFY_CONTRASTS
      for chance in VERIFY_CHANCES
      for near in VERIFY_NEAR_DUPLICATES
  ]
  for option in grid:
    m = dev_bench.measure("dev", **base, **option)
    label = ", ".join(f"{k.removeprefix('verify_')} {v}" for k, v in option.items())
    dev_rows.append({"protocol": label, **m})
    if best is None or m["micro_ap"] > best[1]["micro_ap"]:
      best = (option, m)
  chosen = best[0]
  if not chosen["verify"]:
    raise ValueError(f"{dev}: no verification option beats none; nothing released")
  # The classical reference on the same folder, overall and per family, beside the choice.
  thumb = Bench(CopyDetector(None, 0, Protocol()), {"dev": dev_data}, dev_background)
  dev_rows.append({"protocol": REFERENCE, **thumb.measure("dev", score_norm="none")})
  dev_fam = []
  for label, bench, option in (
      (REFERENCE, thumb, {"score_norm": "none"}),
      ("released before", dev_bench, base),
      ("with verification (chosen)", dev_bench, {**base, **chosen}),
  ):
    dev_fam += _keyed_family_rows(bench, option, label, split="dev")
  truth = set(dev_data["pairs"])
  memo = dev_bench.verified["dev", chosen["verify_upsampling"], chosen["verify_contrast"]]
  unrelated = [
      found
      for (i, j), found in memo["pairs"].items()
      if (dev_data["query_ids"][i], dev_data["ref_ids"][j]) not in truth
  ]
  test = {"test": _benchmark(config, "test")}
  test_bench = Bench(
      CopyDetector(model, size, Protocol(), workers=workers), test, _background(config)
  )
  test_rows, fam = [], []
  for label, option in (("released before", {}), ("with verification (chosen)", chosen)):
    test_rows.append({"protocol": label, **test_bench.measure("test", **base, **option)})
    fam += _keyed_family_rows(test_bench, {**base, **option}, label)
  name = f"copynce.{tag}"
  near = chosen["verify_near_duplicate"]
  near_text = f" or their thumbnails' cosine exceeds {cards.fmt(near)}" if near < 1 else ""
  tables = {
      "Development folder (choosing only)": (
          f"Official ISC metrics on {Path(dev).name} ({len(dev_data['refs'])} references, "
          f"{len(dev_data['queries'])} queries, {len(dev_background)} background; photographs "
          "the test data never holds), the released protocol plus verification of each "
          "query's best candidates; the best µAP is the one released.",
          dev_rows,
      ),
      "Development folder, per query family (copies of that family + every unmatched query)": (
          "The thumbnail reference, the protocol released before, and the chosen verification.",
          dev_fam,
      ),
      "Test (synthetic held-back split)": (
          "The same descriptor and protocol, without and with the chosen verification.",
          test_rows,
      ),
      "Test, per query family (copies of that family + every unmatched query)": ("", fam),
  }
  card = cards.Card(
      name=name,
      summary=(
          f"The weights of `{descriptor}` with local-feature verification in the protocol: each "
          f"query's {chosen['verify']} best candidates gain up to "
          f"{cards.fmt(verification.Verifier.weight)} when the SIFT matches that one affine map "
          f"explains exceed {chosen['verify_chance']} (keypoints down to contrast "
          f"{cards.fmt(chosen['verify_contrast'])}){near_text} "
          "(provjax/copydetect/verification.py). Chosen on a development folder of photographs; "
          "the synthetic test split below never chose anything."
      ),
      arch=stored["arch"],
      config_spec=stored.get("config", ""),
      config=as_dict(config),
      steps=int(stored["steps"]),
      data=_data_text(config),
      metrics={
          "Chosen on the development folder": {
              **chosen,
              "dev micro_ap": best[1]["micro_ap"],
              "dev references": len(dev_data["refs"]),
              "dev queries": len(dev_data["queries"]),
              "dev background": len(dev_background),
              "unrelated candidate pairs verified": len(unrelated),
              "most inliers of an unrelated pair": max(n for n, _ in unrelated),
              "highest thumbnail cosine of an unrelated pair": max(c for _, c in unrelated),
              "bonus weight": verification.Verifier.weight,
          },
          "Test benchmark": {
              "test references": len(test["test"]["refs"]),
              "test queries": len(test["test"]["queries"]),
          },
      },
      tables=tables,
  )
  protocol = {**pre["protocol"], **chosen, "verify_weight": verification.Verifier.weight}
  _export(model, card, PAPER, {**pre, "protocol": protocol}, weights_of=descriptor)
  return {
      "chosen": chosen,
      "dev": dev_rows,
      "dev families": dev_fam,
      "test": test_rows,
      "families": fam,
  }


def main(argv=None) -> None:
  import argparse  # pylint: disable=g-import-not-at-top

  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--descriptor", required=True, help="the CopyNCE descriptor work dir")
  p.add_argument(
      "--matcher", required=True, help="the CopyNCE matcher work dir, or released weights"
  )
  p.add_argument("--sscd", required=True, help="the SSCD work dir, or released weights")
  p.add_argument("--tag", default="synth-v1")
  args = p.parse_args(argv)
  out = release(args.descriptor, args.matcher, args.sscd, tag=args.tag)
  print(json.dumps(out, indent=1, default=float))
