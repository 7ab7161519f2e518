"""Per-image metadata (id -> path, sha256, added-at) in SQLite beside the index vectors.

SQLite gives an indexed ``sha256`` lookup (to recognise a re-added identical file) and a
single-file, transactional store that the index manifest can checksum like any other file.
The ``sha256`` column is UNIQUE where not NULL, so one file content maps to exactly one id.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import sqlite3
import urllib.request
from typing import Iterable, Sequence

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    path TEXT,
    sha256 TEXT UNIQUE,
    added_at TEXT NOT NULL
)
"""


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
  """Hex sha256 of a file's bytes, read in chunks so large files need little memory."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(chunk_size), b""):
      h.update(chunk)
  return h.hexdigest()


def utc_now() -> str:
  """Current time as ISO-8601 UTC with microseconds, e.g. ``2026-11-21T10:00:00.000000+00:00``."""
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


class MetadataStore:
  """The ``images`` table of an index.

  Held in memory while the index is built and written to ``metadata.sqlite`` by
  :meth:`save`; :meth:`load` reads such a file back into memory, so the index directory on
  disk only ever changes through the index's atomic save.
  """

  def __init__(self, conn: sqlite3.Connection | None = None):
    # check_same_thread=False: a ShardedIndex may query shards from worker threads.
    self._conn = conn or sqlite3.connect(":memory:", check_same_thread=False)
    self._conn.execute(_SCHEMA)

  def __len__(self) -> int:
    return self._conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]

  def add(
      self,
      ids: Sequence[int],
      paths: Sequence[str | None],
      sha256s: Sequence[str | None],
      added_at: str | None = None,
  ) -> None:
    """Inserts rows in one transaction (all or nothing).

    Raises:
        ValueError: if an id or a non-NULL sha256 is already present.
    """
    added_at = added_at or utc_now()
    rows = [(int(i), p, s, added_at) for i, p, s in zip(ids, paths, sha256s)]
    try:
      with self._conn:
        self._conn.executemany(
            "INSERT INTO images (id, path, sha256, added_at) VALUES (?, ?, ?, ?)", rows
        )
    except sqlite3.IntegrityError as e:
      raise ValueError(f"metadata insert failed: {e}") from None

  def lookup(self, id_: int) -> dict | None:
    """Returns ``{"id", "path", "sha256", "added_at"}`` for ``id_``, or None."""
    row = self._conn.execute(
        "SELECT id, path, sha256, added_at FROM images WHERE id = ?", (int(id_),)
    ).fetchone()
    if row is None:
      return None
    return dict(zip(("id", "path", "sha256", "added_at"), row))

  def find_sha256(self, sha: str) -> int | None:
    """Returns the id whose file has this sha256, or None."""
    row = self._conn.execute("SELECT id FROM images WHERE sha256 = ?", (sha,)).fetchone()
    return None if row is None else row[0]

  def find_sha256_many(self, shas: Iterable[str | None]) -> dict[str, int]:
    """Maps each of ``shas`` already stored to its id (one query per 500 hashes)."""
    wanted = [s for s in set(shas) if s is not None]
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
      part = wanted[start : start + 500]
      q = f"SELECT sha256, id FROM images WHERE sha256 IN ({','.join('?' * len(part))})"
      found.update(self._conn.execute(q, part).fetchall())
    return found

  def existing_ids(self, ids: Iterable[int]) -> set[int]:
    """The subset of ``ids`` already stored."""
    wanted = [int(i) for i in set(ids)]
    found: set[int] = set()
    for start in range(0, len(wanted), 500):
      part = wanted[start : start + 500]
      q = f"SELECT id FROM images WHERE id IN ({','.join('?' * len(part))})"
      found.update(r[0] for r in self._conn.execute(q, part))
    return found

  def rows(self) -> list[tuple]:
    """All rows ``(id, path, sha256, added_at)`` ordered by id (for comparisons/tests)."""
    return self._conn.execute(
        "SELECT id, path, sha256, added_at FROM images ORDER BY id"
    ).fetchall()

  def save(self, path: str) -> None:
    """Writes the table to a new SQLite file at ``path`` (must not exist) and fsyncs it."""
    dst = sqlite3.connect(path)
    try:
      self._conn.backup(dst)
    finally:
      dst.close()
    fd = os.open(path, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)

  @classmethod
  def load(cls, path: str) -> "MetadataStore":
    """Reads a file written by :meth:`save` into memory (the file is not kept open)."""
    # Read-only URI so a missing file raises instead of being created empty.
    uri = f"file:{urllib.request.pathname2url(os.path.abspath(path))}?mode=ro"
    src = sqlite3.connect(uri, uri=True)
    mem = sqlite3.connect(":memory:", check_same_thread=False)
    try:
      src.backup(mem)
    finally:
      src.close()
    return cls(mem)
