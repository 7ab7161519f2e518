"""Official TruFor weights (trufor.pth.tar) -> a provjax released-weights folder.

    path = convert_trufor("weights/trufor.pth.tar", "trufor.official")
    model = provjax.load("trufor.official")

The official state dict (specs/trufor_state_dict.tsv) is read without torch
(`provjax.torch_format`) and placed on the provjax TruFor by
`provjax.torch_convert.fill`: JAX layouts, `num_batches_tracked` dropped, and
an exhaustive two-way check of keys and shapes. This module holds the rules
that derive the official name of every provjax parameter from its path.
"""

from __future__ import annotations

from pathlib import Path

from flax import nnx
import numpy as np

from provjax import registry, torch_convert, torch_format, weights
from provjax.models import trufor

ARCH = "trufor.b2"

# provjax module path -> official module path, applied in order to the dotted path.
_MODULE_RULES = (
    (r"^dncnn\.convs\.(\d+)", lambda m: f"dncnn.{_dncnn_conv_index(int(m[1]))}"),
    (r"^dncnn\.norms\.(\d+)", lambda m: f"dncnn.{3 * int(m[1]) + 3}"),
    (
        r"^backbone\.(extra_)?stages\.(\d+)\.(patch_embed|norm)",
        lambda m: f"backbone.{m[1] or ''}{m[3]}{int(m[2]) + 1}",
    ),
    (
        r"^backbone\.(extra_)?stages\.(\d+)\.blocks\.",
        lambda m: f"backbone.{m[1] or ''}block{int(m[2]) + 1}.",
    ),
    (r"^backbone\.frms\.", "backbone.FRMs."),
    (r"^backbone\.ffms\.", "backbone.FFMs."),
    (r"\.mlp\.dwconv$", ".mlp.dwconv.dwconv"),
    (r"\.channel_weights\.fc1$", ".channel_weights.mlp.0"),
    (r"\.channel_weights\.fc2$", ".channel_weights.mlp.2"),
    (r"\.spatial_weights\.conv1$", ".spatial_weights.mlp.0"),
    (r"\.spatial_weights\.conv2$", ".spatial_weights.mlp.2"),
    (r"\.channel_emb\.proj_in$", ".channel_emb.channel_embed.0"),
    (r"\.channel_emb\.dwconv$", ".channel_emb.channel_embed.1"),
    (r"\.channel_emb\.proj_out$", ".channel_emb.channel_embed.3"),
    (r"\.channel_emb\.bn$", ".channel_emb.channel_embed.4"),
    (r"\.(linear_c\d)$", r".\1.proj"),
    (r"\.linear_fuse$", ".linear_fuse.0"),
    (r"\.fuse_norm$", ".linear_fuse.1"),
    (r"^detection\.fc1$", "detection.0"),
    (r"^detection\.fc2$", "detection.3"),
)

# Re-exported so callers need this module alone: the error `fill` raises, and the PyTorch shape
# of a parameter (with `official_key`, what a state dict for this model is built from).
ConversionError = torch_convert.ConversionError
official_shape = torch_convert.official_shape


def _dncnn_conv_index(k: int) -> int:
  """Sequential index of conv k: conv, ReLU, then (conv, BN, ReLU) repeated, last conv."""
  return 0 if k == 0 else 3 * k - 1


def official_key(path: tuple) -> str:
  """provjax state path (module parts + leaf) -> the official state-dict key."""
  return torch_convert.official_key(path, _MODULE_RULES)


def fill(abstract: nnx.Module, state_dict: dict[str, np.ndarray], source: str) -> nnx.Module:
  """A TruFor shaped like `abstract` whose parameters are `state_dict`'s, in JAX layouts."""
  return torch_convert.fill(abstract, state_dict, source, official_key)


def convert_trufor(path: str | Path, name: str, *, card=None) -> Path:
  """Convert the official TruFor checkpoint at `path` into released weights `name` (arch.tag).

  Writes `weights.root()/name` ($PROVJAX_CHECKPOINTS honoured) and returns it.
  `card` (a `provjax.cards.Card` with measured figures) is optional: a bare
  conversion measures nothing, so config.json records the source file instead.
  """
  path = Path(path)
  state_dict = torch_format.load_state_dict(path)
  abstract = nnx.eval_shape(lambda: registry.create_model(ARCH))
  model = fill(abstract, state_dict, str(path))
  return weights.export(
      model,
      name,
      arch=ARCH,
      preprocessing=dict(
          input="RGB uint8 / 256, NHWC float32 (provjax.models.trufor.preprocess)",
          scale=1.0 / trufor.INPUT_SCALE,
          imagenet_normalization="inside the model, RGB branch only",
      ),
      card=card,
      extra=dict(
          converted_from=dict(
              file=path.name, sha256=weights.file_sha256(path), keys=len(state_dict)
          )
      ),
  )
