"""Official CopyNCE weights (eddielyc/CopyNCE) -> provjax released-weights folders.

    path = convert_copynce("weights/descriptor_vits_224.pth.tar", "copynce.official")
    path = convert_copynce("weights/matcher_vits_224.pth.tar", "copynce_matcher.official")
    model = provjax.load("copynce.official")

The two released checkpoints are the ViT-S/16 descriptor and matcher
(specs/copynce_descriptor_state_dict.tsv, copynce_matcher_state_dict.tsv);
`kind` ("descriptor" or "matcher") is inferred from the keys when not given.
A file is read without torch (`provjax.torch_format`, which unwraps the
official Checkpointer's {"model": state_dict, "epoch": n}) or as an .npz of
the same keys, and placed on the provjax model by `provjax.torch_convert.fill`:
JAX layouts (CLS token and position embedding as they are),
`num_batches_tracked` dropped, and an exhaustive two-way check of keys and
shapes. This module holds the rules that derive the official name of every
provjax parameter from its path. A position embedding for another square
grid (a checkpoint trained at 336 px) sets the model's `image_size` override.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

from flax import nnx
import numpy as np

from provjax import registry, torch_convert, torch_format, weights

ARCHS = {"descriptor": "copynce.vits16", "matcher": "copynce_matcher.vits16"}
PATCH_SIZE = 16
SOURCE = (
    "eddielyc/CopyNCE (Lu et al., ICCV 2025), core/models/build.py; "
    "converted by provjax.copydetect.convert"
)

# provjax module path -> official module path, applied in order to the dotted path.
_MODULE_RULES = {
    "descriptor": (
        (r"^encoder\.patch_embed$", "encoder.patch_embed.proj"),
        (r"^fc$", "heads.linear_head.fc1"),
        (r"^bn$", "heads.linear_head.bn"),
    ),
    "matcher": (
        (r"^encoder\.patch_embed$", "encoder.patch_embed.proj"),
        (r"^cls_norm$", "heads.cls_head.norm"),
        (r"^classifier$", "heads.cls_head.classifier"),
        (r"^token_norm$", "heads.fusion_head.norm"),
    ),
}
_LEAVES = {**torch_convert.LEAVES, "cls_token": "cls_token", "pos_embed": "pos_embed"}

# Re-exported so callers need this module alone.
ConversionError = torch_convert.ConversionError


def infer_kind(keys) -> str:
  """'matcher' when the keys hold the fusion transformer, 'descriptor' when the linear head."""
  keys = set(keys)
  if any(k.startswith("fusion.") for k in keys):
    return "matcher"
  if any(k.startswith("heads.linear_head.") for k in keys):
    return "descriptor"
  raise ConversionError(
      "neither a CopyNCE matcher (fusion.*) nor a descriptor (heads.linear_head.*)"
  )


def official_key(kind: str, path: tuple) -> str:
  """provjax state path (module parts + leaf) -> the official state-dict key."""
  return torch_convert.official_key(path, _MODULE_RULES[kind], _LEAVES)


def image_size_of(state_dict: dict, source: str) -> int:
  """The training resolution its position embedding [1, 1 + g * g, C] was made for."""
  if "encoder.pos_embed" not in state_dict:
    raise ConversionError(f"{source}: missing official key(s) encoder.pos_embed")
  pos = np.shape(state_dict["encoder.pos_embed"])
  n = pos[1] - 1 if len(pos) == 3 else 0
  grid = math.isqrt(n) if n > 0 else 0
  if grid == 0 or grid * grid != n:
    raise ConversionError(f"{source}: encoder.pos_embed has shape {pos}, not [1, 1 + g * g, C]")
  return grid * PATCH_SIZE


def fill(abstract: nnx.Module, kind: str, state_dict: dict, source: str) -> nnx.Module:
  """A CopyNCE `kind` shaped like `abstract` whose parameters are `state_dict`'s, in JAX layouts."""
  return torch_convert.fill(abstract, state_dict, source, functools.partial(official_key, kind))


def resolve_kind(state_dict: dict, kind: str | None = None) -> str:
  """`kind` checked, or inferred from the keys when None."""
  kind = kind or infer_kind(state_dict)
  if kind not in ARCHS:
    raise ValueError(f"kind must be one of {sorted(ARCHS)}, got {kind!r}")
  return kind


def build(state_dict: dict, kind: str | None = None, *, source: str = "state dict"):
  """(model, kind, overrides): the converted NNX model in eval mode, nothing written."""
  kind = resolve_kind(state_dict, kind)
  size = image_size_of(state_dict, source)
  overrides = {}
  abstract = nnx.eval_shape(lambda: registry.create_model(ARCHS[kind]))
  if size != abstract.image_size:
    overrides = dict(image_size=size)
    abstract = nnx.eval_shape(lambda: registry.create_model(ARCHS[kind], **overrides))
  model = fill(abstract, kind, state_dict, source)
  model.eval()
  return model, kind, overrides


def load_copynce(path: str | Path, kind: str | None = None) -> nnx.Module:
  """The official checkpoint at `path` as a provjax model in eval mode, without writing anything."""
  return build(torch_format.load_state_dict(path), kind, source=str(path))[0]


def convert_copynce(path: str | Path, name: str, kind: str | None = None, *, card=None) -> Path:
  """Convert the official checkpoint at `path` into released weights `name` (arch.tag).

  `name` must start with the kind's architecture (`copynce.` for the
  descriptor, `copynce_matcher.` for the matcher). Writes
  `weights.root()/name` ($PROVJAX_CHECKPOINTS honoured) and returns it;
  config.json records the source file (name, sha256, key count) and where
  the weights come from. `card` (a `provjax.cards.Card` with measured figures)
  is optional: a bare conversion measures nothing.
  """
  path = Path(path)
  state_dict = torch_format.load_state_dict(path)
  kind = resolve_kind(state_dict, kind)
  arch = registry.split_name(ARCHS[kind])[0]
  if registry.split_name(name)[0] != arch:
    raise ValueError(f"a CopyNCE {kind} is released as {arch}.<tag>, got {name!r}")
  model, kind, overrides = build(state_dict, kind, source=str(path))
  return weights.export(
      model,
      name,
      arch=ARCHS[kind],
      overrides=overrides,
      preprocessing=dict(
          input="RGB uint8, resized to image_size (bicubic), / 255, ImageNet mean / std, NHWC "
          "float32 (provjax.models.copynce.preprocess)",
          image_size=model.image_size,
      ),
      card=card,
      extra=dict(
          converted_from=dict(
              source=SOURCE,
              kind=kind,
              file=path.name,
              sha256=weights.file_sha256(path),
              keys=len(state_dict),
          )
      ),
  )
