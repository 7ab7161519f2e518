"""The trainer: one loop for every task in the zoo.

Reads top to bottom: distributed init, mesh, named models & optimizers, train
step, checkpoint/resume (or init_from), loop with logging, evaluation and the
NaN/inf guard. It knows nothing model-specific: the task (`provjax.tasks`,
contract in `provjax.tasks.contract`) gives the models, optimizers, data,
loss or step, and evaluation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
import signal
import threading
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from provjax import tasks
from provjax.tasks.contract import check_batch
from provjax.train import init_from, snapshot
from provjax.train import mesh as mesh_lib
from provjax.train.checkpoint import Checkpointer
from provjax.train.logging import MetricWriter, all_finite, to_python, write_pictures
from provjax.train.state import build_state, make_train_step


class NonFiniteError(FloatingPointError):
  """Raised when a logged loss or metric is NaN or infinite."""


@dataclasses.dataclass
class TrainResult:
  models: dict[str, nnx.Module]
  step: int
  metrics: dict
  stopped_early: bool = False


class _StopOnSignal:
  """SIGTERM -> finish the current step, save a checkpoint, exit cleanly."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    # Signal handlers can only be installed from the main thread.
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def train(config, workdir: str | Path, *, progress: bool = True) -> TrainResult:
  """Train `config` in `workdir`, resuming from its latest checkpoint if any."""
  workdir = Path(workdir)
  ##### Distributed: one process per host on pods; a no-op on one machine.
  if config.get("distributed", False):
    jax.distributed.initialize()
  task = tasks.get(config.task)

  ##### Mesh, named models and optimizers.
  mesh = mesh_lib.make_mesh(tuple(config.mesh.shape))
  graphdef, state, frozen = build_state(config, task, mesh)
  state_sharding = jax.tree.map(lambda x: x.sharding, state)
  train_step = make_train_step(graphdef, task, config, state_sharding, frozen)

  ##### Checkpoints: resume automatically from the work dir, else init_from.
  ckpt = Checkpointer(workdir / "checkpoints", keep=config.train.keep)
  start = ckpt.latest_step or 0
  if start:
    snapshot.check_resume(config, workdir)
    state = ckpt.restore(state)
    print(f"provjax: resuming {workdir} from step {start}", file=sys.stderr)
  else:
    init_from.apply(state, config.get("init_from"), log=lambda m: print(m, file=sys.stderr))
  snapshot.write(config, workdir)
  if frozen:
    print(f"provjax: frozen modules: {', '.join(frozen)}", file=sys.stderr)

  ##### Loop.
  steps, tc = config.train.steps, config.train
  writer = MetricWriter(workdir / "metrics.jsonl")
  data = task.train_data(config, start_step=start)
  logged, stopped = {}, False
  bar = tqdm(
      total=steps,
      initial=start,
      disable=not progress or jax.process_index() != 0,
      file=sys.stderr,
      desc=config.task,
      dynamic_ncols=True,
  )
  with _StopOnSignal() as stop, jax.set_mesh(mesh):
    for step in range(start, steps):
      local = next(data)
      if step == start:  # the batch contract, once, with a message that names the entry
        check_batch(local, task.schema, task=task.name, sizes={"B": _local_batch(config)})
      batch = mesh_lib.shard_batch(local, mesh)
      state, metrics = train_step(state, batch, jnp.int32(step))
      done = step + 1
      bar.update(1)
      # Read the flag once: a SIGTERM landing mid-iteration must not skip the save.
      stopping = stop.requested
      last = done == steps or stopping
      if done % tc.log_every == 0 or last:
        logged = _log(writer, done, metrics, bar)
      if done % tc.ckpt_every == 0 or last:
        if not all_finite(logged := to_python(metrics)):
          raise NonFiniteError(f"non-finite metrics at step {done}: {logged}; not saving")
        ckpt.save(done, state, force=True)
      if tc.get("eval_every") and (done % tc.eval_every == 0 or done == steps):
        models = nnx.merge(graphdef, state)["models"]
        logged = {**logged, **_evaluate(task, models, config, workdir, writer, done)}
      if stopping:
        stopped = True
        break
  bar.close()
  if hasattr(data, "close"):  # stops the pipeline's worker processes, if any
    data.close()
  ckpt.close()
  models = nnx.merge(graphdef, state)["models"]
  return TrainResult(
      models=dict(models),
      step=done if steps > start else start,
      metrics=logged,
      stopped_early=stopped,
  )


def _log(writer, step, metrics, bar) -> dict:
  """Fetch metrics (one host sync), stop on NaN/inf, write a JSONL line."""
  values = to_python(metrics)
  if not all_finite(values):
    raise NonFiniteError(
        f"non-finite metrics at step {step}: {values}; lower the learning rate or check the data"
    )
  writer.write(step, values)
  bar.set_postfix(loss=f"{values['loss']:.4f}")
  return values


def _local_batch(config) -> int:
  return config.train.batch_size // jax.process_count()


def _evaluate(task, models, config, workdir, writer, step) -> dict:
  """Scalars to metrics.jsonl; pictures (2-D/3-D arrays) to eval/<step>/<name>.png."""
  out = task.evaluate(models, config)
  pictures = {k: v for k, v in out.items() if np.ndim(v) in (2, 3)}
  values = {f"eval/{k}": float(v) for k, v in out.items() if np.ndim(v) == 0}
  writer.write(step, values)
  write_pictures(Path(workdir) / "eval" / str(step), pictures)
  return values
