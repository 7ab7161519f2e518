"""Sharded retrieval: one index shard per host, queries fanned out and merged.

Multi-host workflow (e.g. 100M+ images over ``n`` hosts, shards on a shared filesystem)::

    # every host i of n (jax.process_index(), jax.process_count()):
    files = files_for_process(all_image_paths, i, n)       # sorted(paths)[i::n]
    vecs = extract descriptors for files                   # L2-normalised float32
    write_vector_shard(VEC_DIR, i, n, ids, vecs, files, [sha256_file(f) for f in files])
    build_shard_index(VEC_DIR, INDEX_DIR, i, n)            # -> INDEX_DIR/shard-0000i-of-0000n

    # query side (any machine that sees INDEX_DIR):
    index = ShardedIndex.load(INDEX_DIR)
    scores, ids = index.search(queries, k=10)

Each host writes only its own files, atomically (temp file + rename), so hosts need no
coordination beyond agreeing on ``n`` and on globally unique ids (e.g. the position of the file
in the sorted global list). ``vectors-*.npz`` files are the portable hand-off between
extraction and indexing: an index shard can be rebuilt from one without re-running the model.
A shard's ScaNN parameters are chosen from its own size, so per-shard build and query cost is
that of a single index of ``N / n`` vectors.

Merging is exact with respect to the shards: the global top-k is the top-k of the union of the
per-shard top-k lists, so N exact shards return exactly what one exact index over the union
would (ties broken by the lower id).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import tempfile
from typing import Sequence

import numpy as np

from provjax.retrieval.index import Index
from provjax.retrieval.merge import merge_topk

_SHARD_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})$")


def shard_dir_name(process_index: int, process_count: int) -> str:
  """``shard-{i:05d}-of-{n:05d}``: the directory holding shard ``i`` of ``n``."""
  return f"shard-{process_index:05d}-of-{process_count:05d}"


def vector_shard_name(process_index: int, process_count: int) -> str:
  """``vectors-{i:05d}-of-{n:05d}.npz``: the descriptor file written by host ``i`` of ``n``."""
  return f"vectors-{process_index:05d}-of-{process_count:05d}.npz"


def files_for_process(paths: Sequence[str], process_index: int, process_count: int) -> list[str]:
  """The files host ``process_index`` handles: ``sorted(paths)[i::n]``.

  Sorting first makes the split identical on every host whatever order each listed the files.
  """
  _check_process(process_index, process_count)
  return sorted(paths)[process_index::process_count]


def _check_process(process_index: int, process_count: int) -> None:
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")


def write_vector_shard(
    directory: str,
    process_index: int,
    process_count: int,
    ids: Sequence[int],
    vectors: np.ndarray,
    paths: Sequence[str] | None = None,
    sha256s: Sequence[str] | None = None,
) -> str:
  """Writes one host's descriptors to ``directory/vectors-{i:05d}-of-{n:05d}.npz`` atomically.

  Args:
      directory: output directory (created if needed; typically shared by all hosts).
      process_index: this host's index ``i``.
      process_count: number of hosts ``n``.
      ids: int ids (globally unique across shards), one per row.
      vectors: float32 ``[M, dim]`` L2-normalised descriptors.
      paths: optional file path per row.
      sha256s: optional file sha256 per row.

  Returns:
      The path written.
  """
  _check_process(process_index, process_count)
  ids = np.asarray(ids, np.int64).reshape(-1)
  vectors = np.asarray(vectors, np.float32)
  m = ids.shape[0]
  if vectors.ndim != 2 or vectors.shape[0] != m:
    raise ValueError(f"vectors must have shape ({m}, dim), got {vectors.shape}")
  # Fixed-width unicode arrays (no pickling); "" stands for a missing value.
  paths_arr = np.array(["" if p is None else str(p) for p in (paths or [None] * m)], dtype=str)
  sha_arr = np.array(["" if s is None else s for s in (sha256s or [None] * m)], dtype=str)
  if paths_arr.shape != (m,) or sha_arr.shape != (m,):
    raise ValueError(f"got {m} ids but {paths_arr.shape[0]} paths, {sha_arr.shape[0]} sha256s")
  os.makedirs(directory, exist_ok=True)
  final = os.path.join(directory, vector_shard_name(process_index, process_count))
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, ids=ids, vectors=vectors, paths=paths_arr, sha256s=sha_arr)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, final)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return final


def read_vector_shard(path: str) -> dict:
  """Reads a file written by :func:`write_vector_shard`.

  Returns:
      ``{"ids": int64 [M], "vectors": float32 [M, dim], "paths": list[str | None],
      "sha256s": list[str | None]}``.
  """
  try:
    with np.load(path, allow_pickle=False) as z:
      out = {
          "ids": z["ids"],
          "vectors": z["vectors"],
          "paths": [p or None for p in z["paths"].tolist()],
          "sha256s": [s or None for s in z["sha256s"].tolist()],
      }
  except (OSError, ValueError, KeyError) as e:
    raise ValueError(f"{path}: not a readable vector shard ({e})") from None
  return out


def build_shard_index(
    vectors_dir: str, index_dir: str, process_index: int, process_count: int, backend: str = "scann"
) -> Index:
  """Builds host ``i``'s index shard from its vector file and saves it.

  Reads ``vectors_dir/vectors-{i:05d}-of-{n:05d}.npz`` and saves the index to
  ``index_dir/shard-{i:05d}-of-{n:05d}`` (atomically, see :meth:`Index.save`).

  Returns:
      The built :class:`Index`.
  """
  _check_process(process_index, process_count)
  shard = read_vector_shard(
      os.path.join(vectors_dir, vector_shard_name(process_index, process_count))
  )
  index = Index(shard["vectors"].shape[1], backend=backend)
  index.add(shard["ids"], shard["vectors"], shard["paths"], shard["sha256s"])
  index.save(os.path.join(index_dir, shard_dir_name(process_index, process_count)))
  return index


class ShardedIndex:
  """Searches N index shards as one index.

  Args:
      shards: the shard indexes (same dim; ids unique across shards).
      max_workers: threads used to search shards concurrently (default: one per shard).
          ScaNN and XLA release the GIL while searching, so shards run in parallel.
  """

  def __init__(self, shards: Sequence[Index], max_workers: int | None = None):
    if not shards:
      raise ValueError("ShardedIndex needs at least one shard")
    dims = {s.dim for s in shards}
    if len(dims) != 1:
      raise ValueError(f"shards have different dimensions: {sorted(dims)}")
    self.shards = list(shards)
    self.dim = dims.pop()
    self._max_workers = max_workers or len(self.shards)

  def __len__(self) -> int:
    return sum(len(s) for s in self.shards)

  def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Searches every shard for its top-k and merges them.

    Returns:
        ``(scores float32 [Q, k], ids int64 [Q, k])`` by decreasing score, ties by lower
        id, ``-inf`` / ``-1`` padding when all shards together hold fewer than k rows.
    """
    if len(self.shards) == 1:
      results = [self.shards[0].search(queries, k)]
    else:
      with concurrent.futures.ThreadPoolExecutor(self._max_workers) as pool:
        results = list(pool.map(lambda s: s.search(queries, k), self.shards))
    return merge_topk([r[0] for r in results], [r[1] for r in results], k)

  def lookup(self, id_: int) -> dict:
    """Metadata of one id (searched in every shard).

    Raises:
        KeyError: if no shard holds the id.
    """
    for shard in self.shards:
      try:
        return shard.lookup(id_)
      except KeyError:
        continue
    raise KeyError(id_)

  def find_sha256(self, sha: str) -> int | None:
    """The id of the file with this sha256 in any shard, or None."""
    for shard in self.shards:
      found = shard.find_sha256(sha)
      if found is not None:
        return found
    return None

  def save(self, directory: str) -> None:
    """Saves shard ``i`` of ``n`` to ``directory/shard-{i:05d}-of-{n:05d}`` (each atomic)."""
    n = len(self.shards)
    for i, shard in enumerate(self.shards):
      shard.save(os.path.join(directory, shard_dir_name(i, n)))

  @classmethod
  def load(
      cls, directory: str, verify: bool = True, max_workers: int | None = None
  ) -> "ShardedIndex":
    """Loads every ``shard-*-of-*`` directory under ``directory``.

    Raises:
        ValueError: if no shards are found, shard counts disagree, or a shard is missing.
        IndexCorruptError: if a shard fails its checksum verification.
    """
    found: dict[int, str] = {}
    counts = set()
    for name in sorted(os.listdir(directory)):
      m = _SHARD_RE.match(name)
      if m and os.path.isdir(os.path.join(directory, name)):
        found[int(m.group(1))] = os.path.join(directory, name)
        counts.add(int(m.group(2)))
    if not found:
      raise ValueError(f"{directory}: no shard-NNNNN-of-NNNNN directories")
    if len(counts) != 1:
      raise ValueError(f"{directory}: shards disagree on the shard count {sorted(counts)}")
    n = counts.pop()
    missing = sorted(set(range(n)) - set(found))
    if missing:
      raise ValueError(f"{directory}: missing shards {missing} of {n}")
    shards = [Index.load(found[i], verify=verify) for i in range(n)]
    return cls(shards, max_workers=max_workers)
