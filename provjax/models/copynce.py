"""The CopyNCE descriptor (Lu et al., ICCV 2025; specs/copy_detection.md, section 6).

    ViT (no final norm) -> CLS -> Dense(no bias) -> BatchNorm1d -> L2 normalise

As in eddielyc/CopyNCE (`build_encoder`, `LinearHead`): every LayerNorm of the
encoder uses eps 1e-4 and the encoder has no final LayerNorm, so the CLS token
that feeds the head and the patch tokens that the CopyNCE loss takes
(`block_outputs[11][:, 1:]`, the last block's output) are un-normalised
residual-stream tokens. BatchNorm1d: eps 1e-5, running statistics in eval.

Inputs are NHWC float32 already ImageNet-normalised (`preprocess`), the way
the official loader gives them: uint8 / 255, then (x - mean) / std. Resizing
to the model's size is the data pipeline's job. The DINO recipe freezes the
patch embedding; that is a training choice, and its parameters live under
`encoder.patch_embed` for a task to filter.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp

from provjax.models import vit
from provjax.models.layers.preprocess import imagenet_normalize

COPYNCE_LN_EPS = 1e-4  # the official norm_layer, partial(nn.LayerNorm, eps=1e-4)

VARIANTS = {
    # The tiny ViT with a 256-d descriptor (the descriptor track allows d <= 256).
    "tiny": dict(backbone="tiny", out_dim=256),
    # The paper's: ViT-S/16 at 224, 512-d.
    "vits16": dict(backbone="s16", out_dim=512),
}


def preprocess(images_uint8) -> jax.Array:
  """uint8 RGB (any leading shape, channels last) -> float32 / 255, ImageNet-normalised."""
  return imagenet_normalize(jnp.asarray(images_uint8, jnp.float32) / 255.0)


def l2_normalize(x, eps: float = 1e-12):
  """x / max(||x||, eps) along the last axis (torch.nn.functional.normalize)."""
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
  return x / jnp.maximum(norm, eps)


def encoder(name: str, *, rngs: nnx.Rngs, **overrides) -> vit.ViT:
  """A VARIANTS ViT the way CopyNCE builds it: LayerNorm eps 1e-4, no final norm."""
  return vit.create(name, rngs=rngs, final_norm=False, ln_eps=COPYNCE_LN_EPS, **overrides)


class CopyNCEDescriptor(nnx.Module):
  """Image -> {feat [B, D] unit vectors, cls [B, C], patches [B, L, C]}."""

  def __init__(self, backbone: str, out_dim: int, *, rngs: nnx.Rngs, image_size: int | None = None):
    sizes = {} if image_size is None else dict(image_size=image_size)
    self.encoder = encoder(backbone, rngs=rngs, **sizes)
    self.image_size = self.encoder.image_size
    self.fc = nnx.Linear(
        self.encoder.dim,
        out_dim,
        use_bias=False,
        # LinearHead's xavier_normal_ init.
        kernel_init=nnx.with_partitioning(
            nnx.initializers.xavier_normal(), ("embed_in", "embed_out")
        ),
        rngs=rngs,
    )
    self.bn = nnx.BatchNorm(
        out_dim,
        momentum=0.9,  # PyTorch's momentum 0.1
        epsilon=1e-5,
        use_fast_variance=False,
        scale_init=nnx.with_partitioning(nnx.initializers.ones, ("embed_out",)),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("embed_out",)),
        rngs=rngs,
    )

  def __call__(self, x, *, train: bool = False):
    out = self.encoder(x)
    feat = self.bn(self.fc(out["cls"]), use_running_average=not train)
    return {"feat": l2_normalize(feat), "cls": out["cls"], "patches": out["patches"]}


def create(variant: str = "tiny", *, rngs: nnx.Rngs, **overrides) -> CopyNCEDescriptor:
  """Build a variant from VARIANTS; keyword overrides (out_dim, image_size, ...) replace entries."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown copynce variant {variant!r}; choose from {sorted(VARIANTS)}")
  return CopyNCEDescriptor(**{**VARIANTS[variant], **overrides}, rngs=rngs)
