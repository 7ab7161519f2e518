"""SafePaint's section of `provjax bench` (printed, not asserted).

  inpaint  images/s of `provjax inpaint`'s jitted forward (`Inpainter.batch`:
           uint8 in, merged uint8 out, host padding and cropping included) at
           256x256 and 512x512, batch 1 and 4, for safepaint.tiny and
           safepaint.full with fresh weights (speed does not depend on them;
           the hole is a centred square of a quarter of the image), the
           compiled executable's memory (XLA's memory analysis) and the
           process's peak resident memory so far. Under --quick: batch 1 only,
           and full at 256 only.

`SECTIONS` maps each name to (title, fn); `fn(quick, peak)` returns table rows.
"""

from __future__ import annotations

import numpy as np

from provjax.forgery.bench import MIB, compiled_bytes, max_rss_bytes
from provjax.timing import median_seconds


def _cases(quick: bool) -> list[tuple[str, int, int, int]]:
  """(variant, side, batch, repeats); full at 512 is slow on a CPU, so it is timed twice."""
  repeats = {("tiny", 256): 5, ("tiny", 512): 5, ("full", 256): 3, ("full", 512): 2}
  cases = [
      (variant, side, batch, repeats[variant, side])
      for variant in ("tiny", "full")
      for side in (256, 512)
      for batch in (1, 4)
  ]
  if quick:
    cases = [(v, s, 1, 2) for v, s, b, _ in cases if b == 1 and (v, s) != ("full", 512)]
  return cases


def _inputs(batch: int, side: int) -> tuple[np.ndarray, np.ndarray]:
  """Random images and a centred square hole covering a quarter of each."""
  images = np.random.default_rng(0).integers(0, 256, (batch, side, side, 3), dtype=np.uint8)
  holes = np.zeros((batch, side, side), bool)
  holes[:, side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = True
  return images, holes


def bench_inpaint(quick: bool, peak: float) -> list[dict]:
  del peak  # latency and memory, not a fraction of the matmul ceiling
  import provjax
  from provjax.inpainting.inpainter import Inpainter

  rows, inpainters = [], {}
  for variant, side, batch, repeats in _cases(quick):
    if variant not in inpainters:
      inpainters[variant] = Inpainter(provjax.create_model(f"safepaint.{variant}"))
    inpainter = inpainters[variant]
    images, holes = _inputs(batch, side)
    compiled = inpainter.compiled(batch, side, side)
    sec = median_seconds(lambda: inpainter.batch(images, holes), repeats=repeats)
    rows.append(
        {
            "model": f"safepaint.{variant}",
            "size": f"{side}x{side}",
            "batch": batch,
            "images/s": batch / sec,
            "ms/batch": 1e3 * sec,
            "compiled MiB": compiled_bytes(compiled) / MIB,
            "max RSS MiB": max_rss_bytes() / MIB,
        }
    )
  return rows


SECTIONS = {"inpaint": ("SafePaint inpaint (jitted forward, native size)", bench_inpaint)}
