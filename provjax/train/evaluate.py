"""Evaluate a training work dir (latest checkpoint) or released weights."""

from __future__ import annotations

from pathlib import Path

from flax import nnx

from provjax import tasks, weights
from provjax.train import mesh as mesh_lib
from provjax.train.checkpoint import Checkpointer
from provjax.train.trainer import build_state


def restore_model(config, workdir: str | Path) -> tuple[nnx.Module, int]:
  """The model of the latest checkpoint in a `provjax train` work dir."""
  ckpt = Checkpointer(Path(workdir) / "checkpoints")
  if ckpt.latest_step is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints")
  task = tasks.get(config.task)
  mesh = mesh_lib.make_mesh(tuple(config.mesh.shape))
  graphdef, state = build_state(config, task, mesh)
  step = ckpt.latest_step
  state = ckpt.restore(state, step)
  ckpt.close()
  return nnx.merge(graphdef, state)["model"], step


def evaluate_checkpoint(config, checkpoint: str) -> dict:
  """`task.evaluate` on a work dir's latest checkpoint or on `arch.tag` weights."""
  task = tasks.get(config.task)
  if Path(checkpoint).is_dir():
    model, step = restore_model(config, checkpoint)
  else:
    model, step = weights.load(checkpoint), None
  return {"checkpoint": str(checkpoint), "step": step, **task.evaluate(model, config)}
