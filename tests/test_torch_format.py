"""provjax.torch_format: torch.save zip checkpoints read without torch; provjax.torch_convert.

The checkpoints are written here by a minimal torch.save stand-in: the same
zip layout and the same pickle stream (protocol 2, `collections.OrderedDict`,
`torch._utils._rebuild_tensor_v2`, storages as persistent ids
("storage", torch.<T>Storage, key, "cpu", numel)). The stand-in `torch`
modules exist in sys.modules only while pickling, so nothing else sees them.
The torch_convert tests fill a three-layer NNX model from a hand-made state dict.
"""

from __future__ import annotations

import collections
import functools
import io
import pickle
import sys
import types
import zipfile

from flax import nnx
import numpy as np
import pytest

from provjax import torch_convert, torch_format

_STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


def _stub_torch():
  """Modules `torch` and `torch._utils` holding picklable stand-ins of the globals torch writes."""
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")
  for name in _STORAGE_NAMES.values():
    setattr(torch, name, type(name, (), {"__module__": "torch"}))

  def _rebuild_tensor_v2(*args):
    raise AssertionError("only pickled, never called")

  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  torch._utils = utils
  return {"torch": torch, "torch._utils": utils}


class _Storage:

  def __init__(self, key: str, flat: np.ndarray):
    self.key, self.flat = key, flat


class _Tensor:
  """Pickles like a torch tensor: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

  def __init__(self, rebuild, storage: _Storage, offset: int, shape, strides):
    self.args = (storage, offset, tuple(shape), tuple(strides), False, collections.OrderedDict())
    self.rebuild = rebuild

  def __reduce__(self):
    return self.rebuild, self.args


class _Pickler(pickle.Pickler):

  def __init__(self, f, torch):
    super().__init__(f, protocol=2)
    self.torch = torch

  def persistent_id(self, obj):
    if isinstance(obj, _Storage):
      kind = getattr(self.torch, _STORAGE_NAMES[obj.flat.dtype])
      return ("storage", kind, obj.key, "cpu", obj.flat.size)
    return None


def write_checkpoint(path, obj, *, byteorder="little"):
  """torch.save stand-in: `obj` may nest dicts whose leaves are numpy arrays or
  (storage array, offset, shape, element strides) views."""
  stubs = _stub_torch()
  storages = []

  def convert(value):
    if isinstance(value, dict):
      return collections.OrderedDict((k, convert(v)) for k, v in value.items())
    if isinstance(value, tuple):  # a strided view of a shared storage
      flat, offset, shape, strides = value
      storage = next((s for s in storages if s.flat is flat), None)
      if storage is None:
        storage = _Storage(str(len(storages)), flat)
        storages.append(storage)
      return _Tensor(stubs["torch._utils"]._rebuild_tensor_v2, storage, offset, shape, strides)
    if isinstance(value, np.ndarray):
      dense = value.copy(order="C")  # np.ascontiguousarray would make a 0-d array 1-d
      strides = [s // value.itemsize for s in dense.strides]
      return convert((dense.reshape(-1), 0, value.shape, strides))
    return value

  tree = convert(obj)
  buf = io.BytesIO()
  saved = {name: sys.modules.get(name) for name in stubs}
  sys.modules.update(stubs)
  try:
    _Pickler(buf, stubs["torch"]).dump(tree)
  finally:
    for name, module in saved.items():
      if module is None:
        sys.modules.pop(name, None)
      else:
        sys.modules[name] = module
  order = ">" if byteorder == "big" else "<"
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
    z.writestr("archive/data.pkl", buf.getvalue())
    z.writestr("archive/byteorder", byteorder)
    for s in storages:
      z.writestr(f"archive/data/{s.key}", s.flat.astype(s.flat.dtype.newbyteorder(order)).tobytes())
    z.writestr("archive/version", "3\n")


def _sample():
  rng = np.random.default_rng(0)
  return {
      "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
      "bn.running_var": rng.random(4).astype(np.float64),
      "bn.num_batches_tracked": np.array(5, np.int64),
      "half": rng.standard_normal(5).astype(np.float16),
      "mask": np.array([True, False, True]),
      "ids": np.arange(6, dtype=np.int32).reshape(2, 3),
      "bytes": np.arange(4, dtype=np.uint8),
      "empty": np.zeros((0, 3), np.float32),
  }


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_round_trip_checkpoint_dict(tmp_path, byteorder, wrapper):
  """{"epoch", "state_dict" | "model"}, `module.` prefixes: every tensor back, prefix removed."""
  sample = _sample()
  path = tmp_path / "trufor.pth.tar"
  write_checkpoint(
      path,
      {"epoch": 81, wrapper: {f"module.{k}": v for k, v in sample.items()}},
      byteorder=byteorder,
  )
  got = torch_format.load_state_dict(path)
  assert sorted(got) == sorted(sample)
  for key, value in sample.items():
    assert got[key].dtype == value.dtype, key
    np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_strided_views_share_a_storage(tmp_path):
  """A transposed view and an offset slice of one storage come back as torch would give them."""
  base = np.arange(24, dtype=np.float32)
  path = tmp_path / "views.pth"
  write_checkpoint(
      path, {"t": (base, 0, (6, 4), (1, 6)), "slice": (base, 8, (2, 3), (6, 1)), "all": base}
  )
  got = torch_format.load_state_dict(path)
  full = base.reshape(4, 6)
  np.testing.assert_array_equal(got["t"], full.T)
  np.testing.assert_array_equal(got["slice"], full[1:3, 2:5])
  np.testing.assert_array_equal(got["all"], base)


def test_npz_reads_the_same_keys(tmp_path):
  sample = _sample()
  np.savez(tmp_path / "w.npz", **sample)
  got = torch_format.load_state_dict(tmp_path / "w.npz")
  assert sorted(got) == sorted(sample)
  np.testing.assert_array_equal(got["conv.weight"], sample["conv.weight"])


class _Evil:

  def __reduce__(self):
    return (print, ("pwned",))


def _malicious(path):
  """A checkpoint whose pickle calls builtins.print on load."""
  buf = io.BytesIO()
  pickle.dump({"state_dict": _Evil()}, buf, protocol=2)
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", buf.getvalue())


def test_refuses_globals_outside_the_allow_list(tmp_path, capsys):
  path = tmp_path / "evil.pth"
  _malicious(path)
  with pytest.raises(torch_format.TorchFormatError, match=r"evil\.pth.*print is not allowed"):
    torch_format.load_state_dict(path)
  assert "pwned" not in capsys.readouterr().out


def test_tensor_past_its_storage_is_an_error(tmp_path):
  path = tmp_path / "short.pth"
  write_checkpoint(path, {"w": (np.zeros(4, np.float32), 2, (2, 2), (2, 1))})
  with pytest.raises(torch_format.TorchFormatError, match=r"short\.pth.*past its storage"):
    torch_format.load_state_dict(path)


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"\x80\x02legacy torch pickle", r"legacy\.pth: not a zip archive.*PyTorch < 1\.6"),
        (None, r"legacy\.pth: holds list, not a state dict"),
        ("nested", r"legacy\.pth: entry 'optimizer' is a OrderedDict, not a tensor"),
    ],
)
def test_not_a_state_dict_names_the_file(tmp_path, content, pattern):
  path = tmp_path / "legacy.pth"
  if content is None:
    buf = io.BytesIO()
    pickle.dump([1, 2], buf, protocol=2)
    with zipfile.ZipFile(path, "w") as z:
      z.writestr("archive/data.pkl", buf.getvalue())
  elif content == "nested":
    write_checkpoint(path, {"w": np.zeros(2, np.float32), "optimizer": {"lr": 0.1}})
  else:
    path.write_bytes(content)
  with pytest.raises(torch_format.TorchFormatError, match=pattern):
    torch_format.load_state_dict(path)


def test_missing_file(tmp_path):
  with pytest.raises(torch_format.TorchFormatError, match=r"nope\.pth: no such file"):
    torch_format.load_state_dict(tmp_path / "nope.pth")


def test_a_tensor_named_model_is_not_a_wrapper(tmp_path):
  sample = {"model": np.arange(3, dtype=np.float32), "head.weight": np.ones((2, 2), np.float32)}
  write_checkpoint(tmp_path / "w.pth", sample)
  got = torch_format.load_state_dict(tmp_path / "w.pth")
  assert sorted(got) == ["head.weight", "model"]


class _Tiny(nnx.Module):

  def __init__(self, rngs: nnx.Rngs):
    self.conv = nnx.Conv(2, 3, (1, 2), rngs=rngs)
    self.bn = nnx.BatchNorm(3, rngs=rngs)
    self.fc = nnx.Linear(3, 4, rngs=rngs)


def _tiny_state_dict():
  """_Tiny's parameters in PyTorch names and layouts, with the BatchNorm counter torch saves."""
  rng = np.random.default_rng(1)
  shapes = {
      "conv.weight": (3, 2, 1, 2),
      "conv.bias": (3,),
      "bn.weight": (3,),
      "bn.bias": (3,),
      "bn.running_mean": (3,),
      "bn.running_var": (3,),
      "fc.weight": (4, 3),
      "fc.bias": (4,),
  }
  sd = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
  return {**sd, "bn.num_batches_tracked": np.array(7, np.int64)}


def _fill_tiny(sd):
  abstract = nnx.eval_shape(lambda: _Tiny(nnx.Rngs(0)))
  key_of = functools.partial(torch_convert.official_key, rules=())  # names as they are
  return torch_convert.fill(abstract, sd, "tiny.pth", key_of)


def test_fill_places_every_tensor_in_jax_layout():
  sd = _tiny_state_dict()
  model = _fill_tiny(sd)
  conv = np.asarray(model.conv.kernel[...])
  assert conv.shape == (1, 2, 2, 3)
  for o, i, kw in np.ndindex(3, 2, 2):
    assert conv[0, kw, i, o] == sd["conv.weight"][o, i, 0, kw]
  np.testing.assert_array_equal(model.fc.kernel[...], sd["fc.weight"].T)
  np.testing.assert_array_equal(model.bn.scale[...], sd["bn.weight"])
  np.testing.assert_array_equal(model.bn.mean[...], sd["bn.running_mean"])
  np.testing.assert_array_equal(model.bn.var[...], sd["bn.running_var"])
  assert torch_convert.official_shape(conv.shape) == sd["conv.weight"].shape


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda sd: [sd.pop(k) for k in list(sd) if k != "bn.num_batches_tracked"],
            r"^tiny\.pth: missing official key\(s\) bn\.bias, bn\.running_mean, "
            r"bn\.running_var, bn\.weight, conv\.bias \(\+3 more\)$",
        ),
        (
            lambda sd: sd.update({"fc.num_batches_tracked": np.array(1)}),
            r"^tiny\.pth: unexpected key\(s\) fc\.num_batches_tracked$",
        ),
        (
            lambda sd: sd.update({"fc.weight": np.zeros((3, 4), np.float32)}),
            r"^tiny\.pth: fc\.weight has shape \(3, 4\), expected \(4, 3\)$",
        ),
    ],
)
def test_fill_refuses_a_state_dict_that_does_not_fit(edit, message):
  sd = _tiny_state_dict()
  edit(sd)
  with pytest.raises(torch_convert.ConversionError, match=message):
    _fill_tiny(sd)


def test_official_key_applies_the_rules_in_order():
  rules = ((r"^stages\.(\d+)", lambda m: f"stage{int(m[1]) + 1}"), (r"\.proj$", ".proj.0"))
  assert (
      torch_convert.official_key(("stages", 1, "proj", "kernel"), rules) == "stage2.proj.0.weight"
  )
  assert torch_convert.official_key(("bn", "var"), rules) == "bn.running_var"
