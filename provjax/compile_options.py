"""XLA options the zoo's jitted model functions compile with (`jax.jit(..., compiler_options=)`).

jax 0.10's CPU backend hands convolutions to YNNPACK by default; on this
machine's AVX2 CPU, Eigen's kernels run them much faster: the r50 descriptor
forward 1.5x (1.7x with `resnet.fold_batch_norm`; scripts/bench_descriptor_torch.py)
and its train step 3.5x (scripts/bench_compile_options.py). An empty list of YNN
fusion types sends every op back to Eigen. Other backends, and an XLA that no
longer has the option, get no options.
"""

from __future__ import annotations

import functools

import jax

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def compiler_options() -> dict:
  """The options for the default backend (initialises it: call when building a jitted function)."""
  if jax.default_backend() != "cpu":
    return {}
  try:
    jax.jit(lambda x: x + 1).lower(1.0).compile(compiler_options=CPU_OPTIONS)
  except jax.errors.JaxRuntimeError:  # an XLA without this option
    return {}
  return dict(CPU_OPTIONS)
