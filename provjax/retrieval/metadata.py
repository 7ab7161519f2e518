"""Per-image metadata (id -> path, sha256, added-at) in SQLite beside the index vectors.

SQLite gives an indexed ``sha256`` lookup (to recognise a re-added identical file) and a
single-file, transactional store that the index manifest can checksum like any other file.
The ``sha256`` column is UNIQUE where not NULL, so one file content maps to exactly one id.

Three more things live here so that one atomic index save commits them together with the
vectors: tombstones (``images.removed_at``: the row is hidden from searches until the next
compaction), ``retired`` ids (rows a compaction dropped; their id stays reserved for their
content, so an id never changes meaning) and ``properties`` (small key -> text facts such as
the time of the last sync).
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
    added_at TEXT NOT NULL,
    removed_at TEXT
);
CREATE TABLE IF NOT EXISTS retired (id INTEGER PRIMARY KEY, sha256 TEXT);
CREATE TABLE IF NOT EXISTS properties (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
    self._conn.executescript(_SCHEMA)
    columns = [row[1] for row in self._conn.execute("PRAGMA table_info(images)")]
    if "removed_at" not in columns:  # written by format 1, before tombstones existed
      self._conn.execute("ALTER TABLE images ADD COLUMN removed_at TEXT")

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
        # A retired id comes back with its content (the caller found it by content_id).
        self._conn.executemany("DELETE FROM retired WHERE id = ?", [(r[0],) for r in rows])
    except sqlite3.IntegrityError as e:
      raise ValueError(f"metadata insert failed: {e}") from None

  def lookup(self, id_: int) -> dict | None:
    """Returns ``{"id", "path", "sha256", "added_at", "removed_at"}`` for ``id_``, or None."""
    row = self._conn.execute(
        "SELECT id, path, sha256, added_at, removed_at FROM images WHERE id = ?", (int(id_),)
    ).fetchone()
    if row is None:
      return None
    return dict(zip(("id", "path", "sha256", "added_at", "removed_at"), row))

  def find_sha256(self, sha: str) -> int | None:
    """Returns the id whose file has this sha256 and is not removed, or None."""
    row = self._conn.execute(
        "SELECT id FROM images WHERE sha256 = ? AND removed_at IS NULL", (sha,)
    ).fetchone()
    return None if row is None else row[0]

  def content_id(self, sha: str) -> int | None:
    """The id this content was ever given (live, tombstoned or retired), or None."""
    row = self._conn.execute(
        "SELECT id FROM images WHERE sha256 = ? UNION SELECT id FROM retired WHERE sha256 = ?",
        (sha, sha),
    ).fetchone()
    return None if row is None else row[0]

  def max_id(self) -> int:
    """The largest id ever used (retired ones included), -1 when none: ids are never reused."""
    row = self._conn.execute(
        "SELECT MAX(id) FROM (SELECT id FROM images UNION ALL SELECT id FROM retired)"
    ).fetchone()
    return -1 if row[0] is None else row[0]

  def remove(self, ids: Sequence[int], removed_at: str | None = None) -> None:
    """Tombstones rows: they stay stored (and keep their id) but searches skip them.

    Raises:
        KeyError: if an id is not a live row; nothing is changed then.
    """
    ids = [int(i) for i in ids]
    live = {r[0] for r in self._select_ids("SELECT id FROM images WHERE removed_at IS NULL", ids)}
    if len(live) != len(set(ids)):
      raise KeyError(f"not live ids: {sorted(set(ids) - live)[:10]}")
    with self._conn:
      self._conn.executemany(
          "UPDATE images SET removed_at = ? WHERE id = ?",
          [(removed_at or utc_now(), i) for i in ids],
      )

  def relink(self, ids: Sequence[int], paths: Sequence[str | None]) -> None:
    """Points rows at new paths and makes tombstoned ones live again (their content is back).

    Raises:
        KeyError: if an id is not stored; nothing is changed then.
    """
    ids = [int(i) for i in ids]
    missing = set(ids) - self.existing_ids(ids)
    if missing:
      raise KeyError(f"ids not in the index: {sorted(missing)[:10]}")
    with self._conn:
      self._conn.executemany(
          "UPDATE images SET path = ?, removed_at = NULL WHERE id = ?", list(zip(paths, ids))
      )

  def removed_ids(self) -> list[int]:
    """Tombstoned ids, ascending."""
    q = "SELECT id FROM images WHERE removed_at IS NOT NULL ORDER BY id"
    return [r[0] for r in self._conn.execute(q)]

  def retire(self, ids: Sequence[int]) -> None:
    """Drops rows (a compaction), keeping each id reserved for its content in ``retired``."""
    rows = [(int(i),) for i in ids]
    with self._conn:
      self._conn.executemany(
          "INSERT INTO retired (id, sha256) SELECT id, sha256 FROM images WHERE id = ?", rows
      )
      self._conn.executemany("DELETE FROM images WHERE id = ?", rows)

  def live_rows(self) -> list[tuple]:
    """``(id, path, sha256)`` of every row not removed, ordered by id."""
    q = "SELECT id, path, sha256 FROM images WHERE removed_at IS NULL ORDER BY id"
    return self._conn.execute(q).fetchall()

  def set_property(self, key: str, value: str) -> None:
    with self._conn:
      self._conn.execute(
          "INSERT OR REPLACE INTO properties (key, value) VALUES (?, ?)", (key, str(value))
      )

  def get_property(self, key: str) -> str | None:
    row = self._conn.execute("SELECT value FROM properties WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]

  def copy(self) -> "MetadataStore":
    """An independent in-memory copy (a compaction edits the copy, not the live store)."""
    mem = sqlite3.connect(":memory:", check_same_thread=False)
    self._conn.backup(mem)
    return MetadataStore(mem)

  def _select_ids(self, query: str, ids: list[int]) -> list[tuple]:
    """Runs ``query AND id IN (...)`` over ``ids`` in parts of 500 (SQLite's variable limit)."""
    out = []
    for start in range(0, len(ids), 500):
      part = ids[start : start + 500]
      out += self._conn.execute(f"{query} AND id IN ({','.join('?' * len(part))})", part).fetchall()
    return out

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
    return {
        r[0] for r in self._select_ids("SELECT id FROM images WHERE 1", list(set(map(int, ids))))
    }

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
