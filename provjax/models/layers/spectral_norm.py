"""A convolution with spectral normalisation, as `torch.nn.utils.spectral_norm` (Miyato et al. 2018).

The kernel used is W / sigma(W), sigma the largest singular value of the
weight seen as PyTorch's (out, in * kh * kw) matrix, estimated by power
iteration. The iteration vectors `u` (out,) and `v` (in * kh * kw,) are
non-trainable state (`nnx.BatchStat`, so checkpoints keep them and no
optimizer touches them), in PyTorch's element order so official `weight_u`
/ `weight_v` buffers map onto them unchanged. In training mode every call
runs one iteration (n_power_iterations = 1) without gradient and stores the
vectors; sigma = u^T W v is then differentiated through W alone. In eval
mode the stored vectors are used as they are.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp

EPS = 1e-12  # torch's normalize eps in the power iteration
_HIGHEST = jax.lax.Precision.HIGHEST  # the iteration's products are tiny; keep them exact


def normalize(x: jax.Array, eps: float = EPS) -> jax.Array:
  """x / max(||x||_2, eps), as torch.nn.functional.normalize."""
  return x / jnp.maximum(jnp.linalg.norm(x), eps)


def weight_matrix(kernel: jax.Array) -> jax.Array:
  """An HWIO kernel as PyTorch's (out, in * kh * kw) weight matrix."""
  return jnp.transpose(kernel, (3, 2, 0, 1)).reshape(kernel.shape[3], -1)


def power_iteration(w: jax.Array, u: jax.Array, eps: float = EPS) -> tuple[jax.Array, jax.Array]:
  """One step on a stopped-gradient W: v = normalize(W^T u), then u = normalize(W v)."""
  w = jax.lax.stop_gradient(w)
  v = normalize(jnp.dot(w.T, u, precision=_HIGHEST), eps)
  u = normalize(jnp.dot(w, v, precision=_HIGHEST), eps)
  return u, v


class SpectralConv(nnx.Module):
  """Conv (no bias, zero padding `padding` on each side) with a spectrally normalised kernel."""

  def __init__(
      self,
      in_ch: int,
      out_ch: int,
      kernel: int,
      *,
      rngs: nnx.Rngs,
      strides: int = 1,
      padding: int = 0,
      kernel_init=nnx.initializers.normal(0.02),
      out_axis: str = "conv_out",
      eps: float = EPS,
  ):
    self.strides, self.padding, self.eps = strides, padding, eps
    init = nnx.with_partitioning(kernel_init, (None, None, "conv_in", out_axis))
    self.kernel = nnx.Param(init(rngs.params(), (kernel, kernel, in_ch, out_ch)))
    # torch draws u and v from N(0, 1) and normalises them once, independently of W.
    self.u = nnx.BatchStat(normalize(jax.random.normal(rngs.params(), (out_ch,)), eps))
    self.v = nnx.BatchStat(
        normalize(jax.random.normal(rngs.params(), (in_ch * kernel * kernel,)), eps)
    )

  def sigma(self, *, train: bool = False) -> jax.Array:
    """The spectral-norm estimate u^T W v (after this call's iteration when `train`)."""
    w = weight_matrix(self.kernel[...])
    u, v = self.u[...], self.v[...]
    if train:
      u, v = power_iteration(w, u, self.eps)
      self.u[...], self.v[...] = u, v
    return jnp.dot(u, jnp.dot(w, v, precision=_HIGHEST), precision=_HIGHEST)

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    kernel = self.kernel[...] / self.sigma(train=train)
    pad = (self.padding, self.padding)
    return jax.lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        (self.strides, self.strides),
        (pad, pad),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
