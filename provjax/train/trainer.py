"""The trainer: one loop for every task in the zoo.

Reads top to bottom: distributed init, mesh, model & optimizer, train step,
checkpoint/resume, loop with logging, evaluation and the NaN/inf guard. It
knows nothing model-specific: the task module (`provjax.tasks.<name>`) gives
the model, the data, the loss and the evaluation.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
import signal
import threading
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import optax
from tqdm import tqdm

from provjax import tasks
from provjax.train import mesh as mesh_lib
from provjax.train.checkpoint import Checkpointer
from provjax.train.logging import MetricWriter, all_finite, to_python
from provjax.train.optim import make_optimizer


class NonFiniteError(FloatingPointError):
  """Raised when a logged loss or metric is NaN or infinite."""


@dataclasses.dataclass
class TrainResult:
  model: nnx.Module
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


def make_train_step(graphdef, task, config, state_sharding):
  """The pure, jitted update: (state, batch, step) -> (state, metrics).

  The state (model + optimizer) is donated so XLA updates it in place.
  """
  base_key = jax.random.key(config.seed)

  @functools.partial(jax.jit, donate_argnums=(0,), out_shardings=(state_sharding, None))
  def train_step(state, batch, step):
    parts = nnx.merge(graphdef, state)
    model, optimizer = parts["model"], parts["opt"]
    rng = jax.random.fold_in(base_key, step)

    def loss_of(m):
      return task.loss_fn(m, batch, rng, config)

    (loss, metrics), grads = nnx.value_and_grad(loss_of, has_aux=True)(model)
    optimizer.update(model, grads)
    metrics = {**metrics, "loss": loss, "grad_norm": optax.global_norm(grads)}
    return nnx.state(parts), metrics

  return train_step


def build_state(config, task, mesh):
  """Model + optimizer created sharded on `mesh` (eager sharding under the mesh)."""
  with jax.set_mesh(mesh), nnx.logical_axis_rules(mesh_lib.sharding_rules(config)):
    model = task.create_model(config, nnx.Rngs(config.seed))
    optimizer = nnx.Optimizer(
        model, make_optimizer(config.optimizer, config.train.steps), wrt=nnx.Param
    )
  return nnx.split({"model": model, "opt": optimizer})


def train(config, workdir: str | Path, *, progress: bool = True) -> TrainResult:
  """Train `config` in `workdir`, resuming from its latest checkpoint if any."""
  workdir = Path(workdir)
  ##### Distributed: one process per host on pods; a no-op on one machine.
  if config.get("distributed", False):
    jax.distributed.initialize()
  task = tasks.get(config.task)

  ##### Mesh, model, optimizer.
  mesh = mesh_lib.make_mesh(tuple(config.mesh.shape))
  graphdef, state = build_state(config, task, mesh)
  state_sharding = jax.tree.map(lambda x: x.sharding, state)
  train_step = make_train_step(graphdef, task, config, state_sharding)

  ##### Checkpoints: resume automatically from the work dir.
  ckpt = Checkpointer(workdir / "checkpoints", keep=config.train.keep)
  start = ckpt.latest_step or 0
  if start:
    state = ckpt.restore(state)
    print(f"provjax: resuming {workdir} from step {start}", file=sys.stderr)

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
      batch = mesh_lib.shard_batch(next(data), mesh)
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
        model = nnx.merge(graphdef, state)["model"]
        logged = {**logged, **_evaluate(task, model, config, writer, done)}
      if stopping:
        stopped = True
        break
  bar.close()
  ckpt.close()
  model = nnx.merge(graphdef, state)["model"]
  return TrainResult(
      model=model, step=done if steps > start else start, metrics=logged, stopped_early=stopped
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


def _evaluate(task, model, config, writer, step) -> dict:
  values = {f"eval/{k}": float(v) for k, v in task.evaluate(model, config).items()}
  writer.write(step, values)
  return values
