"""Compiled inference takes the weights as arguments instead of baking them in.

A jitted function that closes over the model state lowers every weight to a
`stablehlo.constant`: the r50 descriptor's module then carries ~96 MB of
constants and the comparator's ~200 MB (measured), copied at each compile.
With the state as an argument only small literals (normalisation constants,
scalars) remain.
"""

from __future__ import annotations

from flax import nnx
import jax
from jax.extend.mlir import ir
import jax.numpy as jnp
import numpy as np
import pytest

import provjax
from provjax.provenance.engine import compare_fn, embed_fn

LIMIT = 1 << 20


def constant_bytes(module: ir.Module) -> int:
  """Bytes held by the `stablehlo.constant` ops of a lowered module.

  The size comes from each constant's tensor type (elements x element width)
  rather than from the printed text, whose encoding of large constants (hex
  strings, resource blobs) varies between versions; a splat (one value
  broadcast to a shape) stores a single element and counts as one.
  """
  total = 0

  def visit(op):
    nonlocal total
    if op.name == "stablehlo.constant":
      kind = op.result.type
      value = op.attributes["value"]
      splat = isinstance(value, ir.DenseElementsAttr) and value.is_splat
      elements = 1 if splat else int(np.prod(kind.shape))
      total += elements * max(1, kind.element_type.width // 8)
    return ir.WalkResult.ADVANCE

  module.operation.walk(visit)
  return total


@pytest.mark.parametrize(
    "name, make_fn, inputs",
    [("simprov.r50", embed_fn, 1), ("simprov_comparator.r50", compare_fn, 2)],
)
def test_r50_inference_lowers_without_weight_constants(name, make_fn, inputs):
  # Shapes are enough to lower: no parameter memory is allocated.
  model = nnx.eval_shape(lambda: provjax.create_model(name))
  graphdef, state = nnx.split(model)
  images = jax.ShapeDtypeStruct((2, model.image_size, model.image_size, 3), jnp.uint8)
  lowered = make_fn(graphdef).lower(state, *[images] * inputs)
  module = lowered.compiler_ir("stablehlo")
  assert 0 < constant_bytes(module) < LIMIT
