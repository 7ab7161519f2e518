"""`compile_options.compiler_options`: what the zoo's jitted functions compile with."""

import jax
import jax.numpy as jnp
import numpy as np

from provjax import compile_options


def test_cpu_options_keep_a_convolution_s_result():
  options = compile_options.compiler_options()
  assert options == compile_options.CPU_OPTIONS  # the test machine is a CPU
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 17, 17, 8)), jnp.float32)
  k = jnp.asarray(rng.standard_normal((3, 3, 8, 16)), jnp.float32)
  conv = lambda x, k: jax.lax.conv_general_dilated(
      x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  want = np.asarray(jax.jit(conv)(x, k))
  got = np.asarray(jax.jit(conv, compiler_options=options)(x, k))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_an_xla_without_the_option_gets_none(monkeypatch):
  monkeypatch.setattr(compile_options, "CPU_OPTIONS", {"xla_cpu_no_such_option": ""})
  compile_options.compiler_options.cache_clear()
  try:
    assert compile_options.compiler_options() == {}
  finally:
    compile_options.compiler_options.cache_clear()
