"""Trainable tasks: one module `provjax.tasks.<name>` per task.

What a task module defines is in `provjax.tasks.contract`; `get(name)` reads it
with the defaults filled in. The trainer knows nothing else about a task.
"""

import importlib

from provjax.tasks.contract import Task, from_module


def get(name: str) -> Task:
  """The task `provjax.tasks.<name>`, or any importable module `name` (a user's own task)."""
  for module_name in (f"provjax.tasks.{name}", name):
    try:
      return from_module(name, importlib.import_module(module_name))
    except ModuleNotFoundError as e:
      if e.name != module_name:
        raise
  raise ValueError(f"unknown task {name!r} (not provjax.tasks.{name}, nor an importable module)")
