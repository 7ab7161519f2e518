"""Official SafePaint generator weights (hnucdy/SafePaint) -> a provjax released-weights folder.

    path = convert_safepaint("checkpoints/InpaintingModel_G.pth", "safepaint.official")
    model = provjax.load("safepaint.official")

No weights were released; this reads what a user trained with the official
code: `InpaintGenerator`'s state dict (specs/safepaint_state_dict.tsv: 192
keys), saved by the official `save()` as {"iteration": n, "generator": ...}
(`provjax.torch_format` unwraps it) or as an .npz of the same keys. It is
placed on `safepaint.full` by `provjax.torch_convert.fill`: JAX layouts,
`num_batches_tracked` dropped, and an exhaustive two-way check of keys and
shapes. ConvTranspose2d weights (in, out, kh, kw) need no special case: the
provjax ConvTs keep their kernel as (kh, kw, out, in) (`transpose_kernel`),
which is the conv layout `fill` produces. The RWSA smoothing kernels
(`att*.gaussianMask.weight`, buffers) are loaded as they are in the file.
This module holds the rules that derive the official name of every provjax
parameter from its path.
"""

from __future__ import annotations

from pathlib import Path

from flax import nnx
import numpy as np

from provjax import registry, torch_convert, torch_format, weights

ARCH = "safepaint.full"
SOURCE = (
    "hnucdy/SafePaint (Chen et al., ACM MM 2024), networks.py InpaintGenerator; "
    "converted by provjax.inpainting.convert"
)
PREPROCESSING = dict(
    input="RGB uint8 / 255, NHWC float32 in [0, 1] (provjax.models.safepaint.to_input)",
    mask="float32 [B, H, W, 1], 1 = hole (the official loader: mask image > 0)",
    size="H and W multiples of 4 and at least 63; trained at 256 x 256",
    merge="output inside the hole, input outside: c2 = o2 * m + image * (1 - m)",
)

# nn.Sequential indices of the official encoder's convs (after a ReflectionPad2d) and the decoder's.
_ENCODER_INDEX = (1, 4, 7)
_DECODER_INDEX = (0, 3, 7)

# provjax module path -> official module path, applied in order to the dotted path.
_MODULE_RULES = (
    (r"\.encoder\.(\d+)$", lambda m: f".encoder.{_ENCODER_INDEX[int(m[1])]}"),
    (r"\.decoder\.(\d+)$", lambda m: f".decoder.{_DECODER_INDEX[int(m[1])]}"),
    (r"\.middle\.(\d+)\.conv1$", r".middle.\1.conv_block.1"),
    (r"\.middle\.(\d+)\.conv2$", r".middle.\1.conv_block.5"),
    (r"_attention\.fc1$", "_attention.fc.0"),
    (r"_attention\.fc2$", "_attention.fc.2"),
    (r"\.gaussian_mask$", ".gaussianMask"),
)

# Re-exported so callers need this module alone.
ConversionError = torch_convert.ConversionError
official_shape = torch_convert.official_shape


def official_key(path: tuple) -> str:
  """provjax state path (module parts + leaf) -> the official state-dict key."""
  return torch_convert.official_key(path, _MODULE_RULES)


def fill(abstract: nnx.Module, state_dict: dict[str, np.ndarray], source: str) -> nnx.Module:
  """A SafePaint shaped like `abstract` whose parameters are `state_dict`'s, in JAX layouts."""
  return torch_convert.fill(abstract, state_dict, source, official_key)


def build(state_dict: dict[str, np.ndarray], *, source: str = "state dict") -> nnx.Module:
  """The converted `safepaint.full` in eval mode, nothing written."""
  abstract = nnx.eval_shape(lambda: registry.create_model(ARCH))
  model = fill(abstract, state_dict, source)
  model.eval()
  return model


def convert_safepaint(path: str | Path, name: str, *, card=None) -> Path:
  """Convert the official generator checkpoint at `path` into released weights `name`.

  `name` is `safepaint.<tag>`. Writes `weights.root()/name`
  ($PROVJAX_CHECKPOINTS honoured) and returns it; config.json records the
  source file (name, sha256, key count) and the preprocessing. `card` (a
  `provjax.cards.Card` with measured figures) is optional: a bare conversion
  measures nothing.
  """
  path = Path(path)
  if registry.split_name(name)[0] != "safepaint":
    raise ValueError(f"SafePaint weights are released as safepaint.<tag>, got {name!r}")
  state_dict = torch_format.load_state_dict(path)
  model = build(state_dict, source=str(path))
  return weights.export(
      model,
      name,
      arch=ARCH,
      preprocessing=PREPROCESSING,
      card=card,
      extra=dict(
          converted_from=dict(
              source=SOURCE, file=path.name, sha256=weights.file_sha256(path), keys=len(state_dict)
          )
      ),
  )
