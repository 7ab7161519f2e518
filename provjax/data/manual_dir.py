"""What the builders over a user-supplied manual_dir share: a config named by a fingerprint
of the folder, and CSV files whose header is checked before any row is read.

The fingerprint hashes the folder's path and, for each file that decides the
dataset, a name with its size and modification time: a changed file makes a
new config, so a stale prepared copy is never read.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import tensorflow_datasets as tfds


def fingerprint(root: Path, files: dict[str, Path]) -> str:
  """A short hash of `root` and of each {name: file}'s name, size and mtime, in order."""
  digest = hashlib.sha256(str(root).encode())
  for name, path in files.items():
    stat = path.stat()
    digest.update(f"\0{name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
  return digest.hexdigest()[:10]


class ManualDirConfig(tfds.core.BuilderConfig):
  """The manual_dir a builder reads; the config name is `dir<fingerprint>`.

  Subclasses say which files decide the dataset (`files`).
  """

  def __init__(self, manual_dir: str | os.PathLike):
    manual_dir = Path(manual_dir).expanduser().resolve()
    if not manual_dir.is_dir():
      raise NotADirectoryError(f"{manual_dir}: not a directory")
    name = f"dir{fingerprint(manual_dir, self.files(manual_dir))}"
    super().__init__(name=name, description=f"read from {manual_dir}")
    self.manual_dir = manual_dir

  @staticmethod
  def files(root: Path) -> dict[str, Path]:
    raise NotImplementedError


def open_csv(csv_path: Path, columns: tuple[str, ...]):
  """(handle, DictReader) over `csv_path`, its header checked for `columns`.

  Raises:
    ValueError: naming the file and the missing columns.
  """
  handle = csv_path.open(newline="", encoding="utf-8")
  reader = csv.DictReader(handle)
  missing = [c for c in columns if c not in (reader.fieldnames or ())]
  if missing:
    handle.close()
    raise ValueError(
        f"{csv_path}: header lacks {', '.join(missing)}; expected columns {','.join(columns)}"
    )
  return handle, reader
