"""Config files: `path/to/file.py:arg` -> ml_collections ConfigDict.

A config file defines `get_config(arg: str = "")`. Overrides use dotted keys,
`train.steps=100`, parsed as Python literals when possible (the CLI accepts
them as `--config.train.steps=100`). Config files are executed as Python, so
they must be trusted input.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import ml_collections


def _exec_file(path: Path, name: str):
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def sibling(config_file: str, name: str):
  """The config module `name`.py beside `config_file` (configs/ is not a package)."""
  path = Path(config_file).with_name(f"{name}.py")
  return _exec_file(path, f"provjax_config_{path.parent.name}_{name}")


def load_config(
    spec: str, overrides: list[str] | tuple[str, ...] = ()
) -> ml_collections.ConfigDict:
  """Run `get_config(arg)` from `file.py[:arg]` and apply `a.b=value` overrides."""
  path, _, arg = spec.partition(":")
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"config file not found: {path}")
  module = _exec_file(path, f"provjax_config_{path.stem}")
  config = module.get_config(arg) if arg else module.get_config()
  for item in overrides:
    apply_override(config, item)
  return config


def parse_value(text: str):
  # Shell users write booleans the way YAML and JSON do, not only as Python's True/False.
  if text.lower() in ("true", "false"):
    return text.lower() == "true"
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # plain strings need no quotes on the command line


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
  """Set `a.b.c=value`; unknown keys are an error (catches typos)."""
  key, sep, value = item.partition("=")
  if not sep:
    raise ValueError(f"override {item!r} must look like key=value")
  *parents, leaf = key.removeprefix("config.").split(".")
  node = config
  for name in parents:
    if name not in node:
      raise KeyError(f"unknown config key {key!r}")
    node = node[name]
  if leaf not in node:
    raise KeyError(f"unknown config key {key!r}")
  value = parse_value(value)
  if isinstance(node[leaf], float) and isinstance(value, int):
    value = float(value)
  if isinstance(node[leaf], str) and not isinstance(value, str):
    value = str(value)
  node[leaf] = value
