"""Held-back provenance benchmark: unseen originals among distractors.

Originals come from the "gallery" split and distractors from the
"distractors" split (`provjax.data.splits`): photos and procedural seeds that
no train or test image comes from, so neither model saw them in training.
Used by the model cards (`scripts/release_simprov.py`) and, at a smaller
size, by the tests.
"""

from __future__ import annotations

import contextlib
import tempfile

import numpy as np

from provjax import transforms
from provjax.data import synthetic
from provjax.provenance import evaluate
from provjax.provenance.engine import Describer, Engine
from provjax.provenance.gallery import Gallery
from provjax.viz.overlay import resize


def heldout_gallery(
    describer: Describer,
    thumb_size: int,
    directory,
    *,
    n_originals: int,
    n_distractors: int,
    resolution: int = 128,
    seed: int = 1234,
    split: str = "gallery",
):
  """Gallery of unseen originals (ids 0..n-1) + distractors; returns it and the originals.

  Originals come from `split`: "gallery" for the benchmark, "test" (the
  validation split) when choosing an operating point, so the benchmark never
  sees the data that chose its threshold.
  """
  make = lambda split, n: [img for _, img in synthetic.generate_images(split, n, resolution, seed)]
  originals = make(split, n_originals)
  distractors = make("distractors", n_distractors)
  images = originals + distractors
  gallery = Gallery.create(
      directory, dim=256, thumb_size=thumb_size, descriptor="heldout", backend="exact"
  )
  gallery.add(
      describer(images),
      np.stack([resize(i, thumb_size, thumb_size) for i in images]),
      [f"heldout-{i}" for i in range(len(images))],
      [None] * len(images),
  )
  return gallery, originals


def family_recall(engine: Engine, originals: list[np.ndarray], rng, k: int = 10) -> dict:
  """Search rank-1 / rank-k recall of originals per benign transform family."""
  out = {}
  for family in transforms.BENIGN_FAMILIES:
    op = transforms.benign_family(family)
    queries = [op(transforms.identity(img), rng).image for img in originals]
    _, ids = engine.gallery.index.search(engine.describe(queries), k)
    truth = np.arange(len(originals))[:, None]
    out[family] = {
        "R@1": float(np.mean(ids[:, 0] == truth[:, 0])),
        f"R@{k}": float(np.mean(np.any(ids == truth, axis=1))),
    }
  return out


@contextlib.contextmanager
def _heldout_engine(
    descriptor, comparator, n_originals, n_distractors, k, seed, threshold=0.5, split="gallery"
):
  """An engine over a temporary held-back gallery; yields (engine, originals)."""
  with tempfile.TemporaryDirectory() as tmp:
    gallery, originals = heldout_gallery(
        Describer(descriptor),
        int(comparator.image_size),
        tmp,
        split=split,
        n_originals=n_originals,
        n_distractors=n_distractors,
        seed=seed,
    )
    yield Engine(gallery, descriptor, comparator, k=k, distinct_threshold=threshold), originals


def run(
    descriptor,
    comparator,
    *,
    n_originals: int = 100,
    n_distractors: int = 1000,
    k: int = 100,
    seed: int = 1234,
    distinct_threshold: float = 0.5,
) -> dict:
  """End-to-end table (per query kind) and per-family search recall."""
  with _heldout_engine(
      descriptor, comparator, n_originals, n_distractors, k, seed, distinct_threshold
  ) as (engine, originals):
    rng = np.random.default_rng(seed + 2)
    queries = evaluate.make_queries(list(enumerate(originals)), rng, n_distinct=n_originals // 2)
    rows = [evaluate.score(q, engine.query(q.edit.image)) for q in queries]
    return {
        "gallery": len(engine.gallery),
        "originals": len(originals),
        "k": k,
        "table": evaluate.summarize(rows),
        "families": family_recall(engine, originals, rng),
    }


def calibrate_distinct_threshold(
    descriptor,
    comparator,
    *,
    n_originals: int = 60,
    n_distractors: int = 500,
    k: int = 100,
    seed: int = 777,
) -> dict:
  """P(distinct) threshold that best separates matches from unrelated queries.

  Uses its own gallery of validation ("test" split) originals, so the
  benchmark ("gallery" split) never saw the data that chose it. The
  threshold maximises the mean of the two accuracies (queries whose original
  is in the gallery vs unrelated queries).
  """
  with _heldout_engine(
      descriptor, comparator, n_originals, n_distractors, k, seed, split="test"
  ) as (engine, originals):
    rng = np.random.default_rng(seed + 2)
    queries = evaluate.make_queries(list(enumerate(originals)), rng, n_distinct=n_originals)
    best = np.array([engine.query(q.edit.image).candidates[0]["p_distinct"] for q in queries])
  related = np.array([q.kind != "distinct" for q in queries])
  grid = np.unique(np.concatenate([best, [0.5, 1.0 + 1e-6]]))
  score = [0.5 * (np.mean(best[related] < t) + np.mean(best[~related] >= t)) for t in grid]
  i = int(np.argmax(score))
  return {
      "threshold": float(grid[i]),
      "balanced_accuracy": float(score[i]),
      "n_related": int(related.sum()),
      "n_unrelated": int((~related).sum()),
  }
