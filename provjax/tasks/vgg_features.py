"""Self-supervised VGG features for SafePaint's losses: rotation prediction (RotNet).

VGG19 ImageNet weights cannot be downloaded here (specs/safepaint.md, section
2), so the zoo trains its own feature network: `vgg.tiny` learns to tell
which of 0, 90, 180 or 270 degrees an upright crop was rotated by (Gidaris et
al., "Unsupervised Representation Learning by Predicting Image Rotations",
ICLR 2018). Recognising "up" needs edges, textures and object parts, which
is what the perceptual and style losses compare.

Batch: B upright crops (random crops of the train split's photographs, a
`procedural_fraction` of procedural images of the train seed namespace;
provjax.data.splits); the loss stacks all four rotations of each crop, as
RotNet does, and applies cross-entropy to the classifier head, global average
pooling of relu5_4 -> Linear(4), which is a separate module (`head`) so the
released weights are the VGG alone. The VGG trains with a BatchNorm after
every conv (`batch_norm=True`, as torchvision's vgg19_bn), which the plain
ReLU stack needs to learn in a CPU-sized budget; releasing folds them into
the convs (provjax.models.vgg.fold_batch_norm), leaving plain VGG19 layers.
Evaluation:
rotation accuracy on the held-back `test` split (photo crops and procedural
images no training image comes from), overall, per kind and per turn; chance
is 0.25.
"""

from __future__ import annotations

import functools

from flax import nnx
import jax.numpy as jnp
import numpy as np
import optax

from provjax import registry
from provjax.data import photos, pipeline, splits, synthetic
from provjax.models.layers.conv import HEAD, dense
from provjax.tasks.contract import Field, default_optimizers

ROTATIONS = 4  # quarter turns: 0, 90, 180, 270 degrees counter-clockwise
SCHEMA = {"images": Field(("B", "S", "S", 3), "uint8", "upright crops, each rotated in the loss")}


class RotationHead(nnx.Module):
  """relu5_4 [B, h, w, C] -> logits [B, 4] over the quarter turns: average pool, Linear."""

  def __init__(self, width: int, *, rngs: nnx.Rngs):
    self.fc = dense(width, ROTATIONS, rngs=rngs, out_axis=HEAD)

  def __call__(self, features):
    return self.fc(jnp.mean(features, axis=(1, 2)))


def create_models(config, rngs: nnx.Rngs) -> dict:
  features = registry.create_model(
      config.model.name, rngs=rngs, **config.model.get("overrides", {})
  )
  return {"vgg": features, "head": RotationHead(features.widths[-1], rngs=rngs)}


def optimizers(config) -> dict:
  return default_optimizers(config, ("vgg", "head"))


def rotate_all(x):
  """[B, S, S, C] -> (the 4 quarter turns of each, [4B, S, S, C]; their labels, [4B])."""
  turned = jnp.concatenate([jnp.rot90(x, k, axes=(1, 2)) for k in range(ROTATIONS)])
  return turned, jnp.repeat(jnp.arange(ROTATIONS), x.shape[0])


def rotation_logits(models, x, *, train: bool = False):
  """Rotation logits of float images in [0, 1], through relu5_4 only."""
  return models["head"](models["vgg"](x, taps=("relu5_4",), train=train)["relu5_4"])


def loss_fn(models, batch, rng, config):
  del rng, config  # crops are drawn in the data pipeline; every rotation is used
  x, labels = rotate_all(batch["images"].astype(jnp.float32) / 255.0)
  logits = rotation_logits(models, x, train=True)
  loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
  return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}


# -------------------------------------------------------------------- data ---


def make_crop(index, rng: np.random.Generator, *, size: int, seed: int, fraction: float, pool):
  """The `index`-th training crop: a photo crop of `pool`, or (with probability `fraction`,
  or when the pool is empty) the procedural image of the train split's `index`-th seed."""
  if pool and rng.random() >= fraction:
    return {"images": photos.photo_crop(rng, size, pool=pool)[1]}
  image = photos.procedural_image(splits.procedural_rng(seed, "train", int(index)), size)
  return {"images": image}


def train_data(config, *, start_step: int = 0):
  d = config.data
  map_fn = functools.partial(
      make_crop,
      size=d.resolution,
      seed=d.seed,
      fraction=d.procedural_fraction,
      pool=splits.photo_pool("train", d.photo_dir),
  )
  return pipeline.training_batches(range(d.count), config, map_fn, start_step=start_step)


# -------------------------------------------------------------- evaluation ---


@nnx.jit
def _predict(vgg, head, images):
  x, labels = rotate_all(images.astype(jnp.float32) / 255.0)
  return jnp.argmax(rotation_logits({"vgg": vgg, "head": head}, x), -1), labels


def rotation_predictions(models, images: np.ndarray, batch_size: int = 64):
  """(predicted, true) quarter turns [N, 4] of every rotation of uint8 crops [N, S, S, 3]."""
  n = len(images)
  pad = -n % batch_size  # one static shape: the last batch is padded, its padding dropped
  if pad:
    images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
  # Dispatch every batch first and fetch once: no host sync inside the loop.
  outs = [
      _predict(models["vgg"], models["head"], jnp.asarray(images[i : i + batch_size]))
      for i in range(0, len(images), batch_size)
  ]
  # Each batch is ordered rotation-major ([4, b]); back to [N, 4] per image.
  pred, true = (
      np.concatenate([np.asarray(p).reshape(ROTATIONS, -1).T for p in parts])[:n]
      for parts in zip(*outs)
  )
  return pred, true


def evaluate(models, config) -> dict:
  """Rotation accuracy on `config.eval.split` (default test): all, per kind and per turn."""
  d, e = config.data, config.eval
  records = list(
      synthetic.generate_records(e.split, e.count, d.resolution, d.seed, photo_dir=d.photo_dir)
  )
  kinds = np.array([kind for kind, _, _ in records])
  pred, true = rotation_predictions(models, np.stack([image for _, _, image in records]))
  correct = pred == true
  out = {"rotation_accuracy": float(correct.mean())}
  for kind in sorted(set(kinds)):
    out[f"{kind}/rotation_accuracy"] = float(correct[kinds == kind].mean())
  for k in range(ROTATIONS):
    out[f"rot{90 * k}/rotation_accuracy"] = float(correct[:, k].mean())
  return out
