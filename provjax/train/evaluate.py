"""Evaluate a training work dir (latest checkpoint) or released weights."""

from __future__ import annotations

from pathlib import Path

from flax import nnx
import numpy as np

from provjax import tasks, weights
from provjax.train import mesh as mesh_lib
from provjax.train import snapshot
from provjax.train.checkpoint import Checkpointer
from provjax.train.state import build_state


def _with_train_state_of(config, workdir):
  """`config` with the optimizer and trained parts the work dir was trained with.

  They shape the optimizer state saved beside the models, so an evaluation
  config that names another optimizer (e.g. the paper's SGD for an AdamW run)
  still restores the checkpoint; the models do not depend on them.
  """
  path = Path(workdir) / "config.json"
  if not path.is_file():
    return config
  saved = snapshot.read(workdir)
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for key in ("optimizer", "train_parts"):
      if key in saved:
        config[key] = saved[key]
  return config


def restore_models(config, workdir: str | Path) -> tuple[dict[str, nnx.Module], int]:
  """The named models of the latest checkpoint in a `provjax train` work dir."""
  ckpt = Checkpointer(Path(workdir) / "checkpoints")
  if ckpt.latest_step is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints")
  task = tasks.get(config.task)
  mesh = mesh_lib.make_mesh(tuple(config.mesh.shape))
  graphdef, state, _ = build_state(_with_train_state_of(config, workdir), task, mesh)
  step = ckpt.latest_step
  state = ckpt.restore(state, step)
  ckpt.close()
  return dict(nnx.merge(graphdef, state)["models"]), step


def restore_model(config, workdir: str | Path, name: str = "model") -> tuple[nnx.Module, int]:
  """One named model (default: a single-model task's) of a work dir's latest checkpoint."""
  models, step = restore_models(config, workdir)
  return models[name], step


def evaluate_checkpoint(config, checkpoint: str) -> dict:
  """`task.evaluate` on a work dir's latest checkpoint or on `arch.tag` weights.

  Released weights hold one module: they stand for a single-model task's
  `model`.
  """
  task = tasks.get(config.task)
  if Path(checkpoint).is_dir():
    models, step = restore_models(config, checkpoint)
  else:
    models, step = {"model": weights.load(checkpoint)}, None
  out = task.evaluate(models, config)
  # Pictures (arrays) are for the trainer's eval/ folder; the command prints scalars.
  scalars = {k: v for k, v in out.items() if np.ndim(v) == 0}
  return {"checkpoint": str(checkpoint), "step": step, **scalars}
