"""RepMix's section of `provjax bench` (printed, not asserted).

  attribute   images/s of `provjax attribute`'s jitted forward at 224 x 224 for
              repmix.tiny and repmix.r50 (fresh weights: speed does not depend
              on them), batch 1 and batch 32, and the whole Attributor path
              (resize + crop + forward) on 224-px images with the tiny model
              at its own input size.

`SECTIONS` maps each name to (title, fn); `fn(quick, peak)` returns table rows.
"""

from __future__ import annotations

import numpy as np

from provjax.timing import median_seconds


def _forward_rows(variant: str, batches, repeats: int) -> list[dict]:
  import jax  # pylint: disable=g-import-not-at-top
  import provjax  # pylint: disable=g-import-not-at-top
  from provjax.tasks import repmix as repmix_task  # pylint: disable=g-import-not-at-top

  model = provjax.create_model(f"repmix.{variant}")
  model.eval()
  rows = []
  for batch in batches:
    images = np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
    run = lambda: jax.block_until_ready(repmix_task.predict(model, images, batch_size=batch))
    run()  # compile
    sec = median_seconds(run, repeats=repeats)
    rows.append(
        {
            "model": f"repmix.{variant}",
            "input": "224x224",
            "batch": batch,
            "images/s": batch / sec,
            "ms/batch": 1e3 * sec,
        }
    )
  return rows


def bench_attribute(quick: bool, peak: float) -> list[dict]:
  del peak  # throughput, not a fraction of the matmul ceiling
  from provjax.attribution.attributor import Attributor  # pylint: disable=g-import-not-at-top
  import provjax  # pylint: disable=g-import-not-at-top

  repeats = 2 if quick else 5
  rows = _forward_rows("tiny", (1, 32), repeats)
  rows += _forward_rows("r50", (1,) if quick else (1, 32), repeats)
  tiny = provjax.create_model("repmix.tiny")
  tiny.eval()
  attributor = Attributor(
      tiny,
      classes=tuple(f"c{i}" for i in range(7)),
      resize=64,
      crop=56,
      threshold=0.5,
      batch_size=32,
  )
  images = list(np.random.default_rng(1).integers(0, 256, (32, 224, 224, 3), dtype=np.uint8))
  attributor(images)  # compile
  sec = median_seconds(lambda: attributor(images), repeats=repeats)
  rows.append(
      {
          "model": "repmix.tiny Attributor (resize + crop to 56 + forward)",
          "input": "224x224",
          "batch": 32,
          "images/s": 32 / sec,
          "ms/batch": 1e3 * sec,
      }
  )
  return rows


SECTIONS = {"attribute": ("RepMix attribute (jitted forward)", bench_attribute)}
