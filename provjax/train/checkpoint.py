"""Training checkpoints: an Orbax CheckpointManager around the train state.

Saves are asynchronous (the step loop goes on while tensorstore writes) and
atomic (Orbax writes into a temporary directory and renames it when done), so
a kill at any moment leaves the last complete step restorable.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Keeps the last `keep` train states under `directory`."""

  def __init__(self, directory: str | Path, *, keep: int = 3):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=True
    )
    self.manager = ocp.CheckpointManager(Path(directory).absolute(), options=options)

  @property
  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, *, force: bool = False) -> None:
    self.manager.save(step, args=ocp.args.StandardSave(state), force=force)

  def restore(self, state, step: int | None = None):
    """Restore into the shapes, dtypes and shardings of `state`."""
    step = self.latest_step if step is None else step
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    return self.manager.restore(step, args=ocp.args.StandardRestore(target))

  def restore_to_host(self, step: int | None = None) -> dict:
    """The saved tree as plain nested dicts of arrays on one local device.

    Works whatever mesh wrote the checkpoint; NNX Variables are saved as
    {"value": array} and come back as the bare array.
    """
    step = self.latest_step if step is None else step
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    meta = self.manager.item_metadata(step)
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)
    return _unwrap(self.manager.restore(step, args=ocp.args.StandardRestore(target)))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _unwrap(tree):
  if isinstance(tree, dict):
    if set(tree) == {"value"}:
      return tree["value"]
    return {k: _unwrap(v) for k, v in tree.items()}
  return tree
