"""grain pipelines over random-access sources (TFDS ArrayRecord, lists, ...).

Every task builds its batches the same way: split the records per process,
shuffle, repeat, a seeded random map (augmentation), batch. Because the
result is a grain `MapDataset`, batch i is a pure function of (seed, i):
training resumes at step s by slicing, with no iterator state to save.
"""

from __future__ import annotations

import time
from typing import Callable

from absl import flags
import grain
import jax
import numpy as np

from provjax.data.images import read_image


def decode(record: dict) -> dict:
  """A copy of `record` with its encoded `image` bytes decoded to HxWx3 uint8.

  Raises:
    ImageError: naming the record's id, if the bytes are not a valid image.
  """
  name = f"record {int(record['id'])}" if "id" in record else "record"
  return {**record, "image": read_image(bytes(record["image"]), name=name)}


def make_dataset(
    source,
    *,
    seed: int,
    batch_size: int,
    map_fn: Callable[[dict, np.random.Generator], dict],
    process_index: int | None = None,
    process_count: int | None = None,
    shuffle: bool = True,
    repeat: bool = True,
    drop_remainder: bool = True,
) -> grain.MapDataset:
  """Per-process records -> (shuffle) -> (repeat) -> random_map -> batch.

  Shuffle comes before repeat: grain's shuffle permutes within epochs of its
  parent's length, so each epoch visits every record once, in a new order.
  (After an infinite repeat it would sample records unevenly.)
  """
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  ds = grain.MapDataset.source(source)[index::count]
  if shuffle:
    ds = ds.shuffle(seed=seed)
  if repeat:
    ds = ds.repeat()
  # The map's random stream is keyed by position, so give each process its own
  # seed: otherwise every host would augment its i-th record identically.
  map_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
  ds = ds.random_map(map_fn, seed=map_seed)
  return ds.batch(batch_size, drop_remainder=drop_remainder)


def iterate(
    ds: grain.MapDataset,
    *,
    start: int = 0,
    num_threads: int = 2,
    prefetch: int = 4,
    num_workers: int = 0,
):
  """Iterator over batches `start, start + 1, ...`, in the same order however made.

  Batches are made by `num_threads` threads, or with `num_workers` > 0 by that
  many spawned worker processes (worker i makes batches i, i + n, ...). Numpy
  augmentation holds the GIL much of the time, so threads reach about 1.5
  cores; processes pay a few seconds of start-up (each imports the zoo) to use
  them all. Call `close()` on the iterator when done to stop the workers.
  """
  options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
  iter_ds = ds[start:].to_iter_dataset(options)
  if num_workers:
    # grain reads absl flags in its workers; a zoo command never parses them.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    iter_ds = iter_ds.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=2)
    )
  return iter(iter_ds)


def training_batches(source, config, map_fn, *, start_step: int = 0):
  """A task's infinite training batches from `config.train`/`config.data`, from `start_step`.

  Each process takes its share of the global batch (multi-host).
  """
  per_process = config.train.batch_size // jax.process_count()
  ds = make_dataset(source, seed=config.seed, batch_size=per_process, map_fn=map_fn)
  return iterate(
      ds,
      start=start_step,
      num_threads=config.data.get("num_threads", 2),
      num_workers=config.data.get("num_workers", 0),
  )


def images_per_second(ds: grain.MapDataset, n_batches: int = 10, **iterate_kw) -> float:
  """Records per second through the whole pipeline (first batch excluded as warm-up)."""
  it = iterate(ds, **iterate_kw)
  try:
    first = next(it)
    size = len(next(iter(first.values())))
    t = time.perf_counter()
    for _ in range(n_batches):
      next(it)
    return n_batches * size / (time.perf_counter() - t)
  finally:
    it.close()
