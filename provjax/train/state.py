"""Training state (named modules + named optimizers) and the jitted step.

The state is `nnx.split({"models": {name: module}, "opts": {name: optimizer}})`;
checkpoints hold exactly that tree. Modules no optimizer names are frozen.
"""

from __future__ import annotations

import functools

from flax import nnx
import jax
import optax

from provjax import compile_options
from provjax.tasks.contract import Task
from provjax.train import mesh as mesh_lib


def build_state(config, task: Task, mesh):
  """(graphdef, state, frozen names), created sharded on `mesh` (eager sharding)."""
  with jax.set_mesh(mesh), nnx.logical_axis_rules(mesh_lib.sharding_rules(config)):
    models = task.create_models(config, nnx.Rngs(config.seed))
    specs = task.optimizers(config)
    unknown = sorted({s.module for s in specs.values()} - set(models))
    if unknown:
      raise ValueError(
          f"task {task.name!r}: optimizers name modules {unknown}; it has {sorted(models)}"
      )
    opts = {name: spec.make(models[spec.module]) for name, spec in specs.items()}
  frozen = tuple(sorted(set(models) - {s.module for s in specs.values()}))
  graphdef, state = nnx.split({"models": models, "opts": opts})
  return graphdef, state, frozen


def default_step(task: Task, specs: dict, models, opts, batch, rng, config) -> dict:
  """Gradients of `task.loss_fn` for the trained modules; each optimizer applies its part."""
  trained = {s.module for s in specs.values()}

  def loss_of(train_models, frozen_models):
    return task.loss_fn({**frozen_models, **train_models}, batch, rng, config)

  train_models = {n: m for n, m in models.items() if n in trained}
  frozen_models = {n: m for n, m in models.items() if n not in trained}
  (loss, metrics), grads = nnx.value_and_grad(loss_of, has_aux=True)(train_models, frozen_models)
  for name, spec in specs.items():
    opts[name].update(models[spec.module], grads[spec.module])
  return {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}


def make_train_step(graphdef, task: Task, config, state_sharding, frozen: tuple[str, ...]):
  """The pure, jitted update: (state, batch, step) -> (state, metrics).

  The state is donated so XLA updates it in place. Frozen modules get their
  input state back after the step, whatever the loss did to them (a
  BatchNorm called in training mode would otherwise move its statistics).
  """
  base_key = jax.random.key(config.seed)
  specs = task.optimizers(config)
  step_fn = task.train_step or functools.partial(default_step, task, specs)

  @functools.partial(
      jax.jit,
      donate_argnums=(0,),
      out_shardings=(state_sharding, None),
      compiler_options=compile_options.compiler_options(),
  )
  def train_step(state, batch, step):
    # Plain arrays, taken before the step: merge shares Variables with `state`.
    frozen_in = {name: nnx.to_pure_dict(state["models"][name]) for name in frozen}
    parts = nnx.merge(graphdef, state)
    models, opts = parts["models"], parts["opts"]
    rng = jax.random.fold_in(base_key, step)
    metrics = step_fn(models, opts, batch, rng, config)
    for name, arrays in frozen_in.items():
      restored = nnx.state(models[name])
      nnx.replace_by_pure_dict(restored, arrays)
      nnx.update(models[name], restored)
    return nnx.state(parts), metrics

  return train_step
