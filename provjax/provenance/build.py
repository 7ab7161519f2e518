"""`provjax index build`: make a gallery agree with a folder of originals (a sync).

Every run compares the folder with the gallery by path and content (sha256):
new files are added, files gone from the folder are tombstoned (searches skip
them at once, `Gallery.compact` drops them; `delete=False` keeps them, for
archives on removable storage), a path whose content changed is re-indexed
and its old entry removed, and a renamed file keeps its id. An id belongs to
its content: content that comes back gets its old id again.

A sync commits once, at the end, by the index's atomic swap, so a kill
leaves the gallery answering exactly as before the sync or after it. Work is
not lost meanwhile: descriptors and thumbnails of new files are saved to
`DIR/pending/` every `save_every` images, and a rerun reuses them.

A sync costs what changed, not what is stored: the index and the thumbnails
are append-only (earlier rows are linked, never rewritten or re-hashed; see
`provjax.retrieval.index`), the gallery is opened without re-hashing its
files (`provjax index verify` does that), and a file whose size and
modification time are those of the last sync is not read again: its sha256
comes from `DIR/file_hashes.sqlite` (`rehash=True` reads every file). As in
git, a file modified less than `RACY_NS` before the last sync started is read
again anyway: a rewrite within the clock's resolution keeps size and time.
Decoding and resizing run in worker processes for large syncs, one part ahead
of the descriptor, so the two overlap.

With `shard=(i, n)` the gallery is shard i of n and syncs the files it owns:
`owner(relative path, n) == i`, a stable hash of the path, so adding or
removing other files never moves a file between shards, and n hosts sync
their shards without talking to each other.
"""

from __future__ import annotations

from concurrent import futures
import contextlib
import dataclasses
import functools
import hashlib
import multiprocessing
import os
from pathlib import Path
import shutil
import sqlite3
import sys
import time

import numpy as np
from tqdm import tqdm

from provjax.data.images import failure_line, read_small, walk_images
from provjax.provenance.engine import Describer
from provjax.provenance.gallery import Gallery, shard_directory
from provjax.retrieval.metadata import sha256_file, utc_now

COUNTS = ("added", "removed", "changed", "unchanged", "moved", "duplicates", "kept_missing")
HASHES = "file_hashes.sqlite"
# Below this many files to decode, starting worker processes (each imports the package) costs
# more than it saves: threads decode them (Pillow releases the GIL).
PROCESS_MIN_FILES = 512
RACY_NS = 2_000_000_000  # file times are coarse (and coarser on network file systems)


def owner(relative_path: str, count: int) -> int:
  """The shard (of `count`) that owns a file, from its path relative to the folder."""
  digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") % count


@dataclasses.dataclass
class SyncPlan:
  """What a sync changes: ids to tombstone, ids to point at a new path, content to add."""

  remove: list[int]
  relink: list[tuple[int, str]]
  add: list[tuple[str, str]]  # (path, sha256), sorted by path
  changed: set[str]  # paths whose old entry is removed for new content
  counts: dict


def plan_sync(
    entries, found: dict[str, str], *, delete: bool = True, unreadable: frozenset = frozenset()
) -> SyncPlan:
  """Compare the gallery's live `entries` (id, path, sha256) with `found` {path: sha256}.

  `counts` says, per path, what happened: unchanged, moved (same content,
  new path: keeps its id), changed (new content at a known path: the old
  entry is removed), removed (gone from the folder), kept_missing (gone but
  kept, `delete=False`), duplicates (a second path with content already
  live). New paths to add are counted by the caller once they are indexed.
  An entry whose file is there but could not be read (`unreadable`) is kept.
  """
  paths_of: dict[str, list[str]] = {}
  for path, sha in sorted(found.items()):
    paths_of.setdefault(sha, []).append(path)
  counts = dict.fromkeys(COUNTS, 0)
  remove, relink, live_at, changed = [], [], {}, set()
  for id_, path, sha in entries:
    if path in found and found[path] == sha:
      counts["unchanged"] += 1
      live_at[sha] = path
    elif sha in paths_of:
      counts["moved"] += 1
      live_at[sha] = paths_of[sha][0]
      relink.append((id_, live_at[sha]))
    elif path in unreadable:
      live_at[sha] = path
    elif path in found:
      counts["changed"] += 1
      changed.add(path)
      remove.append(id_)
    elif delete:
      counts["removed"] += 1
      remove.append(id_)
    else:
      counts["kept_missing"] += 1
      live_at[sha] = path
  add = []
  for path, sha in sorted(found.items()):
    if sha not in live_at:
      live_at[sha] = path
      add.append((path, sha))
    elif live_at[sha] != path:
      counts["duplicates"] += 1
  return SyncPlan(remove, relink, add, changed, counts)


def open_or_create(
    directory,
    *,
    thumb_size: int,
    descriptor_name: str,
    backend: str,
    shard: tuple[int, int] | None = None,
    describer: Describer,
) -> Gallery:
  if (Path(directory) / "gallery.json").is_file():
    gallery = Gallery.open(directory, verify=False)  # sizes only: a sync re-hashes nothing stored
    if gallery.info["descriptor"] != descriptor_name:
      raise ValueError(
          f"{directory} was built with {gallery.info['descriptor']}, " f"not {descriptor_name}"
      )
    built = gallery.info.get("thumbnail_weight", 0.0)
    if built != describer.thumbnail_weight:
      raise ValueError(
          f"{directory} mixes the thumbnail into search at weight {built}, "
          f"not {describer.thumbnail_weight}; rebuild it into a new folder"
      )
    if shard is not None and gallery.info.setdefault("shard", list(shard)) != list(shard):
      raise ValueError(f"{directory} is shard {gallery.info['shard']}, not {list(shard)}")
    return gallery
  return Gallery.create(
      directory,
      dim=describer.dim,
      thumb_size=thumb_size,
      descriptor=descriptor_name,
      backend=backend,
      shard=shard,
      thumbnail_weight=describer.thumbnail_weight,
  )


def build_gallery(
    images,
    directory,
    *,
    describer: Describer,
    descriptor_name: str,
    thumb_size: int,
    backend: str = "scann",
    save_every: int = 1000,
    progress: bool = True,
    log=None,
    shard: tuple[int, int] | None = None,
    delete: bool = True,
    rehash: bool = False,
    workers: str = "auto",
) -> dict:
  """Sync the gallery at `directory` with `images` (a folder or a list of paths).

  Returns the summary: files, added, removed, changed, unchanged, moved,
  duplicates, kept_missing, errors (files that could not be read or decoded:
  reported on one line each and skipped, to `log`, stderr by default) and
  the gallery's size after. `workers` decodes in "processes", "threads" or
  by the number of files ("auto": processes from PROCESS_MIN_FILES on).
  """
  log = sys.stderr if log is None else log  # looked up per call: stderr may be redirected
  files = _listing(images)
  if shard is not None:
    files = {key: path for key, path in files.items() if owner(key, shard[1]) == shard[0]}
    directory = shard_directory(directory, *shard)
  gallery = open_or_create(
      directory,
      thumb_size=thumb_size,
      descriptor_name=descriptor_name,
      backend=backend,
      shard=shard,
      describer=describer,
  )
  stats = {"files": len(files), **dict.fromkeys(COUNTS, 0), "errors": 0}
  hashes = Path(directory) / HASHES
  started = time.time_ns()
  known = {} if rehash else _load_hashes(hashes)
  found, unreadable, seen = _hash_files(files.values(), known, stats, log)
  _save_hashes(hashes, seen, started)  # true whatever becomes of this sync
  plan = plan_sync(gallery.index.live_entries(), found, delete=delete, unreadable=unreadable)
  stats.update(plan.counts)
  revive, new = _split_known(gallery, plan.add)
  pending = Path(directory) / "pending"
  described = _describe(
      new, pending, describer, thumb_size, save_every, progress, log, stats, workers
  )
  _commit(gallery, plan, revive, described)
  shutil.rmtree(pending, ignore_errors=True)
  stats["added"] = sum(p not in plan.changed for p in [p for _, p in revive] + list(described))
  stats["size"] = len(gallery)
  return stats


def _hash_files(paths, known: dict, stats, log):
  """({path: sha256}, paths that could not be read, {path: (size, mtime, sha256)}).

  A file whose (size, mtime_ns) is the one `known` recorded is not read again.
  Unreadable files are reported and kept as they are.
  """
  found, unreadable, seen = {}, set(), {}
  for path in paths:
    try:
      st = os.stat(path)
      stamp = (st.st_size, st.st_mtime_ns)
      cached = known.get(path)
      sha = cached[2] if cached and cached[:2] == stamp else sha256_file(path)
    except OSError as e:
      stats["errors"] += 1
      unreadable.add(path)
      print(f"provjax index build: skipped {path}: {e}", file=log)
      continue
    found[path] = sha
    seen[path] = (*stamp, sha)
  return found, unreadable, seen


def _load_hashes(path: Path) -> dict:
  """{path: (size, mtime_ns, sha256)} the last sync can vouch for (empty when none)."""
  if not path.is_file():
    return {}
  with contextlib.closing(sqlite3.connect(path)) as db:
    (started,) = db.execute("SELECT started_ns FROM sync").fetchone()
    rows = db.execute(
        "SELECT path, size, mtime_ns, sha256 FROM files WHERE mtime_ns < ?", (started - RACY_NS,)
    ).fetchall()
  return {p: (size, mtime, sha) for p, size, mtime, sha in rows}


def _save_hashes(path: Path, seen: dict, started: int) -> None:
  """Written aside and renamed in: a cache, but never a half-written one."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".tmp-{path.name}")
  tmp.unlink(missing_ok=True)
  with contextlib.closing(sqlite3.connect(tmp)) as db:
    db.execute("CREATE TABLE sync (started_ns INT)")
    db.execute("INSERT INTO sync VALUES (?)", (started,))
    db.execute("CREATE TABLE files (path TEXT PRIMARY KEY, size INT, mtime_ns INT, sha256 TEXT)")
    db.executemany("INSERT INTO files VALUES (?, ?, ?, ?)", [(p, *v) for p, v in seen.items()])
    db.commit()
  os.replace(tmp, path)


def _commit(gallery: Gallery, plan: SyncPlan, revive, described: dict) -> None:
  """Apply the sync in memory, then save: the index swap makes all of it visible at once."""
  gallery.remove(plan.remove)
  relink = plan.relink + revive
  gallery.index.relink([i for i, _ in relink], [p for _, p in relink])
  paths = sorted(described)  # the same ids whether or not an earlier run was killed
  if paths:
    shas = [described[p][0] for p in paths]
    gallery.add(
        np.stack([described[p][1] for p in paths]),
        np.stack([described[p][2] for p in paths]),
        paths,
        shas,
        ids=_ids_for(gallery, shas),
    )
  gallery.index.set_property("last_sync", utc_now())
  gallery.save()


def _listing(images) -> dict[str, str]:
  """{key: resolved path}: keys are paths relative to the folder (the shard owner's input).

  The folder is resolved once, and only a file that is a link on its own (links to
  directories are not followed); a per-file resolve costs a syscall per path component.
  """
  if not isinstance(images, (str, Path)):
    return {Path(p).as_posix(): os.path.realpath(p) for p in images}
  root = os.fspath(images)
  real_root = os.path.realpath(root)
  out = {}
  for path, is_link in walk_images(root):
    key = path[len(root) :].lstrip(os.sep).replace(os.sep, "/")
    out[key] = os.path.realpath(path) if is_link else os.path.join(real_root, key)
  return out


def _split_known(gallery: Gallery, add: list[tuple[str, str]]):
  """Content the gallery still stores (tombstoned) comes back by relinking; the rest is new."""
  revive, new = [], []
  for path, sha in add:
    id_ = gallery.index.content_id(sha)
    stored = id_ is not None and _stored(gallery, id_)
    (revive if stored else new).append((id_, path) if stored else (path, sha))
  return revive, new


def _stored(gallery: Gallery, id_: int) -> bool:
  try:
    gallery.index.lookup(id_)
    return True
  except KeyError:
    return False


def _describe(new, pending, describer, thumb_size, save_every, progress, log, stats, workers):
  """{path: (sha256, descriptor, thumbnail)} of the new files that decode.

  Results are saved to `pending/` every `save_every` images (atomic files,
  not part of the gallery until the sync commits), so a killed sync's rerun
  describes only what is left. The workers decode the next part while the
  descriptor runs on this one: at most two parts of small images are in memory.
  """
  cached = _load_pending(pending)
  out = {path: (sha, *cached[sha]) for path, sha in new if sha in cached}
  todo = [(path, sha) for path, sha in new if sha not in cached]
  bar = tqdm(total=len(todo), disable=not progress, file=sys.stderr, desc="index build")
  small = functools.partial(read_small, sizes=(describer.size, thumb_size))
  parts = [todo[start : start + save_every] for start in range(0, len(todo), save_every)]
  with _decoder(workers, len(todo)) as executor:
    decode = lambda part: executor.map(small, [p for p, _ in part], chunksize=_chunk(part))
    ahead = decode(parts[0]) if parts else None
    for n, part in enumerate(parts):
      results = list(ahead)
      ahead = decode(parts[n + 1]) if n + 1 < len(parts) else None
      images, thumbs, kept = [], [], []
      for (path, sha), result in zip(part, results):
        if isinstance(result, Exception):
          stats["errors"] += 1
          print(f"provjax index build: skipped {failure_line(path, result)}", file=log)
          continue
        images.append(result[0])
        thumbs.append(result[1])
        kept.append((path, sha))
      if kept:
        vectors = describer(images)
        _save_pending(pending, [sha for _, sha in kept], vectors, np.stack(thumbs))
        out.update((path, (sha, v, t)) for (path, sha), v, t in zip(kept, vectors, thumbs))
      bar.update(len(part))
  bar.close()
  return out


def _decoder(workers: str, count: int):
  """An executor for decoding: worker processes for large syncs, else threads."""
  if workers not in ("auto", "processes", "threads"):
    raise ValueError(f"workers must be auto, processes or threads, not {workers!r}")
  cpus = os.cpu_count() or 1
  if workers == "processes" or (workers == "auto" and count >= PROCESS_MIN_FILES):
    # forkserver: the workers are forked from a clean server, never from this process,
    # whose JAX runtime threads a fork would copy mid-flight.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["provjax.data.images"])
    return futures.ProcessPoolExecutor(cpus, mp_context=context)
  return futures.ThreadPoolExecutor(cpus)


def _chunk(part) -> int:
  """Tasks per message to a worker: fewer, larger messages once a part is large."""
  return max(1, len(part) // (8 * (os.cpu_count() or 1)))


def _load_pending(pending: Path) -> dict:
  """{sha256: (descriptor, thumbnail)} saved by an earlier, unfinished sync."""
  cached = {}
  for path in sorted(pending.glob("part-*.npz")):
    with np.load(path) as z:
      cached.update(
          (s, (v, t)) for s, v, t in zip(z["sha256s"].tolist(), z["vectors"], z["thumbs"])
      )
  return cached


def _save_pending(pending: Path, shas: list[str], vectors: np.ndarray, thumbs: np.ndarray) -> None:
  pending.mkdir(parents=True, exist_ok=True)
  path = pending / f"part-{len(list(pending.glob('part-*.npz'))):06d}.npz"
  tmp = pending / f".tmp-{path.name}"  # outside the part-*.npz pattern until complete
  with open(tmp, "wb") as f:
    np.savez(f, sha256s=np.array(shas), vectors=vectors, thumbs=thumbs)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _ids_for(gallery: Gallery, shas: list[str]) -> np.ndarray:
  """The id each content had before a compaction dropped it, else a fresh one."""
  known = [gallery.index.content_id(sha) for sha in shas]
  fresh = iter(gallery.new_ids(sum(k is None for k in known)).tolist())
  return np.array([next(fresh) if k is None else k for k in known], np.int64)
