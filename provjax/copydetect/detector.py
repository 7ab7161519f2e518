"""Released copy-detection weights as functions: images -> descriptors, pairs -> P(copy).

    det = CopyDetector.load("copynce.synth-v1", matcher="copynce_matcher.synth-v1")
    vecs = det.describe(images)                  # [N, D] unit vectors
    preds = det.search(q, r, background=b)       # (query index, reference index, score)
    scores = det.rescore(q_images, r_images, preds)

The preprocessing travels with the weights (config.json `preprocessing`):
every image is resized to `size` x `size` whole (no crop: a crop can cut the
copied content away), ImageNet normalisation inside the task's embed. The
search protocol (k nearest per query or the official global budget), the
score normalisation variant and whether the matcher re-scores the top
candidates were chosen on the held-back split by the release; any of them can
be overridden, and so can the thumbnail's share of each similarity
(`Protocol.thumbnail_weight`). `thumbnail` is the classical reference
descriptor: a 16 x 16 grayscale thumbnail, mean removed, L2-normalised,
searched the same way.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from provjax import weights
from provjax.copydetect import protocols, verification
from provjax.retrieval.thumbnail import thumbnail, with_thumbnail
from provjax.tasks import copy_data
from provjax.tasks import copynce_matcher as matcher_task

THUMBNAIL = "thumbnail"


def rank_in_query(qi: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """Each prediction's rank (0: best) among its query's predictions."""
  order = np.lexsort((-scores, qi))
  rank = np.empty(len(qi), np.int64)
  rank[order] = np.arange(len(qi)) - np.searchsorted(qi[order], qi[order])
  return rank


def top_per_query(qi: np.ndarray, ri: np.ndarray, scores: np.ndarray, n: int):
  """Each query's `n` best predictions (index arrays), grouped by query, best first."""
  keep = rank_in_query(qi, scores) < n
  qi, ri, scores = qi[keep], ri[keep], scores[keep]
  order = np.lexsort((-scores, qi))
  return qi[order], ri[order], scores[order]


def query_views(image: np.ndarray, scheme: str) -> list[np.ndarray]:
  """The query and, for "grid", its crops: 2 x 2 halves, the centre half and 3 x 3 thirds.

  A copy can fill a small part of a query (image-in-image, a collage, a screenshot): a crop
  that holds it looks like the reference to a global descriptor where the whole query does
  not. The per-pair score is the best over the views (the max rule of CopyNCE's local crop
  ensembling, here on the descriptor).
  """
  if scheme == "none":
    return [image]
  if scheme != "grid":
    raise ValueError(f"unknown query crop scheme {scheme!r}; choose none or grid")
  h, w = image.shape[:2]
  views = [image]
  for n in (2, 3):
    ys, xs = np.linspace(0, h, n + 1).round().astype(int), np.linspace(0, w, n + 1).round().astype(
        int
    )
    views += [image[ys[i] : ys[i + 1], xs[j] : xs[j + 1]] for i in range(n) for j in range(n)]
    if n == 2:
      views.append(image[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2])
  return [v for v in views if min(v.shape[:2]) >= 8]


def merge_views(vi: np.ndarray, ri: np.ndarray, scores: np.ndarray, owner: np.ndarray):
  """View predictions -> query predictions: each (query, reference) pair scored by its best view."""
  qi = owner[vi]
  order = np.lexsort((-scores, ri, qi))
  qi, ri, scores = qi[order], ri[order], scores[order]
  first = np.ones(len(qi), bool)
  first[1:] = (qi[1:] != qi[:-1]) | (ri[1:] != ri[:-1])
  return qi[first], ri[first], scores[first]


@dataclasses.dataclass
class Protocol:
  """How descriptors become predictions (specs/copy_detection.md section 3)."""

  search: str = "knn"  # "knn" (k per query) or "global" (nq * k pairs overall, official)
  k: int = 10
  score_norm: str = "none"  # "none", "isc2021", "sscd" or "copynce" (needs a background set)
  pcaw: int = 0  # PCA-whitening to this many dimensions, fitted on the background (0: off)
  rescore: int = 0  # candidates per query the matcher re-scores (0: descriptor scores)
  query_crops: str = "none"  # "grid": also describe crops of each query (see `query_views`)
  backend: str = "exact"  # "exact" (JAX matmul top-k) or "scann" (approximate, large galleries)
  # The 16 x 16 thumbnail's share w of every similarity (see `with_thumbnail`); 0: descriptor only.
  thumbnail_weight: float = 0.0
  # Each query's best `verify` candidates get the local-feature bonus (verification.py): up to
  # `verify_weight` for inliers above `verify_chance` or a thumbnail cosine above
  # `verify_near_duplicate`, keypoints found down to `verify_contrast`, the query's with
  # `verify_upsampling`. The search then gathers max(k, verify) per query and keeps k after it.
  verify: int = 0
  verify_weight: float = verification.Verifier.weight
  verify_chance: int = verification.Verifier.chance
  verify_upsampling: int = verification.Verifier.query_upsampling
  verify_contrast: float = verification.Verifier.contrast
  verify_near_duplicate: float = verification.Verifier.near_duplicate

  @property
  def depth(self) -> int:
    """Candidates per query the search gathers."""
    return max(self.k, self.verify)

  def verifier(self) -> verification.Verifier:
    return verification.Verifier(
        query_upsampling=self.verify_upsampling,
        contrast=self.verify_contrast,
        chance=self.verify_chance,
        near_duplicate=self.verify_near_duplicate,
        weight=self.verify_weight,
    )


@dataclasses.dataclass
class CopyDetector:
  """A descriptor (or the thumbnail reference), an optional matcher, and the protocol."""

  descriptor: object | None  # None: the thumbnail reference
  size: int
  protocol: Protocol
  matcher: object | None = None
  matcher_size: int = 0
  batch_size: int = 64
  workers: int = 1  # processes that find verification keypoints

  @classmethod
  def load(cls, name: str, *, matcher: str | None = None, **protocol) -> "CopyDetector":
    """Released descriptor `name` (or "thumbnail"), its protocol overridden by keywords."""
    if name == THUMBNAIL:
      model, size, chosen = None, 0, {}
    else:
      pre = weights.read_config(name)["preprocessing"]
      model, size, chosen = weights.load(name), int(pre["size"]), dict(pre.get("protocol", {}))
      matcher = matcher if matcher is not None else pre.get("matcher")
    chosen.update({k: v for k, v in protocol.items() if v is not None})
    m_model, m_size = None, 0
    if matcher:
      m_model = weights.load(matcher)
      m_size = int(weights.read_config(matcher)["preprocessing"]["size"])
    else:
      chosen["rescore"] = 0
    return cls(model, size, Protocol(**chosen), m_model, m_size)

  def describe(self, images: list[np.ndarray]) -> np.ndarray:
    """[N, D] unit descriptors of decoded images (any sizes)."""
    if self.descriptor is None:
      return thumbnail(images)
    batch = np.stack([copy_data.square(im, self.size) for im in images])
    vectors = copy_data.embed(self.descriptor, batch, self.batch_size)
    w = self.protocol.thumbnail_weight
    return with_thumbnail(vectors, thumbnail(images), w) if w else vectors

  def describe_queries(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of every view of each query (`Protocol.query_crops`) and each view's query."""
    views = [query_views(im, self.protocol.query_crops) for im in images]
    owner = np.repeat(np.arange(len(images)), [len(v) for v in views])
    return self.describe([v for vs in views for v in vs]), owner

  def search(self, queries, refs, background=None, owner=None):
    """(query index, reference index, score) arrays of the protocol's predictions.

    `queries` are one vector per query, or per view with `owner[v]` the query of view v.
    """
    p = self.protocol
    if (p.score_norm != "none" or p.pcaw) and background is None:
      raise ValueError(
          f"score normalisation {p.score_norm!r} / PCA-whitening needs a background set"
      )
    if p.pcaw:
      white = protocols.PCAWhitening.fit(background, p.pcaw)
      queries, refs, background = white.apply(queries), white.apply(refs), white.apply(background)
    k = min(p.depth, len(refs))
    n_queries = len(queries) if owner is None else int(owner.max()) + 1
    if owner is None and p.search == "global":
      if p.score_norm != "none":
        return protocols.normalized_global(
            queries, refs, background, n_queries * k, p.score_norm, backend=p.backend
        )
      return protocols.global_budget(
          queries, refs, budget=n_queries * k, metric="ip", backend=p.backend
      )
    if p.score_norm != "none":
      found = protocols.normalized_knn(
          queries, refs, background, k, p.score_norm, backend=p.backend
      )
    else:
      found = protocols.knn(queries, refs, k, metric="ip", backend=p.backend)
    if owner is None:
      return found
    qi, ri, s = merge_views(*found, owner)
    if p.search == "global":  # the budget over the merged lists (a query may keep up to k x views)
      keep = np.argsort(-s, kind="stable")[: n_queries * k]
      keep.sort()
      return qi[keep], ri[keep], s[keep]
    return top_per_query(qi, ri, s, k)

  def rescore(self, load_query, load_ref, qi: np.ndarray, ri: np.ndarray) -> np.ndarray:
    """P(copy) of each candidate pair (qi[n], ri[n]) from the matcher.

    `load_query(i)` / `load_ref(j)` return decoded images: only the candidates
    are read again, so a gallery never has to be held in memory.
    """
    s = self.matcher_size
    q = {i: copy_data.square(load_query(i), s) for i in np.unique(qi)}
    r = {j: copy_data.square(load_ref(j), s) for j in np.unique(ri)}
    queries = np.stack([q[i] for i in qi])
    refs = np.stack([r[j] for j in ri])
    return matcher_task.score_pairs(self.matcher, queries, refs, self.batch_size)

  def verify_top(self, qi, ri, scores, load_query, load_ref, n_queries: int, memo=None):
    """Each query's `protocol.verify` best candidates get the verification bonus; k kept.

    Predictions come in as `search` gives them (`protocol.depth` deep); the result is k per
    query (knn) or the n_queries x k best overall (global), re-ordered by the new scores.
    `load_query(i)` / `load_ref(j)` return decoded images, read only for the candidates.
    `memo` (a dict) keeps features, inlier counts and thumbnail cosines across calls that
    verify the same images with the same `verify_upsampling` and `verify_contrast`.
    """
    p = self.protocol
    verifier = p.verifier()
    memo = {} if memo is None else memo
    queries, refs, found = (memo.setdefault(k, {}) for k in ("queries", "refs", "pairs"))
    qi, ri, scores = (np.asarray(x) for x in (qi, ri, scores))
    picked = np.nonzero(rank_in_query(qi, scores) < p.verify)[0]
    todo = {(int(qi[n]), int(ri[n])) for n in picked} - found.keys()
    new_q = sorted({i for i, _ in todo} - queries.keys())
    new_r = sorted({j for _, j in todo} - refs.keys())
    calls = [(verifier.query_features, functools.partial(load_query, i)) for i in new_q]
    calls += [(verifier.features, functools.partial(load_ref, j)) for j in new_r]
    got = list(verification.run_calls(calls, self.workers))
    queries.update(zip(new_q, got[: len(new_q)]))
    refs.update(zip(new_r, got[len(new_q) :]))
    for i, j in todo:
      found[i, j] = verifier.inliers(queries[i], refs[j]), verifier.cosine(queries[i], refs[j])
    inliers, cosine = np.array([found[int(qi[n]), int(ri[n])] for n in picked]).reshape(-1, 2).T
    scores = scores.astype(np.float32)
    scores[picked] += verifier.bonus(inliers, cosine)
    if p.search == "global":
      keep = np.sort(np.argsort(-scores, kind="stable")[: n_queries * p.k])
      return qi[keep], ri[keep], scores[keep]
    return top_per_query(qi, ri, scores, p.k)

  def rescore_top(self, qi, ri, scores, load_query, load_ref):
    """Each query's `protocol.rescore` best candidates, scored by the matcher instead."""
    qi, ri, _ = top_per_query(qi, ri, scores, self.protocol.rescore)
    return qi, ri, self.rescore(load_query, load_ref, qi, ri)
