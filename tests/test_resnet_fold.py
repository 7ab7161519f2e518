"""`resnet.fold_batch_norm`: the inference form of the ResNet models computes what eval mode does."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import provjax
from provjax import compile_options
from provjax.models import resnet


def trained_like(model, rng):
  """`model` with running statistics and affine BatchNorm parameters away from their init."""
  for _, bn in nnx.iter_modules(model):
    if isinstance(bn, nnx.BatchNorm):
      n = bn.mean.shape[0]
      bn.mean[...] = jnp.asarray(rng.normal(0.0, 0.5, n), jnp.float32)
      bn.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, n), jnp.float32)
      bn.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, n), jnp.float32)
      bn.bias[...] = jnp.asarray(rng.normal(0.0, 0.2, n), jnp.float32)
  return model


def forward(model, x, **jit_kwargs):
  """`model(x)` (eval mode) jitted from (graphdef, state), as the engine runs it."""
  graphdef, state = nnx.split(model)
  return np.asarray(jax.jit(lambda s, im: nnx.merge(graphdef, s)(im), **jit_kwargs)(state, x))


def count(model, kind) -> int:
  return sum(isinstance(m, kind) for _, m in nnx.iter_modules(model))


def test_folded_descriptor_matches_the_eval_model():
  rng = np.random.default_rng(0)
  model = trained_like(provjax.create_model("simprov.tiny"), rng)
  folded = resnet.fold_batch_norm(model)
  assert count(folded, nnx.BatchNorm) == 0 and count(model, nnx.BatchNorm) == 12
  assert folded.image_size == model.image_size
  x = jnp.asarray(rng.random((2, 64, 64, 3)), jnp.float32)
  want = forward(model, x)
  tol = dict(rtol=1e-5, atol=1e-5 * np.abs(want).max())
  np.testing.assert_allclose(forward(folded, x), want, **tol)
  options = compile_options.compiler_options()
  np.testing.assert_allclose(forward(folded, x, compiler_options=options), want, **tol)


def test_folding_leaves_the_model_alone_and_refuses_training():
  model = provjax.create_model("simprov.tiny")
  before = jax.tree.map(np.asarray, nnx.state(model))
  folded = resnet.fold_batch_norm(model)
  jax.tree.map(np.testing.assert_array_equal, nnx.state(model), before)
  assert count(model, nnx.BatchNorm) == 12
  with pytest.raises(ValueError, match="inference"):
    folded(jnp.zeros((1, 64, 64, 3)), train=True)
  # Folding twice changes nothing more.
  again = resnet.fold_batch_norm(folded)
  jax.tree.map(np.testing.assert_array_equal, nnx.state(again), nnx.state(folded))
