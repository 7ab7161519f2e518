"""The official ISC2021 file formats (specs/copy_detection.md section 1, "File formats").

* Ground truth: CSV with header ``query_id,reference_id``, one row per query; an empty
  reference marks a query that matches nothing. Such rows are not pairs, but their queries
  belong to the GT file, so predictions for them still count (as false positives).
* Predictions: CSV with header ``query_id,reference_id,score``, higher score = more similar.
  Scores are written with ``repr`` (shortest exact round trip), not the official ``%.6f``:
  rounding would turn distinct scores into ties, which the metric breaks pessimistically.
* Descriptors: HDF5 with datasets ``vectors`` (float32 [N, d]) and ``image_names`` (N strings,
  UTF-8); the reader also takes the fixed-length byte strings the official writer produces.

Writes are atomic (a temporary file in the same folder, fsynced, then ``os.replace``), so a
reader sees the old file or the new one, never a partial one. A malformed CSV row raises
ValueError naming the file and the line.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import tempfile
from typing import Iterable, Iterator, Sequence

import h5py
import numpy as np

from provjax.metrics import isc

GT_HEADER = ["query_id", "reference_id"]
PREDICTIONS_HEADER = ["query_id", "reference_id", "score"]


@contextlib.contextmanager
def _atomic_path(path: str | os.PathLike) -> Iterator[str]:
  """Yields a temporary path beside `path`; on success it is fsynced and renamed onto it."""
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  os.close(fd)
  try:
    yield tmp
    fd = os.open(tmp, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


def _csv_rows(path: str | os.PathLike, header: list[str]) -> Iterator[tuple[int, list[str]]]:
  """(line number, stripped fields) of each non-blank data row, after checking the header."""
  with open(path, newline="", encoding="utf-8") as f:
    rows = csv.reader(f)
    first = next(rows, None)
    if first is None or [c.strip() for c in first] != header:
      raise ValueError(f"{path}:1: expected the header {','.join(header)!r}, got {first!r}")
    for row in rows:
      if not row or row == [""]:
        continue
      fields = [c.strip() for c in row]
      if len(fields) != len(header):
        raise ValueError(
            f"{path}:{rows.line_num}: expected {len(header)} fields ({','.join(header)}), "
            f"got {len(fields)}: {','.join(row)!r}"
        )
      if not fields[0]:
        raise ValueError(f"{path}:{rows.line_num}: empty query_id")
      yield rows.line_num, fields


def read_ground_truth(path: str | os.PathLike) -> tuple[list[tuple[str, str]], list[str]]:
  """Reads a GT CSV.

  Returns:
    (pairs, queries): the (query_id, reference_id) rows with a reference, in file order,
    and every query id of the file (non-matching ones included), in first-seen order.

  Raises:
    ValueError: naming the file and line, on a bad header or row or a repeated row.
  """
  pairs, queries, seen = [], {}, set()
  for line, (q, r) in _csv_rows(path, GT_HEADER):
    if (q, r) in seen:
      raise ValueError(f"{path}:{line}: repeated row {q},{r}")
    seen.add((q, r))
    queries.setdefault(q, None)
    if r:
      pairs.append((q, r))
  return pairs, list(queries)


def read_predictions(path: str | os.PathLike) -> list[tuple[str, str, float]]:
  """Reads a predictions CSV into (query_id, reference_id, score) tuples, in file order.

  Raises:
    ValueError: naming the file and line, on a bad header, a missing field or a score that
      is not a number (NaN included).
  """
  predictions = []
  for line, (q, r, s) in _csv_rows(path, PREDICTIONS_HEADER):
    if not r:
      raise ValueError(f"{path}:{line}: empty reference_id")
    try:
      score = float(s)
    except ValueError:
      raise ValueError(f"{path}:{line}: score {s!r} is not a number") from None
    if math.isnan(score):
      raise ValueError(f"{path}:{line}: score is NaN")
    predictions.append((q, r, score))
  return predictions


def write_predictions(
    path: str | os.PathLike, predictions: Iterable[tuple[str, str, float]]
) -> None:
  """Writes (query_id, reference_id, score) rows as a predictions CSV, atomically."""
  with _atomic_path(path) as tmp:
    with open(tmp, "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f, lineterminator="\n")
      writer.writerow(PREDICTIONS_HEADER)
      for q, r, score in predictions:
        writer.writerow([q, r, repr(float(score))])


def write_descriptors(path: str | os.PathLike, names: Sequence[str], vectors: np.ndarray) -> None:
  """Writes descriptors in the official HDF5 layout, atomically.

  Args:
    path: the .h5 file to write.
    names: N image ids (non-empty strings).
    vectors: [N, d] descriptors, stored as float32.
  """
  vectors = np.ascontiguousarray(vectors, np.float32)
  names = [str(n) for n in names]
  if vectors.ndim != 2 or vectors.shape[0] != len(names):
    raise ValueError(f"{len(names)} names but vectors of shape {vectors.shape}")
  if any(not n for n in names):
    raise ValueError("image names must be non-empty")
  with _atomic_path(path) as tmp:
    with h5py.File(tmp, "w") as f:
      f.create_dataset("vectors", data=vectors)
      f.create_dataset("image_names", data=names, dtype=h5py.string_dtype("utf-8"))


def read_descriptors(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
  """Reads an HDF5 descriptor file.

  Returns:
    (names, vectors float32 [N, d]).

  Raises:
    ValueError: naming the file, when a dataset is missing or the shapes disagree.
  """
  with h5py.File(path, "r") as f:
    if "vectors" not in f or "image_names" not in f:
      raise ValueError(
          f"{path}: expected datasets 'vectors' and 'image_names', found {sorted(f.keys())} "
          "(the track-2 submission layout query/reference is not a descriptor file)"
      )
    vectors = np.asarray(f["vectors"][...], np.float32)
    raw = f["image_names"][...]
  names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in raw.reshape(-1)]
  if vectors.ndim != 2 or vectors.shape[0] != len(names):
    raise ValueError(f"{path}: {len(names)} image names but vectors of shape {vectors.shape}")
  return names, vectors


def evaluate_files(
    gt_path: str | os.PathLike, preds_path: str | os.PathLike, max_results: int | None = None
) -> dict:
  """The official metrics (`provjax.metrics.isc.evaluate`) of a predictions CSV against a GT
  CSV; predictions for queries outside the GT file are dropped."""
  pairs, queries = read_ground_truth(gt_path)
  predictions = read_predictions(preds_path)
  return isc.evaluate(pairs, predictions, gt_queries=queries, max_results=max_results)
