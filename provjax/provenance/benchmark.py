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
from provjax.provenance.engine import Describer, Engine, Fusion
from provjax.provenance.gallery import Gallery
from provjax.retrieval.thumbnail import thumbnail, with_thumbnail
from provjax.viz.overlay import resize


def heldout_images(
    n_originals: int,
    n_distractors: int,
    *,
    resolution: int = 128,
    seed: int = 1234,
    split: str = "gallery",
    photo_dir: str | None = None,
) -> list[np.ndarray]:
  """Unseen originals of `split` then distractors (the "distractors" split).

  `split` is "gallery" for the benchmark, "test" (the validation split) when
  choosing an operating point, so the benchmark never sees the data that
  chose its threshold. `photo_dir` adds that split's share of a photo folder
  (`provjax.data.folder`) to the bundled photographs.
  """
  make = lambda split, n: [
      img for _, img in synthetic.generate_images(split, n, resolution, seed, photo_dir=photo_dir)
  ]
  return make(split, n_originals) + make("distractors", n_distractors)


def gallery_of(describer: Describer, thumb_size: int, directory, images: list[np.ndarray]):
  """A gallery of `images` with ids 0..N-1 in order (exact search)."""
  gallery = Gallery.create(
      directory,
      dim=describer.dim,
      thumb_size=thumb_size,
      descriptor="heldout",
      backend="exact",
      thumbnail_weight=describer.thumbnail_weight,
  )
  gallery.add(
      describer(images),
      np.stack([resize(i, thumb_size, thumb_size) for i in images]),
      [f"heldout-{i}" for i in range(len(images))],
      [None] * len(images),
  )
  return gallery


def heldout_gallery(describer: Describer, thumb_size: int, directory, **kwargs):
  """`gallery_of` the `heldout_images(**kwargs)`; returns it and the images, originals first."""
  images = heldout_images(**kwargs)
  return gallery_of(describer, thumb_size, directory, images), images


def family_recall(engine: Engine, images: list[np.ndarray], n_originals: int, rng, k: int = 10):
  """Search rank-1 / rank-k recall of originals per benign family, for the engine's
  descriptor and for the 16 x 16 thumbnail reference on the same queries."""
  reference = thumbnail(images)
  truth = np.arange(n_originals)[:, None]
  recall = lambda ids: (
      float(np.mean(ids[:, 0] == truth[:, 0])),
      float(np.mean(np.any(ids == truth, 1))),
  )
  out = {}
  for family in transforms.BENIGN_FAMILIES:
    op = transforms.benign_family(family)
    queries = [op(transforms.identity(img), rng).image for img in images[:n_originals]]
    _, ids = engine.gallery.index.search(engine.describe(queries), k)
    ref_ids = np.argsort(-(thumbnail(queries) @ reference.T), axis=1, kind="stable")[:, :k]
    (r1, rk), (t1, tk) = recall(ids), recall(ref_ids)
    out[family] = {"R@1": r1, f"R@{k}": rk, "thumbnail R@1": t1, f"thumbnail R@{k}": tk}
  return out


@contextlib.contextmanager
def _engine(descriptor, comparator, images, k, fusion=Fusion(), thumbnail_weight=0.0):
  """An engine over a temporary gallery of `images` (ids in order)."""
  with tempfile.TemporaryDirectory() as tmp:
    describer = Describer(descriptor, thumbnail_weight=thumbnail_weight)
    gallery = gallery_of(describer, int(comparator.image_size), tmp, images)
    yield Engine(gallery, descriptor, comparator, k=k, fusion=fusion)


def run(
    descriptor,
    comparator,
    *,
    n_originals: int = 100,
    n_distractors: int = 1000,
    k: int = 100,
    seed: int = 1234,
    fusion: Fusion = Fusion(),
    thumbnail_weight: float = 0.0,
) -> dict:
  """End-to-end table (per query kind) and per-family search recall, held-back split."""
  images = heldout_images(n_originals, n_distractors, seed=seed)
  return run_images(
      descriptor,
      comparator,
      images,
      n_originals,
      k=k,
      seed=seed,
      fusion=fusion,
      thumbnail_weight=thumbnail_weight,
  )


def run_images(
    descriptor,
    comparator,
    images: list[np.ndarray],
    n_originals: int,
    *,
    k: int = 100,
    seed: int = 1234,
    fusion: Fusion = Fusion(),
    thumbnail_weight: float = 0.0,
) -> dict:
  """`run` on any images: the first `n_originals` are queried, the rest distract."""
  with _engine(descriptor, comparator, images, k, fusion, thumbnail_weight) as engine:
    rng = np.random.default_rng(seed + 2)
    originals = list(enumerate(images[:n_originals]))
    queries = evaluate.make_queries(originals, rng, n_distinct=n_originals // 2)
    rows = [evaluate.score(q, engine.query(q.edit.image)) for q in queries]
    return {
        "gallery": len(engine.gallery),
        "originals": n_originals,
        "k": k,
        "table": evaluate.summarize(rows),
        "families": family_recall(engine, images, n_originals, rng),
    }


FUSION_WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 0.98, 1.0)


def choose_fusion(candidates: list[list[dict]], truth: list[int | None]) -> dict:
  """The fusion weight and verdict threshold that do best on these queries.

  `candidates[i]` is query i's candidate list (dicts with id, score,
  p_distinct), `truth[i]` the gallery id of its original or None for an
  unrelated query. The weight maximises re-ranked recall@1 of the related
  queries, then the balanced accuracy of the related / unrelated decision;
  weight 1 (the search order) is a candidate, so the chosen re-ranking is
  never below search recall@1 on these queries. The threshold is the midpoint
  between best fused scores that maximises that balanced accuracy.
  """
  related = np.array([t is not None for t in truth])
  best_choice = None
  for w in FUSION_WEIGHTS:
    fusion = Fusion(w, 0.0)
    top_ids, best = [], []
    for cands in candidates:
      cands = [c for c in cands if c["id"] >= 0]
      fused = fusion.scores([c["score"] for c in cands], [c["p_distinct"] for c in cands])
      i = int(np.argmax(fused))  # first of ties: the search order
      top_ids.append(cands[i]["id"])
      best.append(fused[i])
    best = np.array(best)
    recall = float(np.mean([i == t for i, t in zip(top_ids, truth) if t is not None]))
    threshold, accuracy = _best_threshold(best[related], best[~related])
    choice = dict(weight=w, threshold=threshold, recall_at_1=recall, balanced_accuracy=accuracy)
    if best_choice is None or (recall, accuracy) > (
        best_choice["recall_at_1"],
        best_choice["balanced_accuracy"],
    ):
      best_choice = choice
  return {**best_choice, "n_related": int(related.sum()), "n_unrelated": int((~related).sum())}


def _best_threshold(related: np.ndarray, unrelated: np.ndarray) -> tuple[float, float]:
  """Threshold t (related when score >= t) maximising the mean of both accuracies."""
  values = np.unique(np.concatenate([related, unrelated]))
  grid = np.concatenate([[values[0] - 1.0], (values[1:] + values[:-1]) / 2, [values[-1] + 1.0]])
  rate = lambda hits: float(np.mean(hits)) if hits.size else 1.0  # an empty side is no constraint
  accuracy = [0.5 * (rate(related >= t) + rate(unrelated < t)) for t in grid]
  i = int(np.argmax(accuracy))
  return float(grid[i]), float(accuracy[i])


def calibrate_fusion(
    descriptor,
    comparator,
    *,
    n_originals: int = 60,
    n_distractors: int = 500,
    k: int = 100,
    seed: int = 777,
    thumbnail_weight: float = 0.0,
    photo_dir: str | None = None,
) -> dict:
  """`choose_fusion` on a gallery of validation ("test" split) originals.

  The benchmark ("gallery" split) never sees the data that chose it. The
  descriptor searches with `thumbnail_weight` (its release's share), since
  the fused score adds its cosine; `photo_dir` adds a photo folder's
  test-split photographs to the bundled ones (`heldout_images`).
  """
  images = heldout_images(n_originals, n_distractors, seed=seed, split="test", photo_dir=photo_dir)
  with _engine(descriptor, comparator, images, k, thumbnail_weight=thumbnail_weight) as engine:
    rng = np.random.default_rng(seed + 2)
    originals = list(enumerate(images[:n_originals]))
    queries = evaluate.make_queries(originals, rng, n_distinct=n_originals)
    candidates = [engine.query(q.edit.image).candidates for q in queries]
  return choose_fusion(candidates, [q.truth for q in queries])


THUMBNAIL_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def choose_thumbnail_weight(
    descriptor,
    *,
    n_originals: int = 60,
    n_distractors: int = 500,
    seed: int = 777,
    photo_dir: str | None = None,
) -> dict:
  """The thumbnail share of search similarity (`engine.Describer`) chosen on validation data.

  Each candidate share w describes a gallery of validation ("test" split)
  originals among distractors, and every original is searched once per
  benign family and once as a manipulated copy. The share with the best
  mean search recall@1 over those query sets (each family and the
  manipulated set weigh the same; the smaller share on a tie) is chosen.
  `photo_dir`: a photo folder whose test-split photographs join the bundled
  ones (the training folder is right: its test split was never trained on).
  """
  images = heldout_images(n_originals, n_distractors, seed=seed, split="test", photo_dir=photo_dir)
  rng = np.random.default_rng(seed + 2)
  queries = {}
  for family in transforms.BENIGN_FAMILIES:
    op = transforms.benign_family(family)
    queries[family] = [op(transforms.identity(im), rng).image for im in images[:n_originals]]
  made = evaluate.make_queries(list(enumerate(images[:n_originals])), rng)
  queries["manipulated"] = [q.edit.image for q in made if q.kind == "manipulated"]
  # Each share only mixes the same two parts: describe once, mix per share.
  describe = Describer(descriptor)
  gallery = describe.parts(images)
  described = {name: describe.parts(q) for name, q in queries.items()}
  rows = []
  for w in THUMBNAIL_WEIGHTS:
    mixed = with_thumbnail(*gallery, w)
    recall = {
        name: float(
            np.mean(np.argmax(with_thumbnail(*q, w) @ mixed.T, axis=1) == np.arange(n_originals))
        )
        for name, q in described.items()
    }
    mean = float(np.mean(list(recall.values())))
    # The share as a label: a card's first column names its row.
    rows.append({"thumbnail share": f"w = {w}", "mean R@1": mean, **recall})
  best = int(np.argmax([r["mean R@1"] for r in rows]))  # first of equals: the smaller share
  return {"weight": THUMBNAIL_WEIGHTS[best], "rows": rows, "originals": n_originals}
