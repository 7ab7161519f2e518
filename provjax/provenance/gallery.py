"""A trusted gallery on disk: descriptor index + comparator thumbnails.

    DIR/index/         retrieval Index (vectors, ids, SQLite metadata with tombstones,
                       manifest): its atomic directory swap is the gallery's commit point
    DIR/thumbs/        comparator-size thumbnails in chunks: `chunk-<time ns>.thumbs.npy`
                       (uint8 [N, S, S, 3], memory-mapped when opened) then
                       `chunk-<time ns>.ids.npy` (int64 [N]), each written to a temporary
                       name and renamed (atomic), always before the index that lists it:
                       the index property `thumb_chunks` names every chunk of the gallery
                       with its rows and the sha256 and size of both files
    DIR/gallery.json   descriptor, thumbnail size, backend and shard (written at creation)

Thumbnails travel with the index so that re-ranking k candidates needs no
decoding of the originals: the comparator reads the k it needs from the
memory-mapped chunks, so an open gallery holds only the ids in RAM and the
page cache keeps what is read often. A sync writes one new chunk and never
touches the earlier ones. Opening checks that every listed chunk is there at
its size; `verify()` checks their checksums too (`provjax index verify`).
(Galleries written before the list have every `chunk-*` file read, and the
older `chunk-<time ns>.npz` files are read into memory.) An id belongs to one
content (sha256) for the life of the gallery, so a thumbnail chunk can never
hold a wrong picture for an id, and chunks that the index does not (yet, or
any more) list, left by a killed sync, are ignored.

A gallery built on many hosts is a folder of shards, `DIR/shard-<i>-of-<n>/`,
each a gallery of its own. Shard i of n gives out ids i, i + n, i + 2n, ...
(`next_id`), so shards never need to talk to agree on unique ids.
`Gallery.open(DIR)` opens them as one: searches fan out over the shards and
merge (`ShardedIndex`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import time

import numpy as np

from provjax.retrieval.index import Index, IndexCorruptError, file_info
from provjax.retrieval.sharded import ShardedIndex, shard_dir_name


def candidate_info(index, ids) -> dict[int, dict]:
  """{id: {"path", "missing"}} of search candidates (padding ids < 0 left out).

  The gallery may be older than the folder: `missing` says a file is gone
  since indexing, rather than point at it (pictures then use the thumbnail).
  """
  out = {}
  for id_ in np.asarray(ids).tolist():
    if id_ >= 0:
      path = index.lookup(int(id_)).get("path")
      out[int(id_)] = {"path": path, "missing": bool(path) and not Path(path).is_file()}
  return out


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
    self._row_of: dict[int, tuple[int, int]] = {}
    self._listed: dict[str, dict] = {}  # chunk stem -> {"rows", "files": {name: info}}

  @classmethod
  def create(
      cls,
      directory,
      *,
      dim: int,
      thumb_size: int,
      descriptor: str,
      backend: str = "scann",
      shard: tuple[int, int] | None = None,
      thumbnail_weight: float = 0.0,
  ) -> "Gallery":
    info = {"dim": dim, "thumb_size": thumb_size, "descriptor": descriptor, "backend": backend}
    if shard is not None:
      info["shard"] = list(shard)
    if thumbnail_weight:  # the search vectors' thumbnail share (engine.Describer)
      info["thumbnail_weight"] = float(thumbnail_weight)
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
    listed = gallery.index.get_property(_LISTED)
    thumbs_dir = directory / "thumbs"
    if listed is None:  # written before chunks were listed: every complete chunk counts
      for path in sorted(thumbs_dir.glob("chunk-*" + _IDS)):
        ids, thumbs = _read_chunk(path)
        gallery._register(ids, thumbs)
        gallery._list(path, len(ids))  # the next save commits the list
    else:
      gallery._listed = json.loads(listed)
      for stem, chunk in sorted(gallery._listed.items()):
        for name, info in chunk["files"].items():
          _check_size(thumbs_dir / name, info["bytes"])
        gallery._register(*_read_chunk(thumbs_dir / (stem + _IDS)))
    for path in sorted(thumbs_dir.glob("chunk-*.npz")):
      with np.load(path) as z:
        gallery._register(z["ids"], z["thumbs"])
    return gallery

  def __len__(self) -> int:
    return len(self.index)

  @property
  def shard(self) -> tuple[int, int]:
    """(i, n) of this shard; (0, 1) for a gallery of one piece."""
    i, n = self.info.get("shard", (0, 1))
    return int(i), int(n)

  @property
  def next_id(self) -> int:
    """The next id this shard gives out: above every id it ever used, and = i (mod n)."""
    i, n = self.shard
    top = self.index.max_id()
    return i if top < 0 else top + 1 + (i - top - 1) % n

  def new_ids(self, count: int) -> np.ndarray:
    """`count` fresh ids of this shard's residue class (i, i + n, ...)."""
    return self.next_id + self.shard[1] * np.arange(count, dtype=np.int64)

  def _register(self, ids: np.ndarray, thumbs: np.ndarray) -> None:
    chunk = len(self._chunks)
    self._chunks.append((ids, thumbs))
    for row, id_ in enumerate(ids.tolist()):
      self._row_of[id_] = (chunk, row)

  def add(
      self, vectors: np.ndarray, thumbs: np.ndarray, paths: list[str], sha256s: list[str], ids=None
  ) -> np.ndarray:
    """Add L2-normalised vectors and their thumbnails; returns the ids added.

    Ids default to fresh ones (`new_ids`); a sync passes the id its content
    had before it was compacted away. The thumbnails go to disk now, as a
    new chunk (memory-mapped from then on): the chunk is part of the gallery
    once `save` commits the index that lists it.
    """
    if ids is None:
      ids = self.new_ids(len(paths))
    ids = np.asarray(ids, np.int64)
    result = self.index.add(ids, vectors, paths=paths, sha256s=sha256s)
    keep = np.isin(ids, result.added)
    if keep.any():
      s = self.info["thumb_size"]
      written = _write_chunk(self.directory / "thumbs", ids[keep], s, [thumbs[keep]])
      self._register(*_read_chunk(written))
      self._list(written, int(keep.sum()))
    return result.added

  def candidates(self, ids) -> dict[int, dict]:
    return candidate_info(self.index, ids)

  def thumbs(self, ids: np.ndarray) -> np.ndarray:
    """Thumbnails [len(ids), S, S, 3] uint8 (zeros for -1 padding ids)."""
    s = self.info["thumb_size"]
    out = np.zeros((len(ids), s, s, 3), np.uint8)
    for n, id_ in enumerate(np.asarray(ids).tolist()):
      if id_ >= 0:
        chunk, row = self._row_of[id_]
        out[n] = self._chunks[chunk][1][row]
    return out

  def remove(self, ids) -> None:
    """Tombstone ids: searches skip them now; `compact` drops them."""
    self.index.remove(ids)

  def save(self) -> None:
    """Commit: the index (one atomic swap, listing the new chunks), then gallery.json.

    A kill before the index swap leaves the gallery as it was (the new
    chunks are not listed); after it, as it is now. Chunks that no commit
    listed (left by a killed sync) are deleted after the swap.
    """
    self.index.save(self.directory / "index")
    _atomic_write_bytes(
        self.directory / "gallery.json", (json.dumps(self.info, indent=2) + "\n").encode()
    )
    listed = {name for chunk in self._listed.values() for name in chunk["files"]}
    for path in (self.directory / "thumbs").glob("*chunk-*.npy"):
      if path.name not in listed:
        path.unlink()

  def compact(self) -> dict:
    """Rebuild the index and thumbnails without tombstones, atomically; returns what it dropped.

    The live thumbnails go to one new chunk, copied a block at a time
    (memory stays a block's, not the gallery's), the compacted index replaces
    the old one in one swap, and only then are the old chunks deleted: a
    kill at any point leaves a gallery that answers the same.
    """
    dropped = len(self.index.removed)
    live = self.index.ids[~np.isin(self.index.ids, self.index.removed)]
    thumbs_dir = self.directory / "thumbs"
    old_files = sorted(thumbs_dir.glob("chunk-*"))
    s = self.info["thumb_size"]
    blocks = (self.thumbs(live[i : i + WRITE_BLOCK]) for i in range(0, len(live), WRITE_BLOCK))
    kept = _write_chunk(thumbs_dir, live, s, blocks) if len(live) else None
    self.index = self.index.compact()
    self._listed = {}
    if kept is not None:
      self._list(kept, len(live))
    else:
      self.index.set_property(_LISTED, "{}")
    self.index.save(self.directory / "index")
    for path in old_files:  # ids files first in name order: a chunk is never half there
      path.unlink()
    self._chunks, self._row_of = [], {}
    if kept is not None:
      self._register(*_read_chunk(kept))
    return {"dropped": dropped, "size": len(self)}

  def _list(self, ids_path: Path, rows: int) -> None:
    """Adds a written chunk to the list the next index save commits."""
    stem = ids_path.name[: -len(_IDS)]
    names = (stem + _THUMBS, stem + _IDS)
    files = {name: file_info(str(ids_path.with_name(name))) for name in names}
    self._listed[stem] = {"rows": rows, "files": files}
    self.index.set_property(_LISTED, json.dumps(self._listed, sort_keys=True))

  def verify(self) -> dict:
    """Checks the sha256 of every index file and listed thumbnail chunk.

    Opening checks sizes only, and the index's checksums when asked: this
    reads every thumbnail too (about 12 KB per entry at 64 px).

    Raises:
        IndexCorruptError: naming the first file whose checksum differs.
    """
    Index.load(self.directory / "index", verify=True)
    for stem, chunk in sorted(self._listed.items()):
      for name, info in chunk["files"].items():
        path = self.directory / "thumbs" / name
        if file_info(str(path))["sha256"] != info["sha256"]:
          raise IndexCorruptError(f"{path}: checksum mismatch (sha256 differs from the index)")
    return {"size": len(self), "thumbnail_chunks": len(self._listed), "ok": True}

  def stats(self) -> dict:
    """Size, tombstones, bytes on disk and last sync of this gallery (or shard)."""
    return {
        "size": len(self),
        "shards": 1,
        "tombstones": len(self.index.removed),
        "bytes": _folder_bytes(self.directory),
        "last_sync": self.index.get_property("last_sync"),
    }


_IDS, _THUMBS = ".ids.npy", ".thumbs.npy"
_LISTED = "thumb_chunks"  # index property: the chunks of the gallery, with checksums


def _check_size(path: Path, expected: int) -> None:
  if not path.is_file():
    raise IndexCorruptError(f"{path}: missing (listed by the gallery's index)")
  if path.stat().st_size != expected:
    raise IndexCorruptError(
        f"{path}: size {path.stat().st_size} does not match the index ({expected} bytes)"
    )


# Thumbnails `compact` copies at a time (12 KB each at 64 px: 48 MB a block).
WRITE_BLOCK = 4096


def _write_chunk(folder: Path, ids: np.ndarray, side: int, blocks) -> Path:
  """One thumbnail chunk under a fresh name (never overwrites one); returns its ids file.

  `blocks` yields the side x side thumbnails of `ids` in order, in arrays of
  any length; they fill a memory-mapped .npy file, so only one block is in
  memory at a time. The thumbnails are written first and the ids last: a
  chunk whose ids file exists is complete.
  """
  folder.mkdir(parents=True, exist_ok=True)
  stem = f"chunk-{time.time_ns():020d}"
  while (folder / (stem + _IDS)).exists():
    stem = f"chunk-{time.time_ns():020d}"
  tmp = folder / f".tmp-{stem}{_THUMBS}"  # outside the chunk-* pattern until complete
  shape = (len(ids), side, side, 3)
  out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
  start = 0
  for block in blocks:
    out[start : start + len(block)] = block
    start += len(block)
  if start != len(ids):
    raise ValueError(f"thumbnail chunk: {start} thumbnails for {len(ids)} ids")
  out.flush()
  del out  # unmapped before the file is synced and renamed
  _fsync(tmp)
  os.replace(tmp, folder / (stem + _THUMBS))
  tmp = folder / f".tmp-{stem}{_IDS}"
  with open(tmp, "wb") as f:
    np.save(f, np.ascontiguousarray(ids))
  _fsync(tmp)
  os.replace(tmp, folder / (stem + _IDS))
  return folder / (stem + _IDS)


def _fsync(path: Path) -> None:
  with open(path, "rb+") as f:
    os.fsync(f.fileno())


def _read_chunk(ids_path: Path) -> tuple[np.ndarray, np.ndarray]:
  """(ids in memory, thumbnails memory-mapped read-only) of a chunk's ids file."""
  thumbs_path = ids_path.with_name(ids_path.name[: -len(_IDS)] + _THUMBS)
  return np.load(ids_path), np.load(thumbs_path, mmap_mode="r")


def _folder_bytes(folder: Path) -> int:
  return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


class ShardedGallery:
  """Several gallery shards used as one (same interface as `Gallery` for queries)."""

  def __init__(self, shards: list[Gallery]):
    self.shards = shards
    self.info = shards[0].info
    self.index = ShardedIndex([g.index for g in shards])
    self._shard_of = {int(i): n for n, g in enumerate(shards) for i in g.index.ids}

  def __len__(self) -> int:
    return len(self.index)

  def candidates(self, ids) -> dict[int, dict]:
    return candidate_info(self.index, ids)

  def thumbs(self, ids: np.ndarray) -> np.ndarray:
    s = self.info["thumb_size"]
    out = np.zeros((len(ids), s, s, 3), np.uint8)
    for n, id_ in enumerate(np.asarray(ids).tolist()):
      if id_ >= 0:
        out[n] = self.shards[self._shard_of[id_]].thumbs(np.array([id_]))[0]
    return out

  def verify(self) -> dict:
    per = [g.verify() for g in self.shards]
    return {
        "size": sum(p["size"] for p in per),
        "thumbnail_chunks": sum(p["thumbnail_chunks"] for p in per),
        "shards": len(per),
        "ok": True,
    }

  def compact(self) -> dict:
    """Compact every shard (each atomic on its own: each answers the same throughout)."""
    dropped = sum(g.compact()["dropped"] for g in self.shards)
    return {"dropped": dropped, "size": len(self)}

  def stats(self) -> dict:
    per = [g.stats() for g in self.shards]
    syncs = [p["last_sync"] for p in per if p["last_sync"]]
    return {
        "size": sum(p["size"] for p in per),
        "tombstones": sum(p["tombstones"] for p in per),
        "bytes": sum(p["bytes"] for p in per),
        "last_sync": max(syncs) if syncs else None,
        "shards": len(per),
        "per_shard": [{**p, "shards": f"{i}/{len(per)}"} for i, p in enumerate(per)],
    }


def shard_directory(directory, process_index: int, process_count: int) -> Path:
  """Where host `process_index` of `process_count` writes its gallery shard."""
  return Path(directory) / shard_dir_name(process_index, process_count)
