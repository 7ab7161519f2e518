"""provjax.timing: the percentile the bench quotes is numpy's, and the timer counts its calls."""

import numpy as np
import pytest

from provjax import timing


@pytest.mark.parametrize("n", [1, 2, 7, 20])
def test_percentile_matches_numpy(n):
  times = list(np.random.default_rng(n).random(n))
  for q in (0, 50, 95, 100):
    assert timing.percentile(times, q) == pytest.approx(np.percentile(times, q))


def test_seconds_times_each_repeat_after_the_warmup():
  calls = []
  times = timing.seconds(lambda: calls.append(1), repeats=4, warmup=2)
  assert len(calls) == 6 and len(times) == 4 and all(t >= 0 for t in times)
