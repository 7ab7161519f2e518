"""XLA's CPU defaults beside `provjax.compile_options`, side by side in one run.

    flock /tmp/bench.lock python scripts/bench_compile_options.py [--r50] [--repeats 4]

Train steps of the SImProv descriptor configs (the trainer's own step, a
synthetic batch) and gradients of the other systems' models (eval-mode
forward, mean square of the outputs: the same convolutions forward and
backward), each compiled twice, with no options and with
`compile_options.compiler_options()`, and timed in alternation. Prints the
medians and their ratio; `--r50` adds the r50 descriptor step (about 2 min a
round with XLA's defaults).
"""

from __future__ import annotations

import argparse
import statistics
import time

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from provjax import compile_options
import provjax
from provjax.bench import matmul_peak
from provjax.timing import compiled_flops

CONFIGS = "configs/simprov/descriptor.py"
# (model, image size, batch): one forward + backward each.
GRADIENTS = [
    ("trufor.tiny", 128, 8),
    ("noiseprint.tiny", 128, 8),
    ("noiseprint.full", 128, 4),
    ("repmix.tiny", 128, 16),
    ("copynce.tiny", 64, 32),
    ("sscd.tiny", 64, 32),
]


def alternate(calls: dict, repeats: int) -> dict:
  """name -> median seconds of `fn()`, the calls taking turns (first round dropped)."""
  times = {name: [] for name in calls}
  for _ in range(repeats + 1):
    for name, fn in calls.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t[1:]) for name, t in times.items()}


def train_rows(arg: str, batch: int, repeats: int, peak: float) -> list[str]:
  """The descriptor config's train step under both option sets."""
  from provjax import tasks
  from provjax.config import load_config
  from provjax.train import mesh as mesh_lib
  from provjax.train import state as state_lib

  config = load_config(f"{CONFIGS}:{arg}", [f"train.batch_size={batch}"])
  mesh = mesh_lib.make_mesh(tuple(config.mesh.shape))
  graphdef, state, frozen = state_lib.build_state(config, tasks.get(config.task), mesh)
  sharding = jax.tree.map(lambda x: x.sharding, state)
  make = lambda: state_lib.make_train_step(
      graphdef, tasks.get(config.task), config, sharding, frozen
  )
  zoo_step = make()
  # The trainer's step takes its options when it is built: build one without.
  real, compile_options.compiler_options = compile_options.compiler_options, lambda: {}
  try:
    default_step = make()
  finally:
    compile_options.compiler_options = real
  s, v = config.data.image_size, config.data.npos
  views = np.random.default_rng(0).integers(0, 255, (batch, v, s, s, 3), dtype=np.uint8)
  with jax.set_mesh(mesh):
    b = mesh_lib.shard_batch({"views": views}, mesh)
    compiled = {
        "XLA defaults": default_step.lower(state, b, jnp.int32(0)).compile(),
        "compile_options": zoo_step.lower(state, b, jnp.int32(0)).compile(),
    }
    flops = compiled_flops(compiled["XLA defaults"])
    states = {name: jax.tree.map(jnp.copy, state) for name in compiled}

    def runner(name):
      def run():
        states[name], metrics = compiled[name](states[name], b, jnp.int32(0))
        jax.block_until_ready(metrics)

      return run

    sec = alternate({name: runner(name) for name in compiled}, repeats)
  return [
      f"descriptor:{arg} train step, {batch} x {v} views | {1e3 * sec[n]:,.0f} ms | "
      f"{flops / sec[n] / 1e9 / peak:.2f} of peak | {n}"
      for n in sec
  ] + [f"  ratio {sec['XLA defaults'] / sec['compile_options']:.2f}x"]


def gradient_rows(name: str, size: int, batch: int, repeats: int) -> list[str]:
  model = provjax.create_model(name)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  x = jnp.asarray(np.random.default_rng(0).random((batch, size, size, 3), np.float32))

  def loss(params, rest, x):
    out = nnx.merge(graphdef, params, rest)(x, train=False)
    return sum(jnp.mean(jnp.square(o.astype(jnp.float32))) for o in jax.tree.leaves(out))

  lowered = jax.jit(jax.grad(loss)).lower(params, rest, x)
  calls = {}
  for label, options in [
      ("XLA defaults", {}),
      ("compile_options", compile_options.compiler_options()),
  ]:
    compiled = lowered.compile(compiler_options=options)
    compiled(params, rest, x)
    calls[label] = lambda c=compiled: jax.block_until_ready(c(params, rest, x))
  sec = alternate(calls, repeats)
  return [
      f"{name} gradient, {batch} x {size} px | {1e3 * sec['XLA defaults']:,.0f} ms -> "
      f"{1e3 * sec['compile_options']:,.0f} ms | "
      f"{sec['XLA defaults'] / sec['compile_options']:.2f}x"
  ]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--repeats", type=int, default=4)
  parser.add_argument("--r50", action="store_true", help="also the r50 descriptor step")
  args = parser.parse_args()
  peak = matmul_peak()
  print(f"options: {compile_options.compiler_options()}; numpy matmul peak {peak:.0f} GFLOP/s")
  lines = train_rows("tiny", 32, 3 * args.repeats, peak)
  if args.r50:
    lines += train_rows("r50", 8, args.repeats, peak)
  for name, size, batch in GRADIENTS:
    lines += gradient_rows(name, size, batch, args.repeats)
  print("\n".join(lines))


if __name__ == "__main__":
  main()
