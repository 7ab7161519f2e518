"""The contract between a task module and the trainer.

A task module `provjax.tasks.<name>` defines:

- `SCHEMA`: {key: Field}, the batch it expects (one form for every task);
- `create_models(config, rngs) -> {name: nnx.Module}` (or `create_model(config,
  rngs)` for a single module, which is then named "model");
- `optimizers(config) -> {name: Optim}` (optional; default: one optimizer from
  `config.optimizer` over every parameter of every module). A module that no
  optimizer names is frozen: the trainer restores its whole state (parameters,
  batch statistics, counters) after every step, so it is bit-identical;
- `loss_fn(models, batch, rng, config) -> (loss, metrics)`; `models` is the
  {name: module} dict;
- `train_step(models, opts, batch, rng, config) -> metrics` (optional): a pure
  step of its own that updates the modules in place through the named
  optimizers, e.g. a discriminator then a generator; the metrics hold `loss`.
  Pass every module a transformed function calls as an argument of
  `nnx.value_and_grad` (never close over one: NNX refuses to mutate a
  BatchNorm from another trace level);
- `train_data(config, *, start_step)` -> iterator of host-local numpy batches;
- `evaluate(models, config) -> {name: value}`: floats are metrics, 2-D or 3-D
  arrays are pictures (written as PNG beside metrics.jsonl).
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any, Callable, Mapping

from flax import nnx
import numpy as np
import optax

from provjax.tasks.optim import make_optimizer


@dataclasses.dataclass(frozen=True)
class Field:
  """One batch entry: symbolic shape (str dims are named sizes), dtype and meaning."""

  shape: tuple
  dtype: str
  doc: str


@dataclasses.dataclass(frozen=True)
class Optim:
  """A named optimizer: `tx` updates the parameters of `module` selected by `wrt`.

  `wrt` is any NNX filter (e.g. `nnx.PathContains("head")`); it is always
  intersected with `nnx.Param`, so batch statistics are never optimised.
  """

  module: str
  tx: optax.GradientTransformation
  wrt: Any = nnx.Param

  def make(self, module: nnx.Module) -> nnx.Optimizer:
    return nnx.Optimizer(module, self.tx, wrt=nnx.All(nnx.Param, self.wrt))


@dataclasses.dataclass(frozen=True)
class Task:
  """A task module with the contract's defaults filled in."""

  name: str
  schema: Mapping[str, Field]
  create_models: Callable[..., dict]
  optimizers: Callable[..., dict]
  loss_fn: Callable | None
  train_step: Callable | None
  train_data: Callable
  evaluate: Callable


def from_module(name: str, module: ModuleType) -> Task:
  """Read a task module, filling in the single-model and one-optimizer defaults."""
  if hasattr(module, "create_models"):
    create = module.create_models
  else:
    create = lambda config, rngs: {"model": module.create_model(config, rngs)}
  optimizers = getattr(module, "optimizers", default_optimizers)
  step, loss = getattr(module, "train_step", None), getattr(module, "loss_fn", None)
  if step is None and loss is None:
    raise ValueError(f"task {name!r} defines neither loss_fn nor train_step")
  return Task(
      name=name,
      schema=module.SCHEMA,
      create_models=create,
      optimizers=optimizers,
      loss_fn=loss,
      train_step=step,
      train_data=module.train_data,
      evaluate=module.evaluate,
  )


def default_optimizers(config, module_names=("model",)) -> dict[str, Optim]:
  """One optimizer per module from `config.optimizer` (the single-model default)."""
  return {
      f"opt_{m}"
      if len(module_names) > 1
      else "opt": Optim(m, make_optimizer(config.optimizer, config.train.steps))
      for m in module_names
  }


def check_batch(batch: Mapping, schema: Mapping[str, Field], *, task: str, sizes=None) -> None:
  """Raise ValueError naming the first entry of `batch` that breaks `schema`.

  `sizes` fixes named dimensions in advance (e.g. {"B": 32}); other named
  dimensions must agree across entries.
  """
  sizes = dict(sizes or {})
  prefix = f"task {task!r}: batch"
  for key, field in schema.items():
    if key not in batch:
      raise ValueError(f"{prefix} lacks {key!r} ({field.doc}); it has {sorted(batch)}")
    value = batch[key]
    shape = tuple(np.shape(value))
    want = "(" + ", ".join(str(s) for s in field.shape) + ")"
    if len(shape) != len(field.shape):
      raise ValueError(f"{prefix}[{key!r}] has shape {shape}, expected {want} ({field.doc})")
    for dim, sym in zip(shape, field.shape):
      expected = sizes.setdefault(sym, dim) if isinstance(sym, str) else sym
      if dim != expected:
        raise ValueError(
            f"{prefix}[{key!r}] has shape {shape}, expected {want} with {sym}={expected}"
        )
    if np.dtype(value.dtype) != np.dtype(field.dtype):
      raise ValueError(f"{prefix}[{key!r}] is {value.dtype}, expected {field.dtype}")
  extra = sorted(set(batch) - set(schema))
  if extra:
    raise ValueError(f"{prefix} has keys {extra} that the task's SCHEMA does not declare")
