"""Trainable tasks. Each module `provjax.tasks.<name>` exposes:

- `create_model(config, rngs)` -> an NNX model built from `config.model`;
- `train_data(config, *, start_step)` -> iterator of host-local numpy batches;
- `loss_fn(model, batch, rng, config)` -> (scalar loss, dict of scalar metrics);
- `evaluate(model, config)` -> dict of scalar metrics on the held-back split;
- `SCHEMA`: the batch keys, shapes and dtypes the task expects.

The trainer knows nothing else about a task.
"""

import importlib


def get(name: str):
  """The task module `provjax.tasks.<name>`."""
  try:
    return importlib.import_module(f"provjax.tasks.{name}")
  except ModuleNotFoundError as e:
    raise ValueError(f"unknown task {name!r}") from e
