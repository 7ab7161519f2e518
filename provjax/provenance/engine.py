"""The three-stage SImProv engine: search -> re-rank / near-duplicate -> heatmap.

    engine = Engine(Gallery.open(dir), provjax.load("simprov.synth-v2"),
                    provjax.load("simprov_comparator.synth-v2"))
    result = engine.query(image)   # match, verdict, probabilities, heatmap on the query

Stage (a) embeds the query and takes the top-k of the gallery index; stage (b)
runs the comparator on all k (original, query) pairs in one batch and sorts
them by a fused score of the search similarity and the comparator's
P(related) = 1 - P(distinct) (`Fusion`; with weight 0 it is the spec's
ascending P(distinct), specs/simprov.md 2.11); stage (c) takes the
best pair's heatmap, which lives in the original's frame, and carries it onto
the query's own pixels through the comparator's alignment (its sampling
coordinates), so a cropped, padded or rotated query gets its map in place.

Both networks run in their inference form: BatchNorms folded into the convs
before them (`resnet.fold_batch_norm`) and compiled with the backend's
inference options (`compile_options.compiler_options`); on this CPU that
runs the r50 descriptor 1.7x faster than the model as trained
(scripts/bench_descriptor_torch.py).
"""

from __future__ import annotations

import dataclasses
import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from provjax import compile_options, weights
from provjax.models import resnet
from provjax.provenance.gallery import Gallery
from provjax.retrieval.thumbnail import thumbnail, with_thumbnail
from provjax.tasks.losses import l2_normalize
from provjax.viz.overlay import resize, resize_map

VERDICTS = ("benign", "manipulated", "distinct")
_MIN_P = 1e-6  # P(related) floor: float32 probabilities resolve no finer near 1
DESCRIPTOR_DIM = 256  # every SImProv descriptor's output (specs/simprov.md)
THUMBNAIL_DIM = 256  # the 16 x 16 thumbnail reference


@dataclasses.dataclass(frozen=True)
class Fusion:
  """Re-ranking and near-duplicate decision from both stages' evidence.

  fused = (1 - weight) * log max(P(related), 1e-6) + weight * cosine; the
  candidates are sorted by descending fused score and the best one is
  "distinct" when its score is below `threshold`. weight 0 ranks by the
  comparator alone (the spec), weight 1 keeps the search order. Released
  comparators store both numbers, chosen on held-back data
  (`provenance.benchmark.calibrate_fusion`).
  """

  weight: float = 0.0
  threshold: float = float(np.log(0.5))

  @classmethod
  def from_config(cls, config: dict) -> "Fusion":
    """From a released comparator's config.json; older releases stored only
    `distinct_threshold` on P(distinct), which is weight 0 here."""
    if "fusion_weight" in config:
      return cls(float(config["fusion_weight"]), float(config["fused_threshold"]))
    return cls(0.0, float(np.log(max(1.0 - config.get("distinct_threshold", 0.5), _MIN_P))))

  def scores(self, similarity: np.ndarray, p_distinct: np.ndarray) -> np.ndarray:
    related = np.log(np.maximum(1.0 - np.asarray(p_distinct, np.float64), _MIN_P))
    return (1.0 - self.weight) * related + self.weight * np.asarray(similarity, np.float64)


@dataclasses.dataclass
class QueryResult:
  """What the engine found for one query."""

  match: dict | None  # best candidate unless it is judged distinct
  candidates: list[dict]  # top-k after re-ranking: id, path, score, p_distinct
  heatmap: np.ndarray  # [H, W] float32 in [0, 1] on the query's own pixels
  grid_heatmap: np.ndarray  # [g, g] test-time map in the original's frame (spec metrics)
  search_ids: np.ndarray  # top-k ids in search order, before re-ranking
  best_thumb: np.ndarray  # thumbnail of the best candidate (for pictures)


def thumbnail_weight(descriptor_name: str) -> float:
  """The thumbnail's share of search similarity stored with released descriptor weights (0: none)."""
  return float(weights.read_config(descriptor_name).get("thumbnail_weight", 0.0))


class Describer:
  """Full-size RGB images -> L2-normalised search vectors, in fixed-shape batches.

  With `thumbnail_weight` w > 0 each vector is the descriptor joined with the
  16 x 16 thumbnail reference (`retrieval.thumbnail.with_thumbnail`): cosine
  = (1 - w) descriptor cosine + w thumbnail cosine, 512-d. A gallery records
  the w it was built with, and its queries are described with the same.
  """

  def __init__(self, model, batch: int = 32, thumbnail_weight: float = 0.0):
    self.size, self.batch = int(model.image_size), batch
    self.thumbnail_weight = float(thumbnail_weight)
    self.dim = DESCRIPTOR_DIM + (THUMBNAIL_DIM if self.thumbnail_weight else 0)
    graphdef, self._state = nnx.split(resnet.fold_batch_norm(model))
    self._embed = embed_fn(graphdef)

  def __call__(self, images: list[np.ndarray]) -> np.ndarray:
    vectors, thumbs = self.parts(images, thumbs=bool(self.thumbnail_weight))
    return with_thumbnail(vectors, thumbs, self.thumbnail_weight)

  def parts(self, images: list[np.ndarray], thumbs: bool = True):
    """(descriptors [N, 256], thumbnails [N, 256] or None when not asked), before mixing."""
    s, vectors, small = self.size, [], []
    for i in range(0, len(images), self.batch):
      part = images[i : i + self.batch]
      # Pad to a power of two: few static shapes to compile, and a single
      # query does not pay for a full batch.
      chunk = np.zeros((_bucket(len(part), self.batch), s, s, 3), np.uint8)
      for n, img in enumerate(part):
        chunk[n] = img if img.shape[:2] == (s, s) else resize(img, s, s)
      vectors.append(np.asarray(self._embed(self._state, chunk))[: len(part)])
      if thumbs:
        # From the same s x s copies on both sides: `index build` only keeps those.
        small.append(thumbnail(list(chunk[: len(part)])))
    if not vectors:
      empty = np.zeros((0, DESCRIPTOR_DIM), np.float32)
      return empty, (np.zeros((0, THUMBNAIL_DIM), np.float32) if thumbs else None)
    return np.concatenate(vectors), (np.concatenate(small) if thumbs else None)


def _bucket(n: int, cap: int) -> int:
  """Smallest power of two >= n, at most cap."""
  return min(cap, 1 << max(0, n - 1).bit_length())


# The compiled functions below take the model state as an argument and close
# over the graphdef (structure only). Closing over the state would make every
# weight a constant of the lowered program: a copy per compilation, slow
# compiles, and an exported StableHLO module as large as the checkpoint.


def embed_fn(graphdef: nnx.GraphDef):
  """Jitted `(state, uint8 images [B, S, S, 3]) -> L2-normalised descriptors [B, D]`."""

  @functools.partial(jax.jit, compiler_options=compile_options.compiler_options())
  def embed(state, images):
    m = nnx.merge(graphdef, state)
    return l2_normalize(m(images.astype(jnp.float32) / 255.0, train=False))

  return embed


def compare_fn(graphdef: nnx.GraphDef):
  """Jitted `(state, refs, queries)` -> probs, heatmap, coords, valid.

  refs uint8 [B, S, S, 3]; queries uint8 [B, S, S, 3] (pairs) or [1, S, S, 3] (one
  query against every ref).
  """

  @functools.partial(jax.jit, compiler_options=compile_options.compiler_options())
  def compare(state, refs, queries):
    m = nnx.merge(graphdef, state)
    out = m.predict(refs.astype(jnp.float32) / 255.0, queries.astype(jnp.float32) / 255.0)
    return out["probs"], out["heatmap"], out["coords"], out["valid"]

  return compare


def heatmap_on_query(
    heat: np.ndarray, coords: np.ndarray, valid: np.ndarray, query_hw: tuple[int, int]
) -> np.ndarray:
  """Carry a grid heatmap from the original's frame onto the query's pixels.

  `coords[y, x]` is where original pixel (y, x) samples the (resized) query;
  each original pixel's heat is splatted there (max), small holes left by
  the splat are closed, and the map is resized to the query's size.
  """
  s = coords.shape[0]
  heat_ref = resize_map(heat, s, s)
  qy = np.rint(coords[..., 0]).astype(int)
  qx = np.rint(coords[..., 1]).astype(int)
  ok = valid & (qy >= 0) & (qy < s) & (qx >= 0) & (qx < s)
  out = np.zeros((s, s), np.float32)
  np.maximum.at(out, (qy[ok], qx[ok]), heat_ref[ok])
  covered = np.zeros((s, s), bool)
  covered[qy[ok], qx[ok]] = True
  filled = ndimage.grey_closing(out, size=3)
  out = np.where(covered, out, filled)
  return np.clip(resize_map(out, *query_hw), 0.0, 1.0)


class Engine:
  """Search a gallery, re-rank with the comparator, decide, localise."""

  def __init__(
      self, gallery: Gallery, descriptor, comparator, *, k: int = 100, fusion: Fusion = Fusion()
  ):
    self.gallery, self.k = gallery, k
    # Ranking and operating point of the near-duplicate decision. Re-ranking
    # takes the best of k candidates, which is biased high, so released
    # weights carry a threshold calibrated on held-back queries (config.json).
    self.fusion = fusion
    self.describe = Describer(
        descriptor, thumbnail_weight=gallery.info.get("thumbnail_weight", 0.0)
    )
    self.cmp_size = int(comparator.image_size)
    if gallery.info["thumb_size"] != self.cmp_size:
      raise ValueError(
          f"gallery thumbnails are {gallery.info['thumb_size']} px but the "
          f"comparator wants {self.cmp_size} px; rebuild the index"
      )
    cmp_graphdef, self._cmp_state = nnx.split(resnet.fold_batch_norm(comparator))
    self._compare = compare_fn(cmp_graphdef)

  def query(self, image: np.ndarray, vector: np.ndarray | None = None) -> QueryResult:
    """Run the three stages for one RGB image (its descriptor may be given)."""
    vector = self.describe([image]) if vector is None else vector[None]
    scores, ids = self.gallery.index.search(vector, min(self.k, len(self.gallery)))
    return self._rerank(image, scores[0], ids[0])

  def query_many(self, images: list[np.ndarray]) -> list[QueryResult]:
    """`query` for several images: one batched description and one search for all."""
    if not images:
      return []
    scores, ids = self.gallery.index.search(self.describe(images), min(self.k, len(self.gallery)))
    return [self._rerank(image, s, i) for image, s, i in zip(images, scores, ids)]

  def _rerank(self, image: np.ndarray, scores: np.ndarray, ids: np.ndarray) -> QueryResult:
    """Compare the query with its k search candidates, decide and localise."""
    q = resize(image, self.cmp_size, self.cmp_size)
    thumbs = self.gallery.thumbs(ids)
    # One query against k thumbnails: its features are computed once.
    probs, heat, coords, valid = (
        np.asarray(a) for a in self._compare(self._cmp_state, thumbs, q[None])
    )
    probs = np.where((ids < 0)[:, None], np.array([0.0, 0.0, 1.0]), probs)
    fused = np.where(ids < 0, -np.inf, self.fusion.scores(scores, probs[:, 2]))
    order = np.argsort(-fused, kind="stable")
    info = self.gallery.candidates(ids)
    candidates = [self._candidate(ids[i], scores[i], probs[i], fused[i], info) for i in order]
    best = order[0]
    verdict = 2 if fused[best] < self.fusion.threshold else int(np.argmax(probs[best, :2]))
    match = None if verdict == 2 else {**candidates[0], "verdict": VERDICTS[verdict]}
    heatmap = heatmap_on_query(heat[best], coords[best], valid[best], image.shape[:2])
    return QueryResult(match, candidates, heatmap, heat[best], ids, thumbs[best])

  @staticmethod
  def _candidate(id_, score, probs, fused, info: dict) -> dict:
    found = info.get(int(id_), {"path": None, "missing": False})
    return {
        "id": int(id_),
        "path": found["path"],
        "missing": found["missing"],
        "score": round(float(score), 6),
        "p_benign": round(float(probs[0]), 6),
        "p_manipulated": round(float(probs[1]), 6),
        "p_distinct": round(float(probs[2]), 6),
        "fused": round(float(fused), 6) if np.isfinite(fused) else None,  # None: an empty slot
    }
