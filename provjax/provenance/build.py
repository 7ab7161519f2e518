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

With `shard=(i, n)` the gallery is shard i of n and syncs the files it owns:
`owner(relative path, n) == i`, a stable hash of the path, so adding or
removing other files never moves a file between shards, and n hosts sync
their shards without talking to each other.
"""

from __future__ import annotations

from concurrent import futures
import dataclasses
import functools
import hashlib
import os
from pathlib import Path
import shutil
import sys

import numpy as np
from tqdm import tqdm

from provjax.data.images import ImageError, failure_line, list_images, read_image
from provjax.provenance.engine import Describer
from provjax.provenance.gallery import Gallery, shard_directory
from provjax.retrieval.metadata import sha256_file, utc_now
from provjax.viz.overlay import resize

COUNTS = ("added", "removed", "changed", "unchanged", "moved", "duplicates", "kept_missing")


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
) -> Gallery:
  if (Path(directory) / "gallery.json").is_file():
    gallery = Gallery.open(directory)
    if gallery.info["descriptor"] != descriptor_name:
      raise ValueError(
          f"{directory} was built with {gallery.info['descriptor']}, " f"not {descriptor_name}"
      )
    if shard is not None and gallery.info.setdefault("shard", list(shard)) != list(shard):
      raise ValueError(f"{directory} is shard {gallery.info['shard']}, not {list(shard)}")
    return gallery
  return Gallery.create(
      directory,
      dim=256,
      thumb_size=thumb_size,
      descriptor=descriptor_name,
      backend=backend,
      shard=shard,
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
) -> dict:
  """Sync the gallery at `directory` with `images` (a folder or a list of paths).

  Returns the summary: files, added, removed, changed, unchanged, moved,
  duplicates, kept_missing, errors (files that could not be read or decoded:
  reported on one line each and skipped, to `log`, stderr by default) and
  the gallery's size after.
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
  )
  stats = {"files": len(files), **dict.fromkeys(COUNTS, 0), "errors": 0}
  found, unreadable = _hash_files(files.values(), stats, log)
  plan = plan_sync(gallery.index.live_entries(), found, delete=delete, unreadable=unreadable)
  stats.update(plan.counts)
  revive, new = _split_known(gallery, plan.add)
  pending = Path(directory) / "pending"
  described = _describe(new, pending, describer, thumb_size, save_every, progress, log, stats)
  _commit(gallery, plan, revive, described)
  shutil.rmtree(pending, ignore_errors=True)
  stats["added"] = sum(p not in plan.changed for p in [p for _, p in revive] + list(described))
  stats["size"] = len(gallery)
  return stats


def _hash_files(paths, stats, log) -> tuple[dict[str, str], set[str]]:
  """({resolved path: sha256}, paths that could not be read: reported, and kept as they are)."""
  found, unreadable = {}, set()
  for path in paths:
    try:
      found[str(path.resolve())] = sha256_file(path)
    except OSError as e:
      stats["errors"] += 1
      unreadable.add(str(path.resolve()))
      print(f"provjax index build: skipped {path}: {e}", file=log)
  return found, unreadable


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


def _listing(images) -> dict[str, Path]:
  """{key: path}: keys are paths relative to the folder (the shard owner's input)."""
  if isinstance(images, (str, Path)):
    root = Path(images)
    return {p.relative_to(root).as_posix(): p for p in list_images(root)}
  return {Path(p).as_posix(): Path(p) for p in images}


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


def _describe(new, pending, describer, thumb_size, save_every, progress, log, stats):
  """{path: (sha256, descriptor, thumbnail)} of the new files that decode.

  Results are saved to `pending/` every `save_every` images (atomic files,
  not part of the gallery until the sync commits), so a killed sync's rerun
  describes only what is left.
  """
  cached = _load_pending(pending)
  out = {path: (sha, *cached[sha]) for path, sha in new if sha in cached}
  todo = [(path, sha) for path, sha in new if sha not in cached]
  bar = tqdm(total=len(todo), disable=not progress, file=sys.stderr, desc="index build")
  small = functools.partial(_small, sizes=(describer.size, thumb_size))
  # Decoding and resizing run in threads (Pillow releases the GIL), in order.
  with futures.ThreadPoolExecutor(os.cpu_count() or 1) as executor:
    for start in range(0, len(todo), save_every):
      part = todo[start : start + save_every]
      images, thumbs, kept = [], [], []
      for (path, sha), result in zip(part, executor.map(small, [p for p, _ in part])):
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


def _small(path: str, sizes: tuple[int, int]):
  """(descriptor-size image, thumbnail) of one file, or the error that stopped it.

  Only the two small sizes are kept: full-size photos would not fit in memory.
  """
  try:
    image = read_image(path)
  except (ImageError, OSError) as e:
    return e
  return tuple(resize(image, s, s) for s in sizes)


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
