"""VGG feature weights for SafePaint's losses -> provjax released-weights folders.

    path = convert_vgg19("vgg19-dcbb9e9d.pth", "vgg.imagenet")   # torchvision weights
    path = release_trained("runs/vgg_tiny", "vgg.synth-v1")      # the zoo's own, trained here
    vgg = provjax.load("vgg.imagenet")      # {relu1_1 ... relu5_4} feature taps

SafePaint's perceptual and style losses read VGG19 ImageNet features
(specs/safepaint.md, section 2), which cannot be downloaded here; a user who
has torchvision's `vgg19()` state dict converts it with this module. Only the
16 convs of `features` are read (`features.{0, 2, 5, ..., 34}.{weight, bias}`,
provjax.models.vgg.FEATURE_INDEX); the `classifier.*` keys of a full
checkpoint are ignored, since no tap depends on them. A file is read without
torch (`provjax.torch_format`) or as an .npz of the same keys, and placed on
`vgg.vgg19` by `provjax.torch_convert.fill`: JAX layouts and an exhaustive
two-way check of the `features` keys and shapes, so a missing, unexpected
(e.g. a `vgg19_bn` BatchNorm) or misshaped key stops the conversion with a
ConversionError naming it.

`release_trained` exports the VGG of a `configs/safepaint/vgg.py` work dir
(provjax.tasks.vgg_features: rotation prediction; its classifier head is left
behind, its BatchNorms folded into the convs) with a model card of figures
measured on held-back splits.
"""

from __future__ import annotations

from pathlib import Path

from flax import nnx
import numpy as np

from provjax import cards, registry, torch_convert, torch_format, weights
from provjax.models import vgg
from provjax.tasks import vgg_features
from provjax.train.evaluate import restore_models
from provjax.train.logging import read_metrics, run_summary
from provjax.train.snapshot import as_dict, read

ARCH = "vgg.vgg19"
SOURCE = "torchvision.models.vgg19 `features` (Simonyan & Zisserman 2015, configuration E)"
PREPROCESSING = dict(
    input="RGB float32 in [0, 1], NHWC, no mean / std normalisation (SafePaint feeds raw [0, 1])"
)

# provjax module path -> torchvision module path.
_MODULE_RULES = ((r"^convs\.(\d+)$", lambda m: f"features.{vgg.FEATURE_INDEX[int(m[1])]}"),)

# Re-exported so callers need this module alone.
ConversionError = torch_convert.ConversionError


def official_key(path: tuple) -> str:
  """provjax state path (module parts + leaf) -> the torchvision state-dict key."""
  return torch_convert.official_key(path, _MODULE_RULES)


def features_only(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The `features.*` entries: the classifier's (and any other module's) are not needed."""
  return {k: v for k, v in state_dict.items() if k.startswith("features.")}


def build(state_dict: dict[str, np.ndarray], *, source: str = "state dict") -> nnx.Module:
  """The converted `vgg.vgg19` in eval mode, nothing written."""
  abstract = nnx.eval_shape(lambda: registry.create_model(ARCH))
  model = torch_convert.fill(abstract, features_only(state_dict), source, official_key)
  model.eval()
  return model


def convert_vgg19(path: str | Path, name: str, *, card=None) -> Path:
  """Convert the torchvision VGG19 state dict at `path` into released weights `name` (vgg.tag).

  Writes `weights.root()/name` ($PROVJAX_CHECKPOINTS honoured) and returns it;
  config.json records the source file (name, sha256, keys read and ignored).
  `card` (a `provjax.cards.Card` with measured figures) is optional: a bare
  conversion measures nothing.
  """
  path = Path(path)
  if registry.split_name(name)[0] != "vgg":
    raise ValueError(f"VGG19 weights are released as vgg.<tag>, got {name!r}")
  state_dict = torch_format.load_state_dict(path)
  model = build(state_dict, source=str(path))
  used = len(features_only(state_dict))
  return weights.export(
      model,
      name,
      arch=ARCH,
      preprocessing=PREPROCESSING,
      card=card,
      extra=dict(
          converted_from=dict(
              source=SOURCE,
              file=path.name,
              sha256=weights.file_sha256(path),
              keys=used,
              ignored_keys=len(state_dict) - used,
          )
      ),
  )


# Splits no training crop comes from (provjax.data.splits); neither chooses anything.
HELD_BACK = ("test", "gallery")
TRAINED_SUMMARY = (
    "SafePaint's feature network (specs/safepaint.md, the losses), trained from scratch "
    "in the zoo because VGG19's ImageNet weights cannot be downloaded here: VGG19's layout "
    "(provjax.models.vgg) at the variant's widths, learnt by rotation prediction (RotNet, "
    "Gidaris et al., ICLR: which quarter turn a crop was rotated by). Its relu taps feed the "
    "perceptual and style losses; the rotation classifier head is not part of these weights. "
    "Input: RGB in [0, 1], NHWC, no normalisation."
)


def _measure(models, config, split: str) -> dict:
  """The task's rotation accuracies on held-back `split`, with chance beside them."""
  config = config.copy_and_resolve_references()
  config.eval.split = split
  return {**vgg_features.evaluate(models, config), "chance": 1.0 / vgg_features.ROTATIONS}


def _eval_rows(workdir, split: str) -> list[dict]:
  """The held-back evaluations the run logged (on `split`), one row per evaluated step."""
  rows = []
  for r in read_metrics(Path(workdir) / "metrics.jsonl"):
    if "eval/rotation_accuracy" in r:
      rows.append({"step": r["step"], f"{split} rotation accuracy": r["eval/rotation_accuracy"]})
  return rows


def release_trained(workdir: str | Path, name: str) -> Path:
  """Export the VGG of a `configs/safepaint/vgg.py` work dir as released weights `name`.

  The card's figures are measured here: rotation accuracy (overall, per image
  kind and per turn) on the held-back test and gallery splits, and the steps,
  final loss and wall-clock of the run's training log.
  """
  if registry.split_name(name)[0] != "vgg":
    raise ValueError(f"VGG weights are released as vgg.<tag>, got {name!r}")
  config = read(workdir)
  models, step = restore_models(config, workdir)
  d, e = config.data, config.eval
  card = cards.Card(
      name=name,
      summary=TRAINED_SUMMARY,
      arch=config.model.name,
      config_spec=f"configs/safepaint/vgg.py:{registry.split_name(config.model.name)[1]}",
      config=as_dict(config),
      steps=step,
      data=f"Random {d.resolution}-px crops of the train split's photographs "
      f"({d.photo_dir or 'the bundled sample photographs'}) and procedural images of the train "
      "seed namespace (provjax.data.splits), each seen at all four quarter turns.",
      metrics={
          **{
              f"Rotation accuracy, held-back `{split}` split ({e.count} photo crops and "
              "procedural images, each at every quarter turn)": _measure(models, config, split)
              for split in HELD_BACK
          },
          "Training": run_summary(workdir),
      },
      training_log=_eval_rows(workdir, e.split),
  )
  features = models["vgg"]
  if features.norms is not None:  # trained with BatchNorm: released as the plain VGG
    features = vgg.fold_batch_norm(features)
  overrides = {k: v for k, v in config.model.get("overrides", {}).items() if k != "batch_norm"}
  return weights.export(
      features,
      name,
      arch=config.model.name,
      overrides=overrides,
      preprocessing=PREPROCESSING,
      card=card,
      extra={"config": card.config_spec, "steps": step, "train_config": as_dict(config)},
  )
