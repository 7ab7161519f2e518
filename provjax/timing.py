"""Wall-clock and FLOP measurements shared by the bench sections of every system.

Here, below the systems, so that each system's `bench` module and the
`provjax bench` runner time things the same way without importing each other.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable


def seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> list[float]:
  """Wall-clock of `repeats` calls of `fn` after `warmup` untimed ones (compilation, caches)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return times


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
  """Median of `seconds`."""
  return statistics.median(seconds(fn, repeats, warmup))


def compiled_flops(compiled) -> float:
  """FLOPs XLA counts for one call of a compiled (`jit(f).lower(...).compile()`) function."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0))
