"""`provjax index build`: descriptors + thumbnails of a folder of originals.

Resumable: files whose sha256 is already in the gallery are skipped, and the
gallery is saved (atomically) every `save_every` images, so a killed build
continues where it stopped. A file that cannot be decoded is reported on one
line and skipped; the rest go on.
"""

from __future__ import annotations

from pathlib import Path
import sys

import numpy as np
from tqdm import tqdm

from provjax.data.images import ImageError, list_images, read_image
from provjax.provenance.engine import Describer
from provjax.provenance.gallery import Gallery, shard_directory
from provjax.retrieval.metadata import sha256_file
from provjax.viz.overlay import resize


def open_or_create(directory, *, thumb_size: int, descriptor_name: str, backend: str) -> Gallery:
  if (Path(directory) / "gallery.json").is_file():
    gallery = Gallery.open(directory)
    if gallery.info["descriptor"] != descriptor_name:
      raise ValueError(
          f"{directory} was built with {gallery.info['descriptor']}, " f"not {descriptor_name}"
      )
    return gallery
  return Gallery.create(
      directory, dim=256, thumb_size=thumb_size, descriptor=descriptor_name, backend=backend
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
    log=sys.stderr,
    shard: tuple[int, int] | None = None,
) -> dict:
  """Index `images` (a folder or a list of paths) into the gallery at `directory`.

  With `shard=(i, n)` this process indexes files i::n into `directory`'s
  shard i of n; ids are the files' positions in the sorted list, so the n
  shards together hold the same ids as one gallery built in one go.
  """
  files = list_images(images) if isinstance(images, (str, Path)) else list(images)
  positions = list(range(len(files)))
  if shard is not None:
    positions = positions[shard[0] :: shard[1]]
    directory = shard_directory(directory, *shard)
  gallery = open_or_create(
      directory, thumb_size=thumb_size, descriptor_name=descriptor_name, backend=backend
  )
  stats = {"files": len(positions), "added": 0, "already_indexed": 0, "errors": 0}
  bar = tqdm(total=len(positions), disable=not progress, file=sys.stderr, desc="index build")
  for start in range(0, len(positions), save_every):
    chunk = positions[start : start + save_every]
    _add_chunk(
        gallery,
        [files[i] for i in chunk],
        chunk if shard is not None else None,
        describer,
        thumb_size,
        stats,
        log,
    )
    gallery.save()
    bar.update(len(chunk))
  bar.close()
  stats["size"] = len(gallery)
  return stats


def _add_chunk(gallery, files, ids, describer, thumb_size, stats, log) -> None:
  # Keep only the two small sizes per file: full-size photos would not fit in memory.
  images, thumbs, paths, shas, kept = [], [], [], [], []
  for n, path in enumerate(files):
    try:
      sha = sha256_file(path)
      if gallery.index.find_sha256(sha) is not None or sha in shas:
        stats["already_indexed"] += 1
        continue
      image = read_image(path)
    except (ImageError, OSError) as e:
      stats["errors"] += 1
      print(
          f"provjax index build: skipped {e if isinstance(e, ImageError) else f'{path}: {e}'}",
          file=log,
      )
      continue
    images.append(resize(image, describer.size, describer.size))
    thumbs.append(resize(image, thumb_size, thumb_size))
    paths.append(str(Path(path).resolve()))
    shas.append(sha)
    kept.append(n)
  if not images:
    return
  vectors = describer(images)
  ids = None if ids is None else [ids[n] for n in kept]
  stats["added"] += len(gallery.add(vectors, np.stack(thumbs), paths, shas, ids=ids))
