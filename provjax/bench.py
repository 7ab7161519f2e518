"""`provjax bench`: speed figures for the zoo on this machine (printed, not asserted).

Always first, `peak`: the fp32 matmul ceiling (numpy 4096^3), the denominator
of every fraction. Then the sections each system package offers in its `bench`
module (`SECTIONS`: name -> (title, fn(quick, peak))), in package order; select
them with `--only` (e.g. provenance's models, train, pipeline, retrieval,
provenance; see `provjax/provenance/bench.py`). Medians of repeated wall-clock
timings, all measured side by side in one run.
"""

from __future__ import annotations

import jax
import numpy as np

from provjax import systems
from provjax.timing import median_seconds


def matmul_peak(n: int = 4096) -> float:
  """GFLOP/s of a numpy fp32 n^3 matmul (the machine's compute ceiling)."""
  a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
  return 2 * n**3 / median_seconds(lambda: a @ a, repeats=3) / 1e9


def sections() -> dict:
  """Every system's sections, name -> (title, fn), in package order."""
  found = {}
  for module in systems.plugins("bench"):
    found.update(module.SECTIONS)
  return found


def print_rows(rows: list[dict] | None) -> None:
  """A `|`-separated table; nothing for a section that printed its own (None)."""
  if not rows:
    return
  cols = list(dict.fromkeys(c for r in rows for c in r))  # every row's columns, in order
  fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
  print(" | ".join(cols))
  for r in rows:
    print(" | ".join(fmt(r[c]) if c in r else "-" for c in cols), flush=True)


def run(only=None, quick: bool = False) -> None:
  """Prints `peak`, then each selected section (all when `only` is empty)."""
  print(
      f"provjax bench on {jax.devices()[0].platform} x{jax.device_count()}"
      f"{' (quick)' if quick else ''}",
      flush=True,
  )
  peak = matmul_peak(2048 if quick else 4096)
  print("\n## peak")
  print_rows([{"numpy fp32 matmul GFLOP/s": peak}])
  for name, (title, fn) in sections().items():
    if not only or name in only:
      print(f"\n## {title}", flush=True)
      print_rows(fn(quick, peak))
