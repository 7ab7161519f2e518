"""A trusted gallery on disk: descriptor index + comparator thumbnails.

    DIR/index/         retrieval Index (vectors, ids, SQLite metadata, manifest)
    DIR/thumbs/        comparator-size thumbnails, one `chunk-<first id>.npy` per save,
                       written to a temporary name and renamed (atomic)
    DIR/gallery.json   which descriptor built it and the thumbnail size (atomic)

Thumbnails travel with the index so that re-ranking k candidates needs no
decoding of the originals: the comparator reads them straight from memory.
Building is resumable: files whose sha256 is already indexed are skipped.

A gallery built on many hosts is a folder of shards, `DIR/shard-<i>-of-<n>/`,
each a gallery of its own (host i indexes files i::n; ids are positions in
the global sorted file list, so they are unique). `Gallery.open(DIR)` opens
them as one: searches fan out over the shards and merge (`ShardedIndex`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from provjax.retrieval.index import Index
from provjax.retrieval.sharded import ShardedIndex, shard_dir_name


def _atomic_write_bytes(path: Path, data: bytes) -> None:
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


class Gallery:
  """Index + thumbnails of a trusted image collection."""

  def __init__(self, directory: str | Path, index: Index, info: dict):
    self.directory = Path(directory)
    self.index = index
    self.info = info
    self._chunks: list[tuple[np.ndarray, np.ndarray]] = []  # (ids, thumbs) per chunk
    self._pending: list[tuple[np.ndarray, np.ndarray]] = []
    self._row_of: dict[int, tuple[int, int]] = {}

  @classmethod
  def create(
      cls, directory, *, dim: int, thumb_size: int, descriptor: str, backend: str = "scann"
  ) -> "Gallery":
    info = {"dim": dim, "thumb_size": thumb_size, "descriptor": descriptor, "backend": backend}
    return cls(directory, Index(dim, backend=backend), info)

  @classmethod
  def open(cls, directory, *, verify: bool = True) -> "Gallery | ShardedGallery":
    directory = Path(directory)
    info_path = directory / "gallery.json"
    shards = sorted(p for p in directory.glob("shard-*-of-*") if (p / "gallery.json").is_file())
    if not info_path.is_file() and shards:
      return ShardedGallery([cls.open(p, verify=verify) for p in shards])
    if not info_path.is_file():
      raise FileNotFoundError(f"{directory} is not a provjax gallery (no gallery.json)")
    gallery = cls(
        directory, Index.load(directory / "index", verify=verify), json.loads(info_path.read_text())
    )
    for path in sorted((directory / "thumbs").glob("chunk-*.npz")):
      with np.load(path) as z:
        gallery._register(z["ids"], z["thumbs"])
    return gallery

  def __len__(self) -> int:
    return len(self.index)

  @property
  def next_id(self) -> int:
    ids = self.index.ids
    return int(ids.max()) + 1 if len(ids) else 0

  def _register(self, ids: np.ndarray, thumbs: np.ndarray) -> None:
    chunk = len(self._chunks)
    self._chunks.append((ids, thumbs))
    for row, id_ in enumerate(ids.tolist()):
      self._row_of[id_] = (chunk, row)

  def add(
      self, vectors: np.ndarray, thumbs: np.ndarray, paths: list[str], sha256s: list[str], ids=None
  ) -> np.ndarray:
    """Add L2-normalised vectors and their thumbnails; returns the ids added.

    Ids default to the next free ones; sharded builds pass global ids.
    """
    if ids is None:
      ids = np.arange(self.next_id, self.next_id + len(paths), dtype=np.int64)
    ids = np.asarray(ids, np.int64)
    result = self.index.add(ids, vectors, paths=paths, sha256s=sha256s)
    keep = np.isin(ids, result.added)
    if keep.any():
      self._register(ids[keep], thumbs[keep])
      self._pending.append((ids[keep], thumbs[keep]))
    return result.added

  def thumbs(self, ids: np.ndarray) -> np.ndarray:
    """Thumbnails [len(ids), S, S, 3] uint8 (zeros for -1 padding ids)."""
    s = self.info["thumb_size"]
    out = np.zeros((len(ids), s, s, 3), np.uint8)
    for n, id_ in enumerate(np.asarray(ids).tolist()):
      if id_ >= 0:
        chunk, row = self._row_of[id_]
        out[n] = self._chunks[chunk][1][row]
    return out

  def save(self) -> None:
    """Write new thumbnail chunks, then the index (atomic), then gallery.json."""
    thumbs_dir = self.directory / "thumbs"
    thumbs_dir.mkdir(parents=True, exist_ok=True)
    for ids, thumbs in self._pending:
      path = thumbs_dir / f"chunk-{int(ids[0]):012d}.npz"
      tmp = path.with_name(path.name + ".tmp.npz")
      np.savez(tmp, ids=ids, thumbs=thumbs)
      os.replace(tmp, path)
    self._pending = []
    self.index.save(self.directory / "index")
    _atomic_write_bytes(
        self.directory / "gallery.json", (json.dumps(self.info, indent=2) + "\n").encode()
    )


class ShardedGallery:
  """Several gallery shards used as one (same interface as `Gallery` for queries)."""

  def __init__(self, shards: list[Gallery]):
    self.shards = shards
    self.info = shards[0].info
    self.index = ShardedIndex([g.index for g in shards])
    self._shard_of = {int(i): n for n, g in enumerate(shards) for i in g.index.ids}

  def __len__(self) -> int:
    return len(self.index)

  def thumbs(self, ids: np.ndarray) -> np.ndarray:
    s = self.info["thumb_size"]
    out = np.zeros((len(ids), s, s, 3), np.uint8)
    for n, id_ in enumerate(np.asarray(ids).tolist()):
      if id_ >= 0:
        out[n] = self.shards[self._shard_of[id_]].thumbs(np.array([id_]))[0]
    return out


def shard_directory(directory, process_index: int, process_count: int) -> Path:
  """Where host `process_index` of `process_count` writes its gallery shard."""
  return Path(directory) / shard_dir_name(process_index, process_count)
