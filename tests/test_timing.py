"""provjax.timing: the timer counts its calls."""

from provjax import timing


def test_seconds_times_each_repeat_after_the_warmup():
  calls = []
  times = timing.seconds(lambda: calls.append(1), repeats=4, warmup=2)
  assert len(calls) == 6 and len(times) == 4 and all(t >= 0 for t in times)
