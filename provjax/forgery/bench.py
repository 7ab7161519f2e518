"""TruFor's section of `provjax bench` (printed, not asserted).

  detect   images/s of `provjax detect`'s jitted forward (batch 1, whole image) at
           512x512 and 1024x1024 for trufor.tiny and trufor.b2 (b2 at 1024 is
           left out under --quick), the compiled executable's memory (XLA's
           memory analysis: generated code + arguments + outputs + temporaries)
           and the process's peak resident memory so far; ELA at the same sizes
           for scale.

`SECTIONS` maps each name to (title, fn); `fn(quick, peak)` returns table rows.
"""

from __future__ import annotations

import resource

import numpy as np

from provjax.timing import median_seconds

MIB = 2**20


def compiled_bytes(compiled) -> int:
  """Generated code + argument + output + temp bytes of a compiled executable."""
  m = compiled.memory_analysis()
  return (
      m.generated_code_size_in_bytes
      + m.argument_size_in_bytes
      + m.output_size_in_bytes
      + m.temp_size_in_bytes
  )


def max_rss_bytes() -> int:
  """Peak resident memory of this process so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cases(quick: bool) -> list[tuple[str, int, int]]:
  """(variant, side, repeats); b2 at 1024 is slow on a CPU, so it is timed once or twice."""
  cases = [("tiny", 512, 5), ("tiny", 1024, 3), ("b2", 512, 3), ("b2", 1024, 2)]
  if quick:
    cases = [(v, s, 2) for v, s, _ in cases if (v, s) != ("b2", 1024)]
  return cases


def bench_detect(quick: bool, peak: float) -> list[dict]:
  del peak  # latency and memory, not a fraction of the matmul ceiling
  import provjax
  from provjax.models import ela
  from provjax.forgery.detect import Detector

  rng = np.random.default_rng(0)
  rows, detectors = [], {}
  for variant, side, repeats in _cases(quick):
    if variant not in detectors:
      detectors[variant] = Detector(provjax.create_model(f"trufor.{variant}"))
    detector = detectors[variant]
    image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    compiled = detector.compiled(side, side)
    sec = median_seconds(lambda: detector(image), repeats=repeats)
    rows.append(
        {
            "model": f"trufor.{variant}",
            "size": f"{side}x{side}",
            "images/s": 1.0 / sec,
            "ms/image": 1e3 * sec,
            "compiled MiB": compiled_bytes(compiled) / MIB,
            "max RSS MiB": max_rss_bytes() / MIB,
        }
    )
  for side in (512, 1024):
    image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    sec = median_seconds(lambda: ela.ela(image), repeats=3)
    rows.append(
        {
            "model": "ELA (numpy + Pillow)",
            "size": f"{side}x{side}",
            "images/s": 1.0 / sec,
            "ms/image": 1e3 * sec,
            "compiled MiB": "-",  # not compiled
            "max RSS MiB": max_rss_bytes() / MIB,
        }
    )
  return rows


SECTIONS = {"detect": ("TruFor detect (jitted forward, batch 1, native size)", bench_detect)}
