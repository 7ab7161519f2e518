"""Device mesh and logical-to-mesh sharding rules, both taken from the config.

The mesh always has the axes (`data`, `model`). `config.mesh.shape` may use -1
for "all remaining devices", e.g. (-1, 1) is pure data parallelism and (4, 2)
splits 8 devices into 4-way data x 2-way model parallelism.
"""

from __future__ import annotations

import math

import jax
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from provjax.models.layers.conv import LOGICAL_AXES

MESH_AXES = ("data", "model")


def resolve_shape(shape, n_devices: int) -> tuple[int, int]:
  """Replace a single -1 entry by what is left of the device count."""
  shape = list(shape)
  known = math.prod(s for s in shape if s != -1)
  if shape.count(-1) > 1 or n_devices % known:
    raise ValueError(f"mesh shape {tuple(shape)} does not fit {n_devices} devices")
  return tuple(n_devices // known if s == -1 else s for s in shape)


def make_mesh(shape=(-1, 1), devices=None) -> jax.sharding.Mesh:
  """A (`data`, `model`) mesh over `devices` (default: all devices)."""
  devices = devices if devices is not None else jax.devices()
  shape = resolve_shape(shape, len(devices))
  if math.prod(shape) != len(devices):
    devices = devices[: math.prod(shape)]
  return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 2, devices=devices)


def sharding_rules(config) -> tuple[tuple[str, str | None], ...]:
  """`config.sharding_rules` as `nnx.logical_axis_rules` wants them.

  Logical names the config does not mention are replicated (mapped to None);
  without that, an unmapped name is an error when a parameter is created.
  """
  rules = [(name, axis) for name, axis in config.sharding_rules]
  named = {name for name, _ in rules}
  return tuple(rules + [(name, None) for name in LOGICAL_AXES if name not in named])


def batch_sharding(mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`, everything else replicated."""
  return NamedSharding(mesh, P("data"))


def shard_batch(batch: dict, mesh) -> dict:
  """Host-local numpy batch -> global jax arrays sharded over `data`.

  `make_array_from_process_local_data` is what makes this multi-host ready:
  each process passes only its own slice of the global batch.
  """
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
