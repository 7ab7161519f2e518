"""Serving a sharded gallery from a JAX multi-process job: each process holds one shard.

`index build --distributed` leaves `DIR/shard-<i>-of-<n>/` per host; here process
i of n opens only its own shard, and `DistributedGallery` gives the engine the
interface of one gallery over all of them. Every call is collective (all
processes make it, in the same order, with the same arguments: they all run
the same query loop over the same files):

- search: each process searches its shard, the [Q, k] top-k lists are gathered
  (`multihost_utils.process_allgather`) and merged exactly as `ShardedIndex`
  merges shards in one process, so the answers equal one index over the same
  files;
- thumbnails and metadata of the k candidates: each process fills the ones it
  owns (shard i owns the ids = i mod n) and the gathered rows are picked by owner.

No process ever holds another's vectors: what crosses the network per query
is k scores and ids per process, then the k candidates' thumbnails and paths.
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

from provjax.provenance.gallery import Gallery, shard_directory
from provjax.retrieval.merge import merge_topk

PATH_BYTES = 1024  # a candidate's path travels as this many UTF-8 bytes (longer is an error)


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None):
  """`jax.distributed.initialize` (from the cluster's environment when no flags are given).

  CPU processes exchange their collectives over gloo; accelerators use their own.
  """
  import jax  # pylint: disable=g-import-not-at-top

  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
  )
  # The first collective connects the processes, and gloo says so on stdout, where the
  # JSON lines go: make it here, with stdout pointed at stderr.
  with _stdout_to_stderr():
    allgather(np.zeros(1, np.float32))
  return jax.process_index(), jax.process_count()


@contextlib.contextmanager
def _stdout_to_stderr():
  sys.stdout.flush()
  saved = os.dup(1)
  os.dup2(2, 1)
  try:
    yield
  finally:
    os.dup2(saved, 1)
    os.close(saved)


def allgather(array: np.ndarray) -> np.ndarray:
  """[P, ...]: every process's `array` (same shape and dtype everywhere), in process order.

  int64 travels as int32 pairs and bool as uint8: JAX without x64 would narrow them.
  """
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  array = np.ascontiguousarray(array)
  if array.dtype == np.int64:
    pairs = allgather(array.view(np.int32).reshape(*array.shape, 2))
    return pairs.reshape(*pairs.shape[:-1], 2).view(np.int64)[..., 0]
  if array.dtype == np.bool_:
    return allgather(array.astype(np.uint8)).astype(bool)
  return np.asarray(multihost_utils.process_allgather(array, tiled=False))


class _Index:
  """The collective search of a `DistributedGallery` (the engine's `gallery.index`)."""

  def __init__(self, gallery: "DistributedGallery"):
    self._gallery = gallery

  def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    local = self._gallery.local.index
    q = np.asarray(queries, np.float32).reshape(-1, local.dim)
    scores = np.full((len(q), k), -np.inf, np.float32)
    ids = np.full((len(q), k), -1, np.int64)
    if len(local):
      found_s, found_i = local.search(q, min(k, len(local)))
      scores[:, : found_s.shape[1]], ids[:, : found_i.shape[1]] = found_s, found_i
    all_s, all_i = allgather(scores), allgather(ids)  # [P, Q, k]
    return merge_topk(list(all_s), list(all_i), k)


class DistributedGallery:
  """This process's shard, used collectively as the whole gallery (see the module docstring)."""

  def __init__(self, local: Gallery, process: tuple[int, int]):
    self.local = local
    self.process, self.count = process
    if local.shard != process:
      raise ValueError(
          f"{local.directory} is shard {local.shard[0]}/{local.shard[1]} but this is process "
          f"{self.process}/{self.count}"
      )
    self.info = local.info
    self.index = _Index(self)
    self._size = int(allgather(np.array([len(local)], np.int64)).sum())

  @classmethod
  def open(cls, directory, process: tuple[int, int]) -> "DistributedGallery":
    """Process i of n opens `DIR/shard-<i>-of-<n>/` (as `index build --distributed` wrote)."""
    folder = shard_directory(directory, *process)
    if not (folder / "gallery.json").is_file():
      raise ValueError(
          f"{folder}: no gallery shard for process {process[0]} of {process[1]} (build it with "
          f"`provjax index build --distributed` on {process[1]} processes)"
      )
    return cls(Gallery.open(folder), process)

  def __len__(self) -> int:
    return self._size

  def _owned(self, ids: np.ndarray) -> np.ndarray:
    return (ids >= 0) & (ids % self.count == self.process)

  def _pick(self, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Each id's row from the process that owns it, out of gathered [P, len(ids), ...] rows."""
    owner = np.where(ids >= 0, ids % self.count, 0)
    return rows[owner, np.arange(len(ids))]

  def thumbs(self, ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, np.int64)
    s = self.info["thumb_size"]
    mine = np.zeros((len(ids), s, s, 3), np.uint8)
    owned = self._owned(ids)
    if owned.any():
      mine[owned] = self.local.thumbs(ids[owned])
    return self._pick(allgather(mine), ids)

  def candidates(self, ids: np.ndarray) -> dict[int, dict]:
    """{id: {"path", "missing"}} of the ids, each told by the process that holds its file."""
    ids = np.asarray(ids, np.int64)
    paths = np.zeros((len(ids), PATH_BYTES), np.uint8)
    missing = np.zeros(len(ids), bool)
    for n, info in self.local.candidates(ids[self._owned(ids)]).items():
      row = int(np.flatnonzero(ids == n)[0])
      encoded = (info["path"] or "").encode()
      if len(encoded) > PATH_BYTES:
        raise ValueError(f"path longer than {PATH_BYTES} bytes: {info['path']}")
      paths[row, : len(encoded)] = np.frombuffer(encoded, np.uint8)
      missing[row] = info["missing"]
    paths, missing = self._pick(allgather(paths), ids), self._pick(allgather(missing), ids)
    return {
        int(i): {"path": bytes(p).rstrip(b"\0").decode() or None, "missing": bool(m)}
        for i, p, m in zip(ids.tolist(), paths, missing)
        if i >= 0
    }
