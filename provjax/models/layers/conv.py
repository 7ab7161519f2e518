"""Convolution and dense layers that carry logical sharding annotations.

Every parameter is annotated with logical axis names; `configs/*` map those
names onto the (`data`, `model`) mesh with `nnx.logical_axis_rules`. Keeping the
names logical lets the same model run replicated on one CPU or FSDP/tensor
sharded on a pod without code changes.
"""

from __future__ import annotations

from flax import nnx
import jax.numpy as jnp

# Logical axis names used by all convolutional models in the zoo.
# Small output layers (heads: 49 heatmap cells, 3 classes, 6 affine
# parameters, 2 flow channels) use the logical name "head", which the rules
# leave unsharded: such sizes rarely divide a mesh axis.
HEAD = "head"
# Every logical axis name a parameter may carry; rules that do not mention
# one leave it replicated (see `provjax.train.mesh.sharding_rules`).
LOGICAL_AXES = ("conv_in", "conv_out", "embed_in", "embed_out", HEAD)


def conv(
    in_ch: int,
    out_ch: int,
    kernel: int,
    *,
    rngs: nnx.Rngs,
    strides: int = 1,
    use_bias: bool = False,
    dtype=jnp.float32,
    out_axis: str = "conv_out",
) -> nnx.Conv:
  """A `kernel x kernel` conv with 'SAME'-style padding and He-normal init."""
  pad = (kernel - 1) // 2
  return nnx.Conv(
      in_ch,
      out_ch,
      (kernel, kernel),
      strides=(strides, strides),
      padding=((pad, pad), (pad, pad)),
      use_bias=use_bias,
      dtype=dtype,
      kernel_init=nnx.with_partitioning(
          nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
          (None, None, "conv_in", out_axis),
      ),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros, (out_axis,)),
      rngs=rngs,
  )


def batch_norm(
    ch: int, *, rngs: nnx.Rngs, zero_init: bool = False, dtype=jnp.float32
) -> nnx.BatchNorm:
  """BatchNorm with torchvision's momentum (0.1 -> 0.9 here) and eps."""
  scale_init = nnx.initializers.zeros if zero_init else nnx.initializers.ones
  return nnx.BatchNorm(
      ch,
      momentum=0.9,
      epsilon=1e-5,
      dtype=dtype,
      scale_init=nnx.with_partitioning(scale_init, ("conv_out",)),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("conv_out",)),
      rngs=rngs,
  )


def dense(
    in_dim: int,
    out_dim: int,
    *,
    rngs: nnx.Rngs,
    kernel_init=None,
    dtype=jnp.float32,
    out_axis: str = "embed_out",
) -> nnx.Linear:
  """Linear layer with annotated kernel and bias."""
  kernel_init = kernel_init or nnx.initializers.lecun_normal()
  return nnx.Linear(
      in_dim,
      out_dim,
      dtype=dtype,
      kernel_init=nnx.with_partitioning(kernel_init, ("embed_in", out_axis)),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros, (out_axis,)),
      rngs=rngs,
  )
