"""The CopyNCE matcher (specs/copy_detection.md, section 6): is the query a copy of the reference?

As in eddielyc/CopyNCE `ClassificationCopyDetector` with the default matching
config (cls_head and fusion_head of depth 0):

    q = encoder(xq), r = encoder(xr)      shared ViT blocks, all tokens incl. CLS, no final norm
    x = fusion([c; q; r])                 a new learned CLS c, joint blocks, then LayerNorm
    logit = Dense(1)(LN_cls(x[:, 0]))     the classification head
    q_tokens, r_tokens = LN_tok(x's patch tokens of q), LN_tok(... of r)

The joint sequence adds no segment or position embedding: the encoder's
position embedding (added per image before the shared blocks) is all the
fusion blocks see, and each image keeps its own encoder CLS token in it.
`q_tokens` / `r_tokens` (the fusion head's output, normalised twice: by the
fusion's LayerNorm and the head's) are what the matcher's CopyNCE loss takes.
Every LayerNorm uses eps 1e-4. The official eval mode returns sigmoid(logit);
this module returns the logit.

Inputs are NHWC float32 ImageNet-normalised (`copynce.preprocess`).
"""

from __future__ import annotations

from flax import nnx
import jax.numpy as jnp

from provjax.models import copynce, vit
from provjax.models.layers.conv import HEAD

VARIANTS = {
    # The tiny ViT's blocks, 4 shared + 2 fusion (ViT-S: 8 + 4).
    "tiny": dict(backbone="tiny", shared_depth=4, fusion_depth=2),
    # The paper's: DINO ViT-S/16 blocks 1-8 shared, 9-12 fused, at 224.
    "vits16": dict(backbone="s16", shared_depth=8, fusion_depth=4),
}


class Fusion(nnx.Module):
  """[B, T, C] -> [B, 1 + T, C]: a learned CLS prepended, transformer blocks, LayerNorm."""

  def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, *, rngs: nnx.Rngs):
    self.cls_token = vit.token_param((1, 1, dim), rngs=rngs)
    self.blocks = vit.make_blocks(
        depth, dim, heads, mlp_dim, ln_eps=copynce.COPYNCE_LN_EPS, rngs=rngs
    )
    self.norm = vit.layer_norm(dim, eps=copynce.COPYNCE_LN_EPS, rngs=rngs)

  def __call__(self, tokens):
    b, _, c = tokens.shape
    cls = jnp.broadcast_to(self.cls_token[...].astype(tokens.dtype), (b, 1, c))
    x = jnp.concatenate([cls, tokens], axis=1)
    for block in self.blocks:
      x = block(x)
    return self.norm(x)


class CopyNCEMatcher(nnx.Module):
  """(query, reference) images -> {logit [B], q_tokens / r_tokens [B, L, C], CLS tokens [B, C]}."""

  def __init__(
      self,
      backbone: str,
      shared_depth: int,
      fusion_depth: int,
      *,
      rngs: nnx.Rngs,
      image_size: int | None = None,
  ):
    sizes = {} if image_size is None else dict(image_size=image_size)
    self.encoder = copynce.encoder(backbone, rngs=rngs, depth=shared_depth, **sizes)
    self.image_size = self.encoder.image_size
    spec = vit.VARIANTS[backbone]
    dim = spec["dim"]
    self.fusion = Fusion(dim, fusion_depth, spec["heads"], spec["mlp_dim"], rngs=rngs)
    self.cls_norm = vit.layer_norm(dim, eps=copynce.COPYNCE_LN_EPS, rngs=rngs)
    self.classifier = vit.linear(dim, 1, rngs=rngs, out_axis=HEAD)
    self.token_norm = vit.layer_norm(dim, eps=copynce.COPYNCE_LN_EPS, rngs=rngs)

  def __call__(self, xq, xr, *, train: bool = False):
    """`train` is accepted for the task interface; the matcher has no train-only layers."""
    del train
    q = self.encoder(xq)["tokens"]
    r = self.encoder(xr)["tokens"]
    x = self.fusion(jnp.concatenate([q, r], axis=1))
    nq = q.shape[1]
    head_cls = self.cls_norm(x[:, 0])
    return {
        "logit": self.classifier(head_cls)[:, 0],
        "q_tokens": self.token_norm(x[:, 2 : 1 + nq]),  # skips the fusion CLS and q's CLS
        "r_tokens": self.token_norm(x[:, 2 + nq :]),
        "q_cls": q[:, 0],
        "r_cls": r[:, 0],
        "fused_cls": x[:, 0],
        "head_cls": head_cls,
    }


def create(variant: str = "tiny", *, rngs: nnx.Rngs, **overrides) -> CopyNCEMatcher:
  """Build a variant from VARIANTS; keyword overrides (image_size, depths) replace entries."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown copynce_matcher variant {variant!r}; choose from {sorted(VARIANTS)}")
  return CopyNCEMatcher(**{**VARIANTS[variant], **overrides}, rngs=rngs)
