"""Official PyTorch state dicts -> provjax NNX models: what every weights converter shares.

A converter says which official state-dict key each provjax parameter carries
(`official_key`, with that system's renaming rules); `fill` then places every
tensor of the state dict (read by `provjax.torch_format.load_state_dict`) on
its parameter of an abstract model, in JAX layout: conv kernels
(O, I, kh, kw) -> (kh, kw, I, O) (depthwise (C, 1, kh, kw) -> (kh, kw, 1, C)),
Linear weights (out, in) -> (in, out), everything else (biases, norm scales,
BatchNorm running statistics, tokens, position embeddings) as it is;
BatchNorm `num_batches_tracked` counters are dropped. The check is exhaustive
in both directions: an official key no parameter claims, a parameter whose
key is absent, or a shape that does not fit stops the conversion with a
one-line ConversionError naming the key.

    key_of = functools.partial(torch_convert.official_key, rules=RULES)
    model = torch_convert.fill(nnx.eval_shape(make), state_dict, "w.pth.tar", key_of)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
import json
from pathlib import Path
import re
import sys

from flax import nnx
import jax.numpy as jnp
import numpy as np

# provjax leaf name -> official parameter name, for the layers every converter meets.
LEAVES = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}


class ConversionError(ValueError):
  """A state dict does not fit the provjax model it is converted into."""


def official_key(path: tuple, rules: Sequence[tuple], leaves: dict[str, str] = LEAVES) -> str:
  """provjax state path (module parts + leaf) -> the official state-dict key.

  `rules` are (pattern, replacement) pairs of `re.sub`, applied in order to the
  dotted module path; `leaves` names the leaf.
  """
  *module, leaf = path
  name = ".".join(str(p) for p in module)
  for pattern, repl in rules:
    name = re.sub(pattern, repl, name)
  return f"{name}.{leaves[leaf]}"


def to_jax_layout(value: np.ndarray) -> np.ndarray:
  """PyTorch conv (O, I, kh, kw) -> (kh, kw, I, O); Linear (out, in) -> (in, out)."""
  if value.ndim == 4:
    return value.transpose(2, 3, 1, 0)
  if value.ndim == 2:
    return value.T
  return value


def to_torch_layout(value: np.ndarray) -> np.ndarray:
  """Inverse of `to_jax_layout`: conv (kh, kw, I, O) -> (O, I, kh, kw); (in, out) -> (out, in)."""
  if value.ndim == 4:
    return value.transpose(3, 2, 0, 1)
  if value.ndim == 2:
    return value.T
  return value


def official_shape(shape) -> tuple:
  """The PyTorch shape of a provjax parameter of `shape` (inverse of `to_jax_layout`)."""
  shape = tuple(shape)
  if len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  return shape[::-1] if len(shape) == 2 else shape


def _bn_counters(keys: Iterable[str]) -> set[str]:
  """The `num_batches_tracked` key of every BatchNorm: in the file, not needed here."""
  suffix = ".running_mean"
  return {k.removesuffix(suffix) + ".num_batches_tracked" for k in keys if k.endswith(suffix)}


def _first(names, n: int = 5) -> str:
  """The first `n` names in sorted order, and how many more: an error stays one line."""
  names = sorted(names)
  more = f" (+{len(names) - n} more)" if len(names) > n else ""
  return ", ".join(names[:n]) + more


def fill(
    abstract: nnx.Module,
    state_dict: dict[str, np.ndarray],
    source: str,
    key_of: Callable[[tuple], str],
) -> nnx.Module:
  """A model shaped like `abstract` whose parameters are `state_dict`'s, in JAX layouts.

  `key_of` maps a provjax state path to its official key; `source` (the file)
  starts every error message.
  """
  graphdef, state = nnx.split(abstract)
  flat = list(nnx.to_flat_state(state))
  params = {key_of(path): (path, var) for path, var in flat}
  if len(params) != len(flat):
    raise AssertionError("two provjax parameters map to one official key")
  missing = params.keys() - state_dict.keys()
  if missing:
    raise ConversionError(f"{source}: missing official key(s) {_first(missing)}")
  extra = state_dict.keys() - params.keys() - _bn_counters(params)
  if extra:
    raise ConversionError(f"{source}: unexpected key(s) {_first(extra)}")
  filled = []
  for key, (path, var) in params.items():
    value = to_jax_layout(np.asarray(state_dict[key]))
    if value.shape != tuple(var.shape):
      raise ConversionError(
          f"{source}: {key} has shape {np.shape(state_dict[key])}, "
          f"expected {official_shape(var.shape)}"
      )
    filled.append((path, var.replace(jnp.asarray(value, var.dtype))))
  return nnx.merge(graphdef, nnx.from_flat_state(filled))


# ---------------------------------------------- `provjax convert` arguments ---


def run_converter(fn: Callable, args) -> int:
  """`provjax convert`'s handler: `fn(file, name)` -> folder, printed as {name, folder} JSON;
  a file it cannot convert is one line on stderr and exit 1."""
  from provjax.data.images import failure_line  # pylint: disable=g-import-not-at-top

  try:
    folder = fn(args.file, args.name)
  except Exception as e:  # pylint: disable=broad-exception-caught
    # Nothing is half-written: weights.export swaps a complete folder in or leaves the old one.
    print(f"provjax convert: error: {failure_line(args.file, e)}", file=sys.stderr)
    return 1
  print(json.dumps({"name": args.name, "folder": str(folder)}))
  return 0


def add_convert_command(
    convert,
    system: str,
    arch: str,
    fn,
    *,
    help: str,
    description: str,
    file_help: str,
    example: str,
) -> None:
  """`provjax convert SYSTEM FILE --name ARCH.<tag>` under the runner's `convert` group."""
  p = convert.add_parser(system, help=help, description=description)
  p.add_argument("file", metavar="FILE", type=existing_file, help=file_help)
  p.add_argument(
      "--name",
      required=True,
      type=released_name(arch),
      help=f"name of the released weights, {arch}.<tag> (e.g. {arch}.{example})",
  )
  p.set_defaults(fn=fn)


def existing_file(text: str) -> str:
  """An argparse type: the path of an existing file (the state dict to convert)."""
  if not Path(text).is_file():
    raise argparse.ArgumentTypeError(f"{text}: no such file")
  return text


def released_name(arch: str):
  """An argparse type: `arch.<tag>`, the name of the released-weights folder to write."""

  def parse(text: str) -> str:
    tag = text.removeprefix(f"{arch}.")
    if tag == text or not tag or "/" in tag or tag.startswith("."):
      raise argparse.ArgumentTypeError(
          f"expected {arch}.<tag> (e.g. {arch}.official), got {text!r}"
      )
    return text

  parse.__name__ = "name"
  return parse
