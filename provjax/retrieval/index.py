"""`Index`: a descriptor index with ScaNN (default) or exact search, metadata and atomic saves.

On disk an index is one directory::

    segments/NNNNNN.vectors.npy  float32 [rows, dim]  descriptors added by one save (truth)
    segments/NNNNNN.ids.npy      int64 [rows]         their user ids, row-aligned
    metadata.sqlite   images(id, path, sha256, added_at, removed_at), retired ids, properties
    scann/            the serialized ScaNN searcher (scann backend only)
    manifest.json     format version, backend, dim, count, segments, params, sha256 of every file

``save`` writes everything into a temporary directory beside the target, fsyncs it, writes
``manifest.json`` last, then swaps the directory into place by renames, so a reader sees the
old index or the new one, never a mixture; ``load`` checks every file against the manifest.

Segments make a save cost what was added, not what is stored: rows are never rewritten (a
removal is a tombstone in the metadata), so a save hard-links the segments of the index it
was loaded from (or last saved to) into the new directory, with their checksums from that
manifest, and writes only the rows added since as one new segment. The ScaNN files are linked
the same way while the searcher is unchanged. What a save still rewrites in full is the SQLite
metadata (about 1 % of the bytes of a gallery entry). ``compact`` starts over with one segment.
Indexes of format 1 and 2 (one ``vectors.npy`` / ``ids.npy``) are read, and their next save
writes their rows as the first segment.

Vectors must be L2-normalised by the caller: the metric is the inner product (``"dot"``), which
equals cosine similarity on unit vectors. They are stored as float32.

Incremental adds with ScaNN: a ScaNN searcher cannot grow once built, so the index keeps the
rows added since the last build as an exact "delta": a search scores them with the JAX exact
backend and merges the result with ScaNN's. When the delta outgrows ``max(1000, 1%)`` of the
searcher's rows the searcher is rebuilt over all rows (parameters re-chosen for the new size)
on the next search or save. Results therefore always include every added row.

Removal is a tombstone (``remove``): the row keeps its vector and id but every search skips it
(it over-fetches k + tombstones and drops them), and the removal is committed by the same atomic
save as everything else. ``compact`` returns the index rebuilt without tombstoned rows; their
ids stay reserved for their content (``content_id``), so an id never changes meaning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from typing import NamedTuple, Sequence

import numpy as np

from provjax.retrieval import exact, scann_backend
from provjax.retrieval.merge import merge_topk
from provjax.retrieval.metadata import MetadataStore, utc_now

FORMAT_VERSION = 3  # 2: tombstones, retired ids, properties; 3: append-only segments
READABLE_VERSIONS = (1, 2, 3)
MANIFEST = "manifest.json"
VECTORS = "vectors.npy"  # formats 1 and 2: all rows in one file
IDS = "ids.npy"
SEGMENTS_DIR = "segments"
METADATA = "metadata.sqlite"
SCANN_DIR = "scann"
BACKENDS = ("scann", "exact")


class IndexCorruptError(ValueError):
  """An index directory is incomplete or a file does not match its manifest checksum."""


class AddResult(NamedTuple):
  """What :meth:`Index.add` did.

  Attributes:
      added: int64 ids that were added, in input order.
      duplicates: ``{skipped id: id already indexed with the same sha256}`` for rows whose
          file content (sha256) was already in the index or earlier in the same call.
  """

  added: np.ndarray
  duplicates: dict[int, int]


def _sha256_of(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 22), b""):
      h.update(chunk)
  return h.hexdigest()


def _fsync_path(path: str) -> None:
  """fsyncs a file or directory so a later rename cannot expose unwritten data."""
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _save_npy(path: str, array: np.ndarray) -> None:
  with open(path, "wb") as f:
    np.save(f, array, allow_pickle=False)
    f.flush()
    os.fsync(f.fileno())


def file_info(path: str) -> dict:
  """{"sha256", "bytes"} of a file, as a manifest lists it."""
  return {"sha256": _sha256_of(path), "bytes": os.path.getsize(path)}


def _identity(path: str) -> tuple:
  """Which file this is: a file another save wrote under the same name differs here."""
  st = os.stat(path)
  return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


@dataclasses.dataclass
class _Saved:
  """The files of the index as last loaded or saved: the next save links them, unchanged."""

  origin: str | None = None  # the directory that holds them
  files: dict = dataclasses.field(default_factory=dict)  # rel -> {"sha256", "bytes"}
  segments: list = dataclasses.field(default_factory=list)  # [{"name", "rows"}], in row order
  scann: bool = False  # the origin's scann/ holds the current searcher
  identities: dict = dataclasses.field(default_factory=dict)  # rel -> _identity


def _link_all(saved: _Saved, prefix: str, tmp: str, files: dict) -> bool:
  """Hard-links the saved files under `prefix` into `tmp` and records their manifest entries.

  Returns False, with nothing linked, when a file is gone or is no longer the one saved
  (another save replaced the directory) or the file system refuses the link.
  """
  linked = []
  try:
    for rel in [r for r in saved.files if r.startswith(prefix)]:
      source = os.path.join(saved.origin or "", rel)
      if saved.origin is None or _identity(source) != saved.identities.get(rel):
        raise FileNotFoundError(source)
      target = os.path.join(tmp, rel)
      os.makedirs(os.path.dirname(target), exist_ok=True)
      os.link(source, target)
      linked.append(rel)
      files[rel] = saved.files[rel]
  except OSError:
    for rel in linked:
      os.remove(os.path.join(tmp, rel))
      del files[rel]
    return False
  return True


def _leftovers(target: str, kind: str) -> list[str]:
  """Sibling directories ``.NAME.<kind>-*`` that an interrupted :meth:`Index.save` left."""
  parent, name = os.path.split(target)
  if not os.path.isdir(parent):
    return []
  return sorted(
      os.path.join(parent, f) for f in os.listdir(parent) if f.startswith(f".{name}.{kind}-")
  )


def committed_dir(directory: str | os.PathLike) -> str:
  """The directory holding the committed index at ``directory`` (read-only; for loaders).

  :meth:`Index.save` renames the old index aside, then the new one into place; a kill between
  the two leaves no index at ``directory`` but a complete ``.NAME.old-*`` sibling: the state
  before the save, which is then the committed one.
  """
  target = os.path.abspath(os.fspath(directory))
  if os.path.exists(target):
    return target
  old = [d for d in _leftovers(target, "old") if os.path.isfile(os.path.join(d, MANIFEST))]
  return old[0] if old else target


def recover_interrupted_save(directory: str | os.PathLike) -> None:
  """Before a save (the single writer): put back an index a killed save left aside, and
  delete the temporary and superseded copies it left, which are never read."""
  target = os.path.abspath(os.fspath(directory))
  committed = committed_dir(target)
  if committed != target:
    os.rename(committed, target)
    _fsync_path(os.path.dirname(target))
  for leftover in _leftovers(target, "tmp") + _leftovers(target, "old"):
    shutil.rmtree(leftover, ignore_errors=True)


class Index:
  """Inner-product nearest-neighbour index over L2-normalised float32 descriptors.

  Args:
      dim: descriptor dimension.
      backend: ``"scann"`` (approximate, fast; default) or ``"exact"`` (JAX matmul top-k,
          the reference for recall).
      metric: only ``"dot"`` (inner product; cosine on the unit vectors callers provide).
      scann_params: fixed ScaNN parameters (see
          :func:`provjax.retrieval.scann_backend.scann_params`); by default they are chosen
          from the database size at every (re)build.
  """

  def __init__(
      self, dim: int, backend: str = "scann", metric: str = "dot", scann_params: dict | None = None
  ):
    if backend not in BACKENDS:
      raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if metric != "dot":
      raise ValueError(
          f"unsupported metric {metric!r}; only 'dot' (inner product) is "
          "supported: L2-normalise vectors for cosine similarity"
      )
    if dim < 1:
      raise ValueError(f"dim must be >= 1, got {dim}")
    self.dim = int(dim)
    self.backend = backend
    self.metric = metric
    self._fixed_params = dict(scann_params) if scann_params else None
    self._vecs = np.zeros((0, self.dim), np.float32)  # capacity buffer; rows [:_n] valid
    self._ids = np.zeros((0,), np.int64)
    self._n = 0
    self._meta = MetadataStore()
    self._removed = np.zeros((0,), np.int64)  # tombstoned ids, sorted (mirrors the metadata)
    self._searcher = None
    self._searcher_rows = 0  # rows [0, _searcher_rows) are in the ScaNN searcher
    self._searcher_params: dict | None = None
    self._device_db = None  # (row count, device array) cache for the exact backend
    self._saved = _Saved()  # what the last load or save put on disk, for the next save to reuse

  # ----------------------------------------------------------------------------- contents
  def __len__(self) -> int:
    """Rows a search can return (tombstoned rows are stored but not counted)."""
    return self._n - len(self._removed)

  @property
  def removed(self) -> np.ndarray:
    """Tombstoned ids (sorted): stored until :meth:`compact`, never returned by a search."""
    return self._removed.copy()

  @property
  def vectors(self) -> np.ndarray:
    """Read-only float32 ``[N, dim]`` view of the stored vectors (row order = add order)."""
    v = self._vecs[: self._n]
    v.flags.writeable = False
    return v

  @property
  def ids(self) -> np.ndarray:
    """Read-only int64 ``[N]`` view of the ids, aligned with :attr:`vectors`."""
    i = self._ids[: self._n]
    i.flags.writeable = False
    return i

  @property
  def params(self) -> dict | None:
    """ScaNN parameters of the current searcher (None for exact or before the first build)."""
    return None if self._searcher_params is None else dict(self._searcher_params)

  def lookup(self, id_: int) -> dict:
    """Metadata of one id: ``{"id", "path", "sha256", "added_at"}``.

    Raises:
        KeyError: if the id is not in the index.
    """
    row = self._meta.lookup(id_)
    if row is None:
      raise KeyError(id_)
    return row

  def find_sha256(self, sha: str) -> int | None:
    """The id of the indexed (not removed) file with this sha256, or None."""
    return self._meta.find_sha256(sha)

  def content_id(self, sha: str) -> int | None:
    """The id this content was ever given here (even if removed or compacted away), or None."""
    return self._meta.content_id(sha)

  def max_id(self) -> int:
    """The largest id ever used, retired ones included (-1 when none)."""
    return self._meta.max_id()

  def live_entries(self) -> list[tuple]:
    """``(id, path, sha256)`` of every searchable row, ordered by id."""
    return self._meta.live_rows()

  def set_property(self, key: str, value: str) -> None:
    """Stores a small fact (e.g. the last sync time), committed by the next save."""
    self._meta.set_property(key, value)

  def get_property(self, key: str) -> str | None:
    return self._meta.get_property(key)

  # ---------------------------------------------------------------------- remove/compact
  def remove(self, ids: Sequence[int]) -> None:
    """Tombstones live ids: searches stop returning them at once; :meth:`compact` drops them.

    Raises:
        KeyError: if an id is not a live row; nothing is changed then.
    """
    self._meta.remove(ids)
    self._removed = np.asarray(self._meta.removed_ids(), np.int64)

  def relink(self, ids: Sequence[int], paths: Sequence[str | None]) -> None:
    """Points stored ids at new paths; a tombstoned id becomes searchable again.

    Used when a file was renamed or its removed content came back: the content keeps its id.

    Raises:
        KeyError: if an id is not stored (compacted-away ids need :meth:`add`).
    """
    self._meta.relink(ids, paths)
    self._removed = np.asarray(self._meta.removed_ids(), np.int64)

  def compact(self) -> "Index":
    """A new index holding only the live rows (searcher rebuilt on first use); self is unchanged.

    The dropped rows' ids stay reserved for their content (see :meth:`content_id`).
    """
    out = Index(self.dim, backend=self.backend, metric=self.metric, scann_params=self._fixed_params)
    out._meta = self._meta.copy()
    out._meta.retire(self._removed.tolist())
    keep = ~np.isin(self._ids[: self._n], self._removed)
    out._append(self._ids[: self._n][keep], self._vecs[: self._n][keep])
    return out

  # --------------------------------------------------------------------------------- add
  def add(
      self,
      ids: Sequence[int],
      vectors: np.ndarray,
      paths: Sequence[str] | None = None,
      sha256s: Sequence[str] | None = None,
  ) -> AddResult:
    """Adds descriptors (incrementally; any number of calls).

    A row whose ``sha256`` is already indexed (or repeats an earlier row of this call) is
    the same file again: it is skipped and reported in ``AddResult.duplicates``.

    Args:
        ids: non-negative int ids, unique across the index (-1 is the "no result" id).
        vectors: float ``[M, dim]``, L2-normalised by the caller.
        paths: optional file path per row (stored in metadata).
        sha256s: optional hex sha256 of each file's bytes (see
            :func:`provjax.retrieval.metadata.sha256_file`).

    Returns:
        An :class:`AddResult` with the ids added and the duplicates skipped.

    Raises:
        ValueError: on shape/length mismatch, non-finite values, negative ids, or an id
            already present; nothing is added then.
    """
    ids = np.asarray(ids, np.int64).reshape(-1)
    vectors = np.asarray(vectors, np.float32)
    m = ids.shape[0]
    if vectors.ndim != 2 or vectors.shape != (m, self.dim):
      raise ValueError(f"vectors must have shape ({m}, {self.dim}), got {vectors.shape}")
    paths = [None] * m if paths is None else [None if p is None else str(p) for p in paths]
    sha256s = [None] * m if sha256s is None else [s or None for s in sha256s]
    if len(paths) != m or len(sha256s) != m:
      raise ValueError(f"got {m} ids but {len(paths)} paths and {len(sha256s)} sha256s")
    if m and ids.min() < 0:
      raise ValueError("ids must be non-negative (-1 marks empty search results)")
    if len(np.unique(ids)) != m:
      raise ValueError("ids repeat within one add() call")
    if not np.isfinite(vectors).all():
      raise ValueError("vectors contain NaN or inf")

    known = self._meta.find_sha256_many(sha256s) if self._n else {}
    keep, duplicates = [], {}
    for row, (id_, sha) in enumerate(zip(ids.tolist(), sha256s)):
      if sha is not None and sha in known:
        duplicates[id_] = known[sha]
      else:
        keep.append(row)
        if sha is not None:
          known[sha] = id_
    keep = np.asarray(keep, np.int64)
    taken = self._meta.existing_ids(ids[keep].tolist()) if self._n else set()
    if taken:
      raise ValueError(f"ids already in the index: {sorted(taken)[:10]}")
    # Metadata first: it is one transaction, so a failure leaves the index unchanged.
    self._meta.add(
        ids[keep].tolist(), [paths[r] for r in keep], [sha256s[r] for r in keep], added_at=utc_now()
    )
    self._append(ids[keep], vectors[keep])
    return AddResult(added=ids[keep].copy(), duplicates=duplicates)

  def _append(self, ids: np.ndarray, vectors: np.ndarray) -> None:
    m = ids.shape[0]
    if self._n + m > self._vecs.shape[0]:
      # Doubling keeps repeated small adds amortised O(rows added).
      cap = max(self._n + m, 2 * self._vecs.shape[0], 1024)
      vecs = np.zeros((cap, self.dim), np.float32)
      vecs[: self._n] = self._vecs[: self._n]
      idbuf = np.zeros((cap,), np.int64)
      idbuf[: self._n] = self._ids[: self._n]
      self._vecs, self._ids = vecs, idbuf
    self._vecs[self._n : self._n + m] = vectors
    self._ids[self._n : self._n + m] = ids
    self._n += m
    self._device_db = None

  # ------------------------------------------------------------------------------ search
  def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner-product search.

    Args:
        queries: float ``[Q, dim]`` (or ``[dim]`` for one query), L2-normalised.
        k: neighbours per query.

    Returns:
        ``(scores float32 [Q, k], ids int64 [Q, k])``, best first; ties by lower row
        (insertion order); ``-inf`` / ``-1`` pad when the index holds fewer than k rows.
    """
    queries = np.asarray(queries, np.float32)
    if queries.ndim == 1:
      queries = queries[None]
    if queries.ndim != 2 or queries.shape[1] != self.dim:
      raise ValueError(f"queries must have shape (Q, {self.dim}), got {queries.shape}")
    if k < 1:
      raise ValueError(f"k must be >= 1, got {k}")
    if self._n == 0:
      q = queries.shape[0]
      return np.full((q, k), -np.inf, np.float32), np.full((q, k), -1, np.int64)
    # Over-fetch by the tombstone count: after dropping them, k live rows remain.
    fetch = min(k + len(self._removed), self._n)
    if self.backend == "exact":
      scores, rows = exact.topk(self._exact_db(), queries, fetch, n_valid=self._n)
    else:
      scores, rows = self._scann_search(queries, fetch)
    ids = np.where(rows >= 0, self._ids[np.maximum(rows, 0)], -1)
    if len(self._removed) or fetch < k:
      ids = np.where(np.isin(ids, self._removed), -1, ids)
      scores, ids = merge_topk([scores], [ids], k)
    return scores, ids

  def _exact_db(self):
    """Device copy of the whole capacity buffer, refreshed after adds.

    Searching the buffer with ``n_valid`` rather than the ``[:N]`` slice keeps the array
    shape fixed until the buffer doubles, so adds do not force a recompilation.
    """
    if self._device_db is None or self._device_db[0] != self._n:
      self._device_db = (self._n, exact.to_device(self._vecs))
    return self._device_db[1]

  def _delta_rows(self) -> np.ndarray:
    """Rows added since the ScaNN build, zero-padded to a power of two (>= 1024) rows so
    that a delta growing one add at a time reuses a few compiled exact searches."""
    count = self._n - self._searcher_rows
    size = max(1024, 1 << (count - 1).bit_length())
    out = np.zeros((size, self.dim), np.float32)
    out[:count] = self._vecs[self._searcher_rows : self._n]
    return out

  def _delta_limit(self) -> int:
    return max(1000, self._searcher_rows // 100)

  def _ensure_searcher(self) -> None:
    """(Re)builds the ScaNN searcher when missing or when the exact delta is too large."""
    if self._searcher is not None and self._n - self._searcher_rows <= self._delta_limit():
      return
    db = self._vecs[: self._n]
    if self._fixed_params:
      params = self._fixed_params
      self._searcher = scann_backend.build_searcher(db, 10, params)
    else:
      self._searcher, params = scann_backend.build_default(db, 10)
    self._searcher_rows = self._n
    self._searcher_params = params
    self._saved.scann = False

  def _scann_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    self._ensure_searcher()
    scores, rows = scann_backend.search_with(self._searcher, self._searcher_params, queries, k)
    if self._n == self._searcher_rows:
      return scores, rows
    d_scores, d_rows = exact.topk(
        self._delta_rows(), queries, k, n_valid=self._n - self._searcher_rows
    )
    d_rows = np.where(d_rows >= 0, d_rows + self._searcher_rows, -1)
    return merge_topk([scores, d_scores], [rows, d_rows], k)

  # --------------------------------------------------------------------------- save/load
  def save(self, directory: str | os.PathLike) -> None:
    """Saves atomically to ``directory`` (replacing an index already there).

    Files go to a temporary sibling directory, are fsynced, ``manifest.json`` (with the
    sha256 of every file) is written last, and the directory is renamed into place; an
    existing index is first renamed aside and deleted only after the new one is in place.

    Raises:
        FileExistsError: if ``directory`` exists, is not empty and is not an index (no
            manifest): it is never overwritten.
    """
    target = os.path.abspath(os.fspath(directory))
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    recover_interrupted_save(target)
    if (
        os.path.exists(target)
        and os.listdir(target)
        and not os.path.isfile(os.path.join(target, MANIFEST))
    ):
      raise FileExistsError(f"{target}: exists and is not a provjax index; not replacing")
    if self.backend == "scann" and self._n:
      self._ensure_searcher()
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    try:
      saved = self._write_files(tmp)
      _fsync_path(tmp)
      self._swap_into_place(tmp, target)
    except BaseException:
      shutil.rmtree(tmp, ignore_errors=True)
      raise
    self._saved = dataclasses.replace(saved, origin=target)  # renames keep the identities

  def _write_files(self, tmp: str) -> "_Saved":
    """Writes (or links) every file into `tmp`, manifest last; returns what is there."""
    files: dict[str, dict] = {}
    segments = self._write_segments(tmp, files)
    self._meta.save(os.path.join(tmp, METADATA))
    files[METADATA] = file_info(os.path.join(tmp, METADATA))
    linked_scann = False
    if self._searcher is not None:
      linked_scann = self._saved.scann and _link_all(self._saved, SCANN_DIR + "/", tmp, files)
      if not linked_scann:
        scann_dir = os.path.join(tmp, SCANN_DIR)
        shutil.rmtree(scann_dir, ignore_errors=True)
        scann_backend.save(self._searcher, scann_dir)
        for f in sorted(os.listdir(scann_dir)):
          _fsync_path(os.path.join(scann_dir, f))
          files[f"{SCANN_DIR}/{f}"] = file_info(os.path.join(scann_dir, f))
        _fsync_path(scann_dir)
    manifest = {
        "format_version": FORMAT_VERSION,
        "backend": self.backend,
        "metric": self.metric,
        "dim": self.dim,
        "count": self._n,
        "segments": segments,
        "scann_rows": self._searcher_rows if self._searcher is not None else 0,
        "params": self._searcher_params,
        "fixed_params": self._fixed_params,
        "saved_at": utc_now(),
        "files": dict(sorted(files.items())),
    }
    path = os.path.join(tmp, MANIFEST)
    with open(path, "w") as f:
      json.dump(manifest, f, indent=1)
      f.flush()
      os.fsync(f.fileno())
    identities = {rel: _identity(os.path.join(tmp, rel)) for rel in files}
    return _Saved(None, files, segments, self._searcher is not None, identities)

  def _write_segments(self, tmp: str, files: dict) -> list[dict]:
    """Links the saved segments into `tmp` and writes the rows added since as a new one.

    Saved rows never change, so their files (and checksums) carry over as they are; if
    they cannot be linked (the old directory is gone, or on another file system), all
    rows are written again as one segment.
    """
    seg_dir = os.path.join(tmp, SEGMENTS_DIR)
    os.makedirs(seg_dir)
    linked = _link_all(self._saved, SEGMENTS_DIR + "/", tmp, files)
    segments = list(self._saved.segments) if linked else []
    start = sum(s["rows"] for s in segments)
    if self._n > start:
      name = f"{int(segments[-1]['name']) + 1 if segments else 0:06d}"
      for suffix, rows in ((".vectors.npy", self._vecs), (".ids.npy", self._ids)):
        rel = f"{SEGMENTS_DIR}/{name}{suffix}"
        _save_npy(os.path.join(tmp, rel), rows[start : self._n])
        files[rel] = file_info(os.path.join(tmp, rel))
      segments.append({"name": name, "rows": self._n - start})
    _fsync_path(seg_dir)
    return segments

  @staticmethod
  def _swap_into_place(tmp: str, target: str) -> None:
    parent, name = os.path.split(target)
    old = None
    if os.path.exists(target):
      old = os.path.join(parent, f".{name}.old-{uuid.uuid4().hex[:8]}")
      os.rename(target, old)
    try:
      os.rename(tmp, target)
    except BaseException:
      if old is not None:  # put the previous index back
        os.rename(old, target)
      raise
    _fsync_path(parent)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)

  @classmethod
  def load(cls, directory: str | os.PathLike, verify: bool = True) -> "Index":
    """Loads an index written by :meth:`save`.

    Args:
        directory: the index directory.
        verify: check every file's sha256 against the manifest (sizes are always checked).

    Raises:
        IndexCorruptError: on a missing manifest or file, a checksum or size mismatch, or
            contents inconsistent with the manifest; the message names the file.
    """
    root = committed_dir(directory)
    mpath = os.path.join(root, MANIFEST)
    if not os.path.isfile(mpath):
      raise IndexCorruptError(f"{mpath}: missing (not a provjax index, or save interrupted)")
    try:
      with open(mpath) as f:
        manifest = json.load(f)
      files = manifest["files"]
      version = manifest["format_version"]
    except (ValueError, KeyError, TypeError) as e:
      raise IndexCorruptError(f"{mpath}: unreadable manifest ({e})") from None
    if version not in READABLE_VERSIONS:
      raise IndexCorruptError(
          f"{mpath}: format version {version} not supported "
          f"(this provjax reads {READABLE_VERSIONS})"
      )
    segments = manifest.get("segments")
    for rel in _row_files(segments) + [METADATA]:
      if rel not in files:
        raise IndexCorruptError(f"{mpath}: manifest does not list {rel}")
    for rel, info in files.items():
      if os.path.isabs(rel) or os.path.normpath(rel).startswith(".."):
        raise IndexCorruptError(f"{mpath}: file entry {rel!r} points outside the index")
      path = os.path.join(root, rel)
      if not os.path.isfile(path):
        raise IndexCorruptError(f"{path}: missing")
      if os.path.getsize(path) != info["bytes"]:
        raise IndexCorruptError(
            f"{path}: size {os.path.getsize(path)} does not match "
            f"manifest ({info['bytes']} bytes)"
        )
      if verify and _sha256_of(path) != info["sha256"]:
        raise IndexCorruptError(
            f"{path}: checksum mismatch (sha256 differs from manifest); the file is corrupt"
        )

    index = cls(
        manifest["dim"],
        backend=manifest["backend"],
        metric=manifest["metric"],
        scann_params=manifest.get("fixed_params"),
    )
    n = manifest["count"]
    parts = segments or [{"name": None, "rows": n}]
    if sum(part["rows"] for part in parts) != n:
      raise IndexCorruptError(f"{mpath}: segment rows do not add up to count {n}")
    index._vecs = np.zeros((n, index.dim), np.float32)
    index._ids = np.zeros((n,), np.int64)
    start = 0
    for part, (vec_rel, id_rel) in zip(parts, _pairs(_row_files(segments))):
      stop = start + part["rows"]
      index._vecs[start:stop] = _load_rows(root, vec_rel, (part["rows"], index.dim), np.float32)
      index._ids[start:stop] = _load_rows(root, id_rel, (part["rows"],), np.int64)
      start = stop
    index._n = n
    index._meta = MetadataStore.load(os.path.join(root, METADATA))
    index._removed = np.asarray(index._meta.removed_ids(), np.int64)
    if len(index._meta) != n:
      raise IndexCorruptError(
          f"{os.path.join(root, METADATA)}: {len(index._meta)} rows, " f"manifest says {n}"
      )
    scann_rows = manifest.get("scann_rows", 0)
    if not 0 <= scann_rows <= n or (scann_rows and index.backend != "scann"):
      raise IndexCorruptError(
          f"{mpath}: scann_rows {scann_rows} inconsistent with count "
          f"{n} and backend {index.backend!r}"
      )
    if scann_rows:
      index._searcher = scann_backend.load(os.path.join(root, SCANN_DIR))
      index._searcher_rows = scann_rows
      index._searcher_params = manifest["params"]
    index._saved = _Saved(
        origin=root,
        files=files,
        segments=segments or [],  # formats 1 and 2: the next save writes a first segment
        scann=bool(scann_rows),
        identities={rel: _identity(os.path.join(root, rel)) for rel in files},
    )
    return index


def _row_files(segments: list[dict] | None) -> list[str]:
  """Vector and id file of each segment, in row order (formats 1 and 2: the single pair)."""
  if segments is None:
    return [VECTORS, IDS]
  return [
      f"{SEGMENTS_DIR}/{s['name']}{suffix}"
      for s in segments
      for suffix in (".vectors.npy", ".ids.npy")
  ]


def _pairs(items: list) -> list[tuple]:
  return list(zip(items[::2], items[1::2]))


def _load_rows(root: str, rel: str, shape: tuple, dtype) -> np.ndarray:
  path = os.path.join(root, rel)
  try:
    rows = np.load(path, allow_pickle=False)
  except ValueError as e:
    raise IndexCorruptError(f"{path}: unreadable array ({e})") from None
  if rows.shape != shape or rows.dtype != dtype:
    raise IndexCorruptError(
        f"{path}: shape {rows.shape} {rows.dtype}, manifest says {shape} {np.dtype(dtype).name}"
    )
  return rows
