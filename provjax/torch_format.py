"""Read PyTorch checkpoints into numpy without importing torch.

`torch.save` (PyTorch >= 1.6) writes a zip archive: `<archive>/data.pkl`, a
pickle (protocol 2) of the object whose tensors refer to storages by
persistent id ("storage", storage type, key, location, numel), and one
raw little-endian file `<archive>/data/<key>` per storage. This module
unpickles `data.pkl` with an allow-list of the few globals a state dict
needs (so a checkpoint cannot run code), rebuilds each tensor as a numpy
view of its storage and copies it out.

    weights = load_state_dict("trufor.pth.tar")   # {key: np.ndarray}

A `.npz` with the same keys is read as well. A checkpoint dict whose
"state_dict", "model" or "generator" entry is a dict (e.g. TruFor's {"epoch": ...,
"state_dict": ...}, CopyNCE's {"model": ..., "epoch": n}, SafePaint's
{"iteration": n, "generator": ...}) yields that entry;
a `module.` prefix (DataParallel) is removed.
"""

from __future__ import annotations

import collections
import dataclasses
import io
from pathlib import Path
import pickle
import zipfile

import numpy as np


class TorchFormatError(ValueError):
  """A file is not a checkpoint this reader understands."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
  """Stands in for `torch.<Name>Storage` classes inside the pickle."""

  name: str

  @property
  def dtype(self) -> np.dtype:
    if self.name == "BFloat16Storage":
      import ml_dtypes  # pylint: disable=g-import-not-at-top  # a jax dependency

      return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(_STORAGE_DTYPES[self.name])


_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


def _rebuild_tensor(storage, offset, size, stride, *_unused):
  """torch._utils._rebuild_tensor(_v2): a strided view of `storage`, copied out."""
  size, stride = tuple(size), tuple(stride)
  if len(size) != len(stride) or offset < 0 or any(s < 0 for s in stride):
    raise TorchFormatError(f"invalid tensor layout size={size} stride={stride} offset={offset}")
  if 0 not in size:
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
      raise TorchFormatError(f"tensor of size {size} reads past its storage of {storage.size}")
  view = np.lib.stride_tricks.as_strided(
      storage[offset:] if storage.size else storage,
      shape=size,
      strides=[s * storage.itemsize for s in stride],
      writeable=False,
  )
  return np.array(view)


def _rebuild_parameter(data, *_unused):
  """torch._utils._rebuild_parameter(_with_state): an nn.Parameter is its data."""
  return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
  """Allow-listed unpickler; storages come from the zip through `persistent_load`."""

  def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str):
    super().__init__(io.BytesIO(data))
    self._archive, self._prefix, self._byteorder = archive, prefix, byteorder
    self._storages: dict[str, np.ndarray] = {}

  def find_class(self, module, name):
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module == "torch" and (name in _STORAGE_DTYPES or name == "BFloat16Storage"):
      return _StorageType(name)
    raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
    storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
    if not isinstance(storage_type, _StorageType):
      raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
    if key not in self._storages:
      dtype = storage_type.dtype.newbyteorder("<" if self._byteorder == "little" else ">")
      raw = self._archive.read(f"{self._prefix}/data/{key}")
      if len(raw) < numel * dtype.itemsize:
        raise pickle.UnpicklingError(f"storage {key} holds {len(raw)} bytes, needs {numel} values")
      self._storages[key] = np.frombuffer(raw, dtype, count=numel).astype(dtype.newbyteorder("="))
    return self._storages[key]


def _read_torch_zip(path: Path):
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
      raise TorchFormatError(f"{path}: not a torch.save zip archive (no unique */data.pkl)")
    prefix = pickles[0].split("/")[0]
    names = set(archive.namelist())
    byteorder = "little"
    if f"{prefix}/byteorder" in names:
      byteorder = archive.read(f"{prefix}/byteorder").decode().strip()
    try:
      return _Unpickler(archive.read(pickles[0]), archive, prefix, byteorder).load()
    except (pickle.UnpicklingError, KeyError, EOFError, TypeError, TorchFormatError) as e:
      raise TorchFormatError(f"{path}: cannot read the checkpoint ({e})") from e


# Entries under which training checkpoints keep the state dict, tried in order.
_WRAPPERS = ("state_dict", "model", "generator")


def _unwrap(obj):
  """The state dict a training checkpoint {"epoch": ..., "<wrapper>": {...}} wraps, else `obj`."""
  if isinstance(obj, dict):
    for wrapper in _WRAPPERS:
      # A dict, not a tensor: a state dict may well hold a parameter named "model".
      if isinstance(obj.get(wrapper), dict):
        return obj[wrapper]
  return obj


def _state_dict(obj, path: Path) -> dict[str, np.ndarray]:
  """The state dict inside `obj`, keys without a `module.` prefix."""
  obj = _unwrap(obj)
  if not isinstance(obj, dict) or not obj:
    raise TorchFormatError(f"{path}: holds {type(obj).__name__}, not a state dict")
  out = {}
  for key, value in obj.items():
    if not isinstance(key, str) or not isinstance(value, np.ndarray):
      raise TorchFormatError(
          f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; not a state dict"
      )
    out[key.removeprefix("module.")] = value
  return out


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
  """{key: numpy array} from a torch.save zip checkpoint or a .npz of the same keys."""
  path = Path(path)
  if not path.is_file():
    raise TorchFormatError(f"{path}: no such file")
  if path.suffix == ".npz":
    try:
      with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
      raise TorchFormatError(f"{path}: cannot read the .npz ({e})") from e
    return _state_dict(arrays, path)
  if not zipfile.is_zipfile(path):
    raise TorchFormatError(
        f"{path}: not a zip archive; checkpoints saved by PyTorch < 1.6 (legacy format) must be "
        "re-saved with torch.save in a newer PyTorch"
    )
  return _state_dict(_read_torch_zip(path), path)
