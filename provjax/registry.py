"""timm-style model lookup: `arch.variant` builds, `arch.tag` loads weights.

Architectures are found by module name (`provjax.models.<arch>`), each module
exposing `VARIANTS` and `create(variant, *, rngs, **overrides)`; there is no
central table to edit when a model is added. Released weights live in
`checkpoints/<arch>.<tag>/`; `provjax.weights` builds on this module, never the
other way round.
"""

from __future__ import annotations

import importlib
import pkgutil

from flax import nnx
import jax

import provjax.models


def _arch_module(arch: str):
  try:
    module = importlib.import_module(f"provjax.models.{arch}")
  except ModuleNotFoundError as e:
    raise ValueError(f"unknown architecture {arch!r}; see `provjax models`") from e
  if not hasattr(module, "VARIANTS"):
    raise ValueError(f"provjax.models.{arch} is not an architecture (no VARIANTS table)")
  return module


def split_name(name: str) -> tuple[str, str]:
  arch, _, rest = name.partition(".")
  if not rest:
    raise ValueError(f"model names look like 'arch.variant' or 'arch.tag', got {name!r}")
  return arch, rest


def architectures() -> list[str]:
  """Module names under provjax.models that define a VARIANTS table."""
  names = []
  for info in pkgutil.iter_modules(provjax.models.__path__):
    if not info.ispkg and hasattr(
        importlib.import_module(f"provjax.models.{info.name}"), "VARIANTS"
    ):
      names.append(info.name)
  return sorted(names)


def create_model(name: str, *, rngs: nnx.Rngs | None = None, seed: int = 0, **overrides):
  """Build `arch.variant` with fresh weights.

  Inside `jax.set_mesh(mesh)` (with `nnx.logical_axis_rules`) parameters are
  created sharded; outside any mesh they are plain single-device arrays.
  """
  arch, variant = split_name(name)
  module = _arch_module(arch)
  rngs = rngs or nnx.Rngs(seed)
  if jax.sharding.get_abstract_mesh().empty:
    with nnx.use_eager_sharding(False):
      return module.create(variant, rngs=rngs, **overrides)
  return module.create(variant, rngs=rngs, **overrides)


def list_models() -> list[str]:
  """All `arch.variant` names (released `arch.tag`s are `provjax.weights.released()`)."""
  return [f"{a}.{v}" for a in architectures() for v in _arch_module(a).VARIANTS]
