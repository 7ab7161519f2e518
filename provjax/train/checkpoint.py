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

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
