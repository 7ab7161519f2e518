"""A user's torchvision ResNet-50 weights -> starting points for SImProv training.

    path = convert_descriptor("resnet50_deepaugment_augmix.pth", "simprov.dam")
    path = convert_comparator("resnet50_deepaugment_augmix.pth", "simprov_comparator.dam")
    provjax train --config configs/simprov/descriptor.py:r50 --config.init_from=simprov.dam

SImProv starts both of its networks from an ImageNet ResNet-50 (the reference
uses the DeepAugment+AugMix one; specs/simprov.md sections 1-3), which
cannot be downloaded here. A user who holds such weights as a torchvision
`resnet50()` state dict (.pth read without torch by `provjax.torch_format`,
or an .npz of the same keys) converts them with this module:

  descriptor (`simprov.r50`): the whole ResNet-50 but `fc` -> `backbone`;
    the 256-d `head` (no torchvision counterpart) keeps its fresh init.
  comparator (`simprov_comparator.r50`): conv1, bn1 and layer1[0].conv1, bn1,
    conv2, bn2 -> `split_stem`; layer1[1:], layer2, layer3, layer4 -> `trunk`.
    layer1[0].conv3, bn3 and its downsample are ignored: the comparator's
    fusion conv (2 x 64 -> 256 channels, 3x3) stands where layer1[0] would
    join its residual (spec 2.4), so they have nowhere to go. The alignment
    (`warp`), `fusion`/`fusion_bn`, `fc` and both heads (and any module a
    variant adds) have no torchvision counterpart and keep their fresh init
    (seeded, untrained; config.json lists them under `fresh_init`).

Every tensor is placed by `provjax.torch_convert.fill` (JAX layouts, BatchNorm
running statistics kept, `num_batches_tracked` dropped) with an exhaustive
check: each key of the file is used or belongs to a module listed as ignored
here (`fc` always), each parameter's key is present, each shape fits, or a
one-line ConversionError names the key. The result is a starting point, not a
trained model: the released folder's card says exactly that and no figure.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from pathlib import Path

from flax import nnx

from provjax import registry, torch_convert, torch_format, weights
from provjax.models import resnet

SOURCE = "a torchvision ResNet-50 state dict (torchvision.models.resnet50), supplied by the user"
PREPROCESSING = dict(
    image_size=224,
    value_range=[0, 1],
    imagenet_normalization="inside the model (torchvision's mean / std)",
)

# Inside a block: provjax's `convs`/`bns` lists and projection shortcut -> torchvision's names.
_BLOCK_RULES = (
    (r"\.convs\.(\d+)$", lambda m: f".conv{int(m[1]) + 1}"),
    (r"\.bns\.(\d+)$", lambda m: f".bn{int(m[1]) + 1}"),
    (r"\.proj$", ".downsample.0"),
    (r"\.proj_bn$", ".downsample.1"),
)
_DESCRIPTOR_RULES = (
    (r"^backbone\.stem\.conv$", "conv1"),
    (r"^backbone\.stem\.bn$", "bn1"),
    (r"^backbone\.stages\.(\d+)\.", lambda m: f"layer{int(m[1]) + 1}."),
    *_BLOCK_RULES,
)

# Re-exported so callers need this module alone.
ConversionError = torch_convert.ConversionError


def trunk_blocks(spec: resnet.ResNetSpec) -> list[str]:
  """torchvision name of each comparator trunk block: layer1[1:], then layer2..4 whole."""
  names = [f"layer{s + 1}.{b}" for s, n in enumerate(spec.stage_sizes) for b in range(n)]
  return names[1:]


def _comparator_rules(spec: resnet.ResNetSpec) -> tuple:
  trunk = trunk_blocks(spec)
  return (
      (r"^split_stem\.stem\.conv$", "conv1"),
      (r"^split_stem\.stem\.bn$", "bn1"),
      (r"^split_stem\.", "layer1.0."),
      (r"^trunk\.(\d+)\.", lambda m: f"{trunk[int(m[1])]}."),
      *_BLOCK_RULES,
  )


def descriptor_key(path: tuple) -> str:
  """Descriptor state path (from the model's root) -> its torchvision key."""
  return torch_convert.official_key(path, _DESCRIPTOR_RULES)


def comparator_key(path: tuple) -> str:
  """Comparator state path (from the model's root) -> its torchvision key (r50 trunk)."""
  return torch_convert.official_key(path, _comparator_rules(resnet.SPECS["r50"]))


@dataclasses.dataclass(frozen=True)
class Target:
  """What one SImProv model takes from a torchvision ResNet-50, and what its card says of it."""

  arch: str
  parts: tuple[str, ...]  # submodules filled from the file; every other one keeps its fresh init
  ignored: tuple[str, ...]  # torchvision modules with no place in the model (present or not)
  key_of: Callable[[tuple], str]  # state path -> torchvision key
  config: str  # the training config this is a starting point for
  read: str  # what the parts hold, in torchvision's names (for the card)
  ignored_why: str  # the ignored modules and why (for the card)


DESCRIPTOR = Target(
    arch="simprov.r50",
    parts=("backbone",),
    ignored=("fc",),
    key_of=descriptor_key,
    config="configs/simprov/descriptor.py:r50",
    read="`backbone` (conv1, bn1, layer1 to layer4, with the BatchNorm running statistics)",
    ignored_why="`fc.*` (the classifier; the descriptor's `head` replaces it)",
)
COMPARATOR = Target(
    arch="simprov_comparator.r50",
    parts=("split_stem", "trunk"),
    # After the split, the fusion conv stands where layer1[0] would join its residual.
    ignored=(
        "fc",
        "layer1.0.conv3",
        "layer1.0.bn3",
        "layer1.0.downsample.0",
        "layer1.0.downsample.1",
    ),
    key_of=comparator_key,
    config="configs/simprov/comparator.py:r50",
    read="`split_stem` (conv1, bn1, layer1.0.conv1, bn1, conv2, bn2) and `trunk` (layer1 from "
    "its second block on, layer2, layer3, layer4), with the BatchNorm running statistics",
    ignored_why="`fc.*` (the classifier) and layer1.0's conv3, bn3 and downsample (the fusion "
    "conv takes their place)",
)


class _Parts(nnx.Module):
  """Named submodules of one model seen as one module, so `fill` checks them together."""

  def __init__(self, **parts):
    for name, part in parts.items():
      setattr(self, name, part)


def _unignored(state_dict: dict, ignored) -> dict:
  """The entries whose module (the key without its last part) is not in `ignored`."""
  return {k: v for k, v in state_dict.items() if k.rpartition(".")[0] not in ignored}


def fill(target: Target, model: nnx.Module, state_dict: dict, source: str = "state dict"):
  """`model` (concrete or abstract) with `target.parts` taken from `state_dict`, in place."""
  parts = _Parts(**{n: getattr(model, n) for n in target.parts})
  filled = torch_convert.fill(parts, _unignored(state_dict, target.ignored), source, target.key_of)
  for n in target.parts:
    nnx.update(getattr(model, n), nnx.state(getattr(filled, n)))
  return model


def fill_descriptor(model: nnx.Module, state_dict: dict, source: str = "state dict"):
  """A `simprov.r50` with the file's ResNet-50 in its `backbone` (in place); `head` untouched."""
  return fill(DESCRIPTOR, model, state_dict, source)


def fill_comparator(model: nnx.Module, state_dict: dict, source: str = "state dict"):
  """A `simprov_comparator.r50` with the file's split stem and trunk (in place); rest untouched."""
  return fill(COMPARATOR, model, state_dict, source)


def build(target: Target, state_dict: dict, *, source: str = "state dict", seed: int = 0):
  """`target.arch` fresh from `seed` with its parts from `state_dict`, in eval mode.

  The file is checked on an abstract model first, so a file that does not fit
  fails before the fresh weights (tens of millions for r50) are drawn.
  """
  abstract = nnx.eval_shape(lambda: registry.create_model(target.arch))
  converted = fill(target, abstract, state_dict, source)
  model = registry.create_model(target.arch, seed=seed)
  for n in target.parts:
    nnx.update(getattr(model, n), nnx.state(getattr(converted, n)))
  model.eval()
  return model


def build_descriptor(state_dict: dict, *, source: str = "state dict", seed: int = 0):
  """The converted descriptor in eval mode (head fresh from `seed`), nothing written."""
  return build(DESCRIPTOR, state_dict, source=source, seed=seed)


def build_comparator(state_dict: dict, *, source: str = "state dict", seed: int = 0):
  """The converted comparator in eval mode (warp, fusion, fc, heads fresh from `seed`)."""
  return build(COMPARATOR, state_dict, source=source, seed=seed)


def fresh_parts(target: Target, model: nnx.Module) -> list[str]:
  """The model's top-level submodules that hold state and are not from the file."""
  return [n for n in nnx.state(model) if n not in target.parts]


def _card(target: Target, name: str, fresh: list[str], seed: int, file: dict) -> str:
  """model_card.md of a conversion: where each part came from; nothing was measured."""
  fresh_text = ", ".join(f"`{n}`" for n in fresh)
  return "\n".join(
      [
          f"# Model card: {name}",
          "",
          f"A starting point for training, not a trained model: `{target.arch}` converted from "
          f"{SOURCE} (`{file['file']}`, sha256 `{file['sha256']}`) by `provjax convert`.",
          "",
          f"- From the file: {target.read}.",
          f"- Ignored: {target.ignored_why}; also every `num_batches_tracked` counter.",
          f"- Not from the file, freshly initialised (seed {seed}) and untrained: {fresh_text}.",
          "- What the source weights were trained on is whatever that file was trained on "
          "(e.g. ImageNet, or DeepAugment+AugMix); this conversion trained and measured nothing, "
          "so the card has no figures.",
          f"- Train from it: `provjax train --config {target.config} --config.init_from={name}`.",
          "",
      ]
  )


def convert(target: Target, path: str | Path, name: str, *, seed: int = 0) -> Path:
  """Convert the torchvision ResNet-50 state dict at `path` into released weights `name`.

  `name` is <target's arch>.<tag>. Writes `weights.root()/name`
  ($PROVJAX_CHECKPOINTS honoured) and returns it; config.json records the
  source file (name, sha256, keys read and ignored), the untrained parts and
  their seed, and the card says where each part came from.
  """
  path = Path(path)
  arch = registry.split_name(target.arch)[0]
  if registry.split_name(name)[0] != arch:
    raise ValueError(f"{target.arch} weights are released as {arch}.<tag>, got {name!r}")
  state_dict = torch_format.load_state_dict(path)
  model = build(target, state_dict, source=str(path), seed=seed)
  used = len(_unignored(state_dict, target.ignored))
  fresh = fresh_parts(target, model)
  file = dict(
      source=SOURCE,
      file=path.name,
      sha256=weights.file_sha256(path),
      keys=used,
      ignored_keys=len(state_dict) - used,
      fresh_init=fresh,
      fresh_init_seed=seed,
  )
  return weights.export(
      model,
      name,
      arch=target.arch,
      preprocessing=PREPROCESSING,
      card_text=_card(target, name, fresh, seed, file),
      extra=dict(converted_from=file),
  )


def convert_descriptor(path: str | Path, name: str, *, seed: int = 0) -> Path:
  """`convert` into the descriptor: released weights simprov.<tag>."""
  return convert(DESCRIPTOR, path, name, seed=seed)


def convert_comparator(path: str | Path, name: str, *, seed: int = 0) -> Path:
  """`convert` into the comparator: released weights simprov_comparator.<tag>."""
  return convert(COMPARATOR, path, name, seed=seed)
