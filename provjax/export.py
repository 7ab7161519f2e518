"""`provjax export NAME --format orbax|safetensors|stablehlo --out DIR`: weights for other tools.

    provjax export trufor.synth-v1 --format safetensors --out exported/trufor

orbax        a copy of the released folder (weights/, config.json, model card, manifest): load
             it with PROVJAX_CHECKPOINTS=<DIR's parent> and `provjax.load(<DIR's name>)`.
safetensors  DIR/model.safetensors and DIR/config.json: every array of the model state
             (parameters, BatchNorm statistics, buffers). Where a converter of official PyTorch
             weights exists the keys are the official ones in PyTorch layouts (conv
             (O, I, kh, kw), Linear (out, in)), so the file is what that converter reads back
             and what the official code loads (key_style "pytorch"); elsewhere the keys are the
             dotted provjax state paths in JAX layouts (key_style "provjax").
stablehlo    DIR/model.stablehlo (`jax.export`, weights inside) and DIR/export.json: the
             eval-mode forward on float32 NHWC batches already preprocessed the way the system
             does it (export.json says how), polymorphic in the batch and, where the model
             allows, in height and width; lowered for CPU and CUDA.

NAME is a released `arch.tag`; safetensors and stablehlo also take an `arch.variant` (fresh
weights, seed 0). DIR is built in a temporary folder beside it and renamed into place, so it
is either absent or complete; a non-empty DIR is kept unless --force.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
from pathlib import Path
import shutil
import sys
import tempfile
from typing import Callable

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
from safetensors import numpy as safetensors_numpy

from provjax import registry, torch_convert, weights
from provjax.tasks.losses import l2_normalize

FORMATS = ("orbax", "safetensors", "stablehlo")
PLATFORMS = ("cpu", "cuda")
SAFETENSORS = "model.safetensors"
STABLEHLO = "model.stablehlo"
CONFIG = "config.json"
EXPORT_META = "export.json"

# Families with a converter of official PyTorch weights: (module, CopyNCE kind or None).
_CONVERTERS = {
    "trufor": ("provjax.forgery.convert", None),
    "copynce": ("provjax.copydetect.convert", "descriptor"),
    "copynce_matcher": ("provjax.copydetect.convert", "matcher"),
    "safepaint": ("provjax.inpainting.convert", None),
    "vgg": ("provjax.inpainting.vgg_convert", None),
}


class UnknownModelError(ValueError):
  """NAME is neither released weights nor an architecture variant (or not for this format)."""


def family(config: dict) -> str:
  return registry.split_name(config["arch"])[0]


def _check_name(name: str) -> None:
  if name not in weights.released() and name not in registry.list_models():
    raise UnknownModelError(
        f"no released weights or architecture variant named {name!r}; "
        f"released: {', '.join(weights.released()) or 'none'}"
    )


def _config(name: str) -> dict:
  """config.json of released `name`; for `arch.variant`, the bare architecture."""
  _check_name(name)
  if name in weights.released():
    return weights.read_config(name)
  return {"arch": name, "overrides": {}, "preprocessing": {}}


def resolve(name: str) -> tuple[nnx.Module, dict]:
  """(model in eval mode, config.json dict) of released `name`, or of `arch.variant` fresh."""
  config = _config(name)
  if name in weights.released():
    return weights.load(name), config
  model = registry.create_model(name)
  model.eval()
  return model, config


# --- safetensors -------------------------------------------------------------------------------


def _dotted(path: tuple) -> str:
  return ".".join(str(p) for p in path)


def key_function(fam: str) -> tuple[Callable[[tuple], str], str]:
  """(state path -> tensor name, key style): the converter's official key, else the dotted path."""
  if fam not in _CONVERTERS:
    return _dotted, "provjax"
  module, kind = _CONVERTERS[fam]
  official = importlib.import_module(module).official_key
  return (functools.partial(official, kind) if kind else official), "pytorch"


def named_variables(model: nnx.Module, fam: str) -> tuple[dict[str, tuple], str]:
  """({tensor name: (state path, Variable)}, key style) of every array the weights hold.

  RNG state (a dropout's key and counter) is a run's, not the weights'. Works on an
  abstract (nnx.eval_shape) model: only paths and shapes are read.
  """
  key_of, style = key_function(fam)
  flat = nnx.to_flat_state(nnx.state(model, nnx.Not(nnx.RngState)))
  named = {key_of(path): (path, var) for path, var in flat}
  if len(named) != len(flat):
    raise AssertionError("two state paths map to one tensor name")
  return named, style


def state_dict(model: nnx.Module, fam: str) -> tuple[dict[str, np.ndarray], str]:
  """({tensor name: array}, key style); PyTorch layouts for the "pytorch" style."""
  named, style = named_variables(model, fam)
  layout = torch_convert.to_torch_layout if style == "pytorch" else np.asarray
  tensors = {
      key: np.ascontiguousarray(layout(np.asarray(jax.device_get(var[...]))))
      for key, (_, var) in named.items()
  }
  return tensors, style


def write_safetensors(model: nnx.Module, config: dict, name: str, folder: Path) -> None:
  """folder/model.safetensors (metadata: name, arch, key_style) and folder/config.json."""
  tensors, style = state_dict(model, family(config))
  metadata = {"name": name, "arch": config["arch"], "key_style": style}
  safetensors_numpy.save_file(tensors, str(folder / SAFETENSORS), metadata=metadata)
  (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def read_safetensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """(tensors, metadata) of a safetensors file."""
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top

  with safe_open(str(path), framework="numpy") as f:
    metadata = f.metadata() or {}
  return safetensors_numpy.load_file(str(path)), metadata


def _place(abstract: nnx.Module, tensors: dict, key_of, source: str) -> nnx.Module:
  """`abstract` with every array variable set from `tensors[key_of(path)]`, layouts as they are."""
  graphdef, state = nnx.split(abstract)
  flat = list(nnx.to_flat_state(state))
  keys = {key_of(path) for path, _ in flat}
  if keys != tensors.keys():
    odd = sorted(keys ^ tensors.keys())
    raise ValueError(f"{source}: tensors do not match the model: {', '.join(odd[:5])}")
  filled = []
  for path, var in flat:
    value = tensors[key_of(path)]
    if value.shape != tuple(var.shape):
      raise ValueError(f"{source}: {key_of(path)} has shape {value.shape}, expected {var.shape}")
    filled.append((path, var.replace(jnp.asarray(value, var.dtype))))
  return nnx.merge(graphdef, nnx.from_flat_state(filled))


def load_safetensors(folder: str | Path) -> nnx.Module:
  """The model of an exported safetensors folder, in eval mode.

  "pytorch" keys go back through the converter's own `fill` (JAX layouts restored, BatchNorm
  counters not needed), "provjax" keys onto their state paths.
  """
  folder = Path(folder)
  config = json.loads((folder / CONFIG).read_text())
  tensors, metadata = read_safetensors(folder / SAFETENSORS)
  abstract = nnx.eval_shape(lambda: registry.create_model(config["arch"], **config["overrides"]))
  key_of, style = key_function(family(config))
  if metadata.get("key_style", style) != style:
    raise ValueError(f"{folder}: key_style {metadata['key_style']!r}, expected {style!r}")
  source = str(folder / SAFETENSORS)
  if style == "pytorch":
    model = torch_convert.fill(abstract, tensors, source, key_of)
  else:
    model = _place(abstract, tensors, key_of, source)
  model.eval()
  return model


# --- StableHLO ---------------------------------------------------------------------------------

_IMAGES = (("images", 3),)
_IMAGENET = "uint8 RGB / 255, then ImageNet mean / std (provjax.models.copynce.preprocess)"


@dataclasses.dataclass(frozen=True)
class Signature:
  """An architecture's inference function as exported.

  inputs: (name, channels) of each float32 NHWC input; all share the batch and the size.
  forward: (model, *inputs) -> dict of arrays, in eval mode.
  input: how the system turns uint8 RGB into an input.
  spatial: the symbolic "H, W"; None for a size fixed by the config's preprocessing.
  constraints: on the symbols, what the model needs to trace (e.g. a minimum size).
  """

  inputs: tuple[tuple[str, int], ...]
  forward: Callable
  input: str
  spatial: str | None = "h, w"
  constraints: tuple[str, ...] = ()


SIGNATURES = {
    "trufor": Signature(
        _IMAGES,
        lambda m, x: m(x),
        "uint8 RGB / 256, whole image at native size (provjax.models.trufor.preprocess)",
        constraints=("h >= 32", "w >= 32"),  # every MiT stage keeps at least one token
    ),
    "repmix": Signature(
        _IMAGES,
        lambda m, x: m(x, train=False),
        "uint8 RGB / 255 after shorter side to `resize` and centre crop `crop` "
        "(normalised to [-1, 1] inside the model)",
    ),
    "simprov": Signature(
        _IMAGES,
        lambda m, x: {"descriptor": l2_normalize(m(x, train=False))},
        "uint8 RGB / 255, whole image resized to image_size square; descriptors L2-normalised "
        "as provjax.provenance.engine does",
    ),
    "simprov_comparator": Signature(
        (("refs", 3), ("queries", 3)),
        lambda m, r, q: m.predict(r, q),
        "uint8 RGB / 255, originals and queries each resized to image_size square",
    ),
    "sscd": Signature(_IMAGES, lambda m, x: m(x, train=False), _IMAGENET + ", resized to size"),
    # ViTs: the learned position embedding is used as it is only at the trained size.
    "copynce": Signature(
        _IMAGES, lambda m, x: m(x, train=False), _IMAGENET + ", resized to size", spatial=None
    ),
    "copynce_matcher": Signature(
        (("queries", 3), ("references", 3)),
        lambda m, q, r: m(q, r),
        _IMAGENET + ", resized to size",
        spatial=None,
    ),
    # SafePaint checks min(H, W), which symbolic H and W cannot decide: square sizes.
    "safepaint": Signature(
        (("images", 3), ("masks", 1)),
        lambda m, x, k: m(x, k, train=False),
        "images uint8 RGB / 255; masks float32, 1 = hole; square, side a multiple of 4, >= 64",
        spatial="4*s, 4*s",
        constraints=("s >= 16",),
    ),
    "vgg": Signature(_IMAGES, lambda m, x: m(x), "RGB float32 in [0, 1], no normalisation"),
    "genzoo": Signature(
        _IMAGES,
        lambda m, x: dict(zip(("images", "kl"), m(x))),
        "uint8 RGB / 255, sides multiples of 8",
        spatial="8*h, 8*w",
    ),
}


def _fixed_size(model: nnx.Module, config: dict) -> int:
  pre = config.get("preprocessing", {})
  return int(pre.get("size") or pre.get("image_size") or model.image_size)


def input_specs(sig: Signature, model: nnx.Module, config: dict) -> tuple[list[str], list]:
  """(shape strings, ShapeDtypeStructs) of the inputs: symbolic batch, symbolic or fixed H, W."""
  spatial = sig.spatial or ", ".join([str(_fixed_size(model, config))] * 2)
  dims = jax.export.symbolic_shape(f"b, {spatial}", constraints=sig.constraints)
  shapes = [f"b, {spatial}, {c}" for _, c in sig.inputs]
  return shapes, [jax.ShapeDtypeStruct((*dims, c), jnp.float32) for _, c in sig.inputs]


def _describe(tree) -> dict:
  """{dotted output name: {shape, dtype}} of a pytree of avals (symbolic dims as text)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
      jax.tree_util.keystr(path, simple=True, separator="."): {
          "shape": ", ".join(str(d) for d in aval.shape),
          "dtype": str(aval.dtype),
      }
      for path, aval in leaves
  }


def write_stablehlo(
    model: nnx.Module, config: dict, name: str, folder: Path, platforms=PLATFORMS
) -> None:
  """folder/model.stablehlo (the inference function, weights inside) and folder/export.json."""
  sig = SIGNATURES[family(config)]
  shapes, specs = input_specs(sig, model, config)
  graphdef, state = nnx.split(model)

  def infer(*inputs):
    # The state is closed over: the weights travel inside the module as constants.
    return sig.forward(nnx.merge(graphdef, state), *inputs)

  exported = jax.export.export(jax.jit(infer), platforms=platforms)(*specs)
  (folder / STABLEHLO).write_bytes(exported.serialize())
  meta = {
      "name": name,
      "arch": config["arch"],
      "inputs": [
          {"name": n, "shape": s, "dtype": "float32"} for (n, _), s in zip(sig.inputs, shapes)
      ],
      "constraints": list(sig.constraints),
      "size": "fixed by preprocessing" if sig.spatial is None else "polymorphic",
      "input": sig.input,
      "outputs": _describe(jax.tree.unflatten(exported.out_tree, exported.out_avals)),
      "preprocessing": config.get("preprocessing", {}),
      "platforms": list(exported.platforms),
  }
  (folder / EXPORT_META).write_text(json.dumps(meta, indent=2) + "\n")


def load_stablehlo(folder: str | Path) -> tuple[jax.export.Exported, dict]:
  """(the deserialized function, export.json); call it as `exported.call(*inputs)`."""
  folder = Path(folder)
  exported = jax.export.deserialize(bytearray((folder / STABLEHLO).read_bytes()))
  return exported, json.loads((folder / EXPORT_META).read_text())


# --- Orbax -------------------------------------------------------------------------------------


def write_orbax(name: str, folder: Path) -> None:
  """A checked copy of the released folder: the same layout `provjax.weights.load` reads."""
  if name not in weights.released():
    raise UnknownModelError(
        f"orbax export copies released weights; no release named {name!r} "
        f"(released: {', '.join(weights.released()) or 'none'})"
    )
  source = weights.root() / name
  weights.verify(source)
  shutil.copytree(source, folder, dirs_exist_ok=True)
  weights.verify(folder)


# --- the command -------------------------------------------------------------------------------


def _check_target(out: Path, force: bool) -> None:
  if out.exists() and not out.is_dir():
    raise FileExistsError(f"{out} exists and is not a folder")
  if out.is_dir() and any(out.iterdir()) and not force:
    raise FileExistsError(f"{out} is not empty; pass --force to replace it")


def export(
    name: str,
    fmt: str,
    out: str | Path,
    *,
    force: bool = False,
    platforms=PLATFORMS,
    model: nnx.Module | None = None,
) -> dict:
  """Write `out` in format `fmt`; returns {name, format, out, files, sha256}.

  `platforms` are those the StableHLO module is lowered for; `model` is `name`'s model
  when the caller has it loaded already (saves loading it again).

  Nothing is created for an unknown name or a refused `out`; on any failure the staging
  folder is removed and `out` is as it was.
  """
  if fmt not in FORMATS:
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
  _check_name(name)
  out = Path(out).absolute()
  _check_target(out, force)
  out.parent.mkdir(parents=True, exist_ok=True)
  staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
  try:
    if fmt == "orbax":
      write_orbax(name, staged)
    else:
      model, config = resolve(name) if model is None else (model, _config(name))
      if fmt == "stablehlo":
        write_stablehlo(model, config, name, staged, platforms)
      else:
        write_safetensors(model, config, name, staged)
    files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    sha256 = {f: weights.file_sha256(staged / f) for f in files}
    weights.swap_in(staged, out)
  except BaseException:
    shutil.rmtree(staged, ignore_errors=True)
    raise
  return {"name": name, "format": fmt, "out": str(out), "files": files, "sha256": sha256}


def _cmd_export(args) -> int:
  try:
    record = export(args.name, args.format, args.out, force=args.force)
  except (UnknownModelError, FileExistsError) as e:
    print(f"provjax export: error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(record))
  return 0


def add_command(sub) -> None:
  """Register `export` on the `provjax` subparsers."""
  p = sub.add_parser(
      "export",
      help="released weights as an Orbax folder, safetensors or a StableHLO module",
      description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("name", metavar="NAME", help="released arch.tag (or arch.variant: seed-0 weights)")
  p.add_argument("--format", required=True, choices=FORMATS)
  p.add_argument("--out", required=True, metavar="DIR", help="the folder to write")
  p.add_argument("--force", action="store_true", help="replace a non-empty DIR")
  p.set_defaults(fn=_cmd_export)
