"""Hard negatives: each gallery image's nearest images of other sources.

The paper's distinct training pairs include hard negatives, the original's
nearest neighbours in an index of the training gallery (specs/simprov.md).
`neighbour_table` finds them among one split's records by exact inner
product of their search vectors (`retrieval.exact`). A record never gets a
neighbour of its own `source`: two crops of one photograph can overlap, and
such a pair is related, not distinct.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from provjax.data.images import read_image
from provjax.retrieval import exact


def neighbour_table(vectors: np.ndarray, sources, k: int) -> np.ndarray:
  """[N, k] int64: row i holds the k records nearest to record i whose source differs, nearest first.

  Args:
    vectors: [N, d] search vectors (L2-normalised: inner product is cosine).
    sources: N source names; records of one source are never each other's neighbours.
    k: neighbours per record.

  Raises:
    ValueError: when some record has fewer than k records of another source.
  """
  groups = np.unique(np.asarray(sources), return_inverse=True)[1].reshape(-1)
  largest = int(np.bincount(groups).max())
  if len(groups) - largest < k:
    raise ValueError(
        f"hard negatives: {k} neighbours of another source asked for, but one source holds "
        f"{largest} of the {len(groups)} records"
    )
  # The nearest k + largest hold at least k of another source whatever the own source's size.
  _, idx = exact.topk(np.asarray(vectors, np.float32), vectors, min(k + largest, len(groups)))
  other = groups[idx] != groups[:, None]
  # A stable sort on "same source" keeps the nearest-first order among the others.
  first = np.argsort(~other, axis=1, kind="stable")[:, :k]
  return np.take_along_axis(idx, first, 1)


@dataclasses.dataclass(frozen=True)
class HardNegatives:
  """Each record's nearest records of other sources (`table`, [N, k]) in `source`.

  `draw(i, rng)` returns, with probability `fraction`, the image of one of
  record i's k neighbours drawn uniformly, else None (the caller draws a
  random negative).
  """

  source: object
  table: np.ndarray
  fraction: float

  def draw(self, i: int, rng: np.random.Generator) -> np.ndarray | None:
    if rng.random() >= self.fraction:
      return None
    j = int(self.table[i, rng.integers(self.table.shape[1])])
    return read_image(bytes(self.source[j]["image"]), name=f"record {j}")
