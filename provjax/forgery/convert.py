"""Official TruFor weights (trufor.pth.tar) -> a provjax released-weights folder.

    path = convert_trufor("weights/trufor.pth.tar", "trufor.official")
    model = provjax.load("trufor.official")

The official state dict (specs/trufor_state_dict.tsv) is read without torch
(`provjax.torch_format`), each tensor is placed on the provjax parameter
whose official name it carries and changed to the JAX layout: conv kernels
(O, I, kh, kw) -> (kh, kw, I, O) (depthwise (C, 1, kh, kw) -> (kh, kw, 1, C)),
Linear weights transposed, BatchNorm running stats copied,
`num_batches_tracked` dropped. The official name of every provjax
parameter is derived from its path by the rules below, so the check is
exhaustive in both directions: an official key no parameter claims, a
parameter whose key is absent, or a shape that does not fit stops the
conversion with a one-line error naming the key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
import re

from flax import nnx
import jax.numpy as jnp
import numpy as np

from provjax import registry, torch_format, weights
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
_LEAVES = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}


class ConversionError(ValueError):
  """The file's state dict does not fit the provjax TruFor."""


def _dncnn_conv_index(k: int) -> int:
  """Sequential index of conv k: conv, ReLU, then (conv, BN, ReLU) repeated, last conv."""
  return 0 if k == 0 else 3 * k - 1


def official_key(path: tuple) -> str:
  """provjax state path (module parts + leaf) -> the official state-dict key."""
  *module, leaf = path
  name = ".".join(str(p) for p in module)
  for pattern, repl in _MODULE_RULES:
    name = re.sub(pattern, repl, name)
  return f"{name}.{_LEAVES[leaf]}"


def _to_jax_layout(value: np.ndarray) -> np.ndarray:
  """PyTorch conv (O, I, kh, kw) -> (kh, kw, I, O); Linear (out, in) -> (in, out)."""
  if value.ndim == 4:
    return value.transpose(2, 3, 1, 0)
  if value.ndim == 2:
    return value.T
  return value


def _bn_counters(keys) -> set[str]:
  """The `num_batches_tracked` key of every BatchNorm: in the file, not needed here."""
  suffix = ".running_mean"
  return {k.removesuffix(suffix) + ".num_batches_tracked" for k in keys if k.endswith(suffix)}


def _first(names, n: int = 5) -> str:
  names = sorted(names)
  more = f" (+{len(names) - n} more)" if len(names) > n else ""
  return ", ".join(names[:n]) + more


def fill(abstract: nnx.Module, state_dict: dict[str, np.ndarray], source: str) -> nnx.Module:
  """A model shaped like `abstract` whose parameters are `state_dict`'s, in JAX layouts."""
  graphdef, state = nnx.split(abstract)
  flat = list(nnx.to_flat_state(state))
  params = {official_key(path): (path, var) for path, var in flat}
  if len(params) != len(flat):
    raise AssertionError("two provjax parameters map to one official key")
  missing = params.keys() - state_dict.keys()
  if missing:
    raise ConversionError(f"{source}: missing official key(s) {_first(missing)}")
  extra = state_dict.keys() - params.keys() - _bn_counters(params)
  if extra:
    raise ConversionError(f"{source}: unexpected key(s) {_first(extra)}")
  filled = []
  for key, (path, var) in params.items():
    value = _to_jax_layout(np.asarray(state_dict[key]))
    if value.shape != tuple(var.shape):
      raise ConversionError(
          f"{source}: {key} has shape {state_dict[key].shape}, "
          f"expected {official_shape(var.shape)}"
      )
    filled.append((path, var.replace(jnp.asarray(value, var.dtype))))
  return nnx.merge(graphdef, nnx.from_flat_state(filled))


def official_shape(shape) -> tuple:
  """The PyTorch shape of a provjax parameter of `shape` (inverse of `_to_jax_layout`)."""
  shape = tuple(shape)
  if len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  return shape[::-1] if len(shape) == 2 else shape


def _sha256(path: Path) -> str:
  digest = hashlib.sha256()
  with path.open("rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


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
      extra=dict(converted_from=dict(file=path.name, sha256=_sha256(path), keys=len(state_dict))),
  )
