"""TruFor phase 1: Noiseprint++ learned contrastively on pristine images (specs/trufor.md section 2).

An editing history is (scale, tone, JPEG quality), 8 x 5 x 6 = 240 of them
(`HISTORIES`), applied to a whole image in that order. For each of B source
images (pristine originals of `provjax_synthetic`'s train split) a batch
holds K distinct histories and, for each, P patches of size S cut from one
neighbourhood of the processed image: the P cells of a 2 x 2 grid of S x S
cells at an offset that is a multiple of 8, so the patches share no pixel
and the JPEG grid phase of every patch is the same.

Positives are patches of one (source, history): different content, same
trace. Everything else in the batch is a negative, including the same
source under another history, which is what makes the extractor sensitive
to the editing history (a different JPEG quality is a different class).

Embedding: the Noiseprint++ output of a patch (S x S x 1), mean removed,
flattened. Similarity: minus the mean squared distance over a temperature,
as Noiseprint's distance-based loss. Distance rather than cosine because the
residual's amplitude is part of the trace (stronger compression or a
contrast change scales the residual; cosine would discard exactly that), and
because the extractor is used as a map whose values, not only directions,
the later phases read. Loss: multi-positive InfoNCE
(`forgery_losses.multi_positive_infonce`).
"""

from __future__ import annotations

import functools
import itertools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from provjax import registry
from provjax.data import forgery, pipeline, splits, synthetic
from provjax.data.images import read_image
from provjax.models.trufor import INPUT_SCALE  # uint8 / 256, as Noiseprint++ is used in TruFor
from provjax.tasks import forgery_losses
from provjax.tasks.contract import Field
from provjax.viz import overlay

SCALES = (8 / 8, 2 / 8, 3 / 8, 4 / 8, 5 / 8, 6 / 8, 7 / 8, 9 / 8)
TONES = ("identity", "gamma_0.8", "gamma_1.2", "brightness_+0.3", "contrast_0.7")
QUALITIES = (None, 60, 70, 80, 90, 95)  # None: no JPEG
HISTORIES = tuple(itertools.product(SCALES, TONES, QUALITIES))
GRID = 8  # JPEG block size: patch offsets are multiples of it

SCHEMA = {
    "patches": Field(
        ("B", "K", "P", "S", "S", 3),
        "uint8",
        "P patches of one neighbourhood of each of B sources under K editing histories",
    )
}


def create_model(config, rngs: nnx.Rngs):
  """`config.model.name` (e.g. noiseprint.tiny), honouring an active mesh."""
  return registry.create_model(config.model.name, rngs=rngs, **config.model.get("overrides", {}))


# --------------------------------------------------------------- histories ---


def apply_tone(image: np.ndarray, tone: str) -> np.ndarray:
  """One of TONES on a uint8 image: gamma curve, brightness x 1.3, or contrast 0.7 about the mean."""
  if tone == "identity":
    return image
  x = image.astype(np.float32) / 255.0
  if tone.startswith("gamma_"):
    x = x ** float(tone.removeprefix("gamma_"))
  elif tone == "brightness_+0.3":
    x = x * 1.3  # brightness scaled by 1 + 0.3 (multiplicative, clipped)
  elif tone == "contrast_0.7":
    x = x.mean() + 0.7 * (x - x.mean())
  else:
    raise ValueError(f"unknown tone {tone!r}; expected one of {TONES}")
  return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def apply_history(image: np.ndarray, history: int) -> np.ndarray:
  """HISTORIES[history] on a whole uint8 image: bicubic rescale, tone, then JPEG."""
  factor, tone, quality = HISTORIES[history]
  if factor != 1.0:
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
  image = apply_tone(image, tone)
  return forgery.jpeg_roundtrip(image, quality) if quality else image


def cut_patches(image: np.ndarray, rng: np.random.Generator, *, size: int, count: int):
  """`count` of the 4 cells of a 2 x 2 grid of size x size cells at a random 8-aligned offset.

  Returns:
    [count, size, size, 3] uint8; the cells share no pixel.
  """
  h, w = image.shape[:2]
  if size % GRID or not 1 <= count <= 4:
    raise ValueError(f"patch size must be a multiple of {GRID} and count 1-4; got {size}, {count}")
  if min(h, w) < 2 * size:
    raise ValueError(f"image {h}x{w} is smaller than a 2x2 grid of {size}-pixel patches")
  top = int(rng.integers((h - 2 * size) // GRID + 1)) * GRID
  left = int(rng.integers((w - 2 * size) // GRID + 1)) * GRID
  cells = rng.choice(4, count, replace=False)
  rows, cols = top + (cells // 2) * size, left + (cells % 2) * size
  return np.stack([image[r : r + size, c : c + size] for r, c in zip(rows, cols)])


def make_example(record, rng: np.random.Generator, *, histories: int, patches: int, size: int):
  """{"patches": [K, P, S, S, 3]}: K distinct random histories of one source image."""
  image = read_image(record["image"], name=f"record {record.get('id')}")
  chosen = rng.choice(len(HISTORIES), histories, replace=False)
  return {
      "patches": np.stack(
          [cut_patches(apply_history(image, int(h)), rng, size=size, count=patches) for h in chosen]
      )
  }


def check_sizes(config) -> None:
  """The smallest rescale must leave room for the 2 x 2 grid of patches."""
  smallest = round(config.data.resolution * min(SCALES))
  if smallest < 2 * config.data.patch:
    raise ValueError(
        f"data.resolution {config.data.resolution} is too small: scaled by {min(SCALES)} it is "
        f"{smallest} pixels, under two patches of {config.data.patch}"
    )


def train_data(config, *, start_step: int = 0):
  """Deterministic infinite batches of pristine training originals; batch i depends on (seed, i)."""
  check_sizes(config)
  d = config.data
  map_fn = functools.partial(make_example, histories=d.histories, patches=d.patches, size=d.patch)
  source = synthetic.source_from_config(d, "train")
  return pipeline.training_batches(source, config, map_fn, start_step=start_step)


# -------------------------------------------------------------------- loss ---


def embed(model, patches, *, train: bool = False):
  """[N, S, S, 3] uint8 -> [N, S * S] mean-removed noiseprints."""
  out = model(patches.astype(jnp.float32) / INPUT_SCALE, train=train)
  z = out.reshape(out.shape[0], -1).astype(jnp.float32)
  return z - jnp.mean(z, axis=1, keepdims=True)


def batch_classes(b: int, k: int, p: int):
  """[b * k * p] class of every patch: one class per (source, history)."""
  return jnp.repeat(jnp.arange(b * k), p)


def nearest_neighbour_hits(logits, classes):
  """[N] bool: the most similar other sample has the same class."""
  n = logits.shape[0]
  nearest = jnp.argmax(jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, logits), axis=1)
  return classes[nearest] == classes


def loss_fn(models, batch, rng, config):
  """Multi-positive InfoNCE over all B * K * P patches of the batch."""
  del rng  # the histories and patches are drawn in the data pipeline
  patches = batch["patches"]
  b, k, p = patches.shape[:3]
  z = embed(models["model"], patches.reshape((-1,) + patches.shape[3:]), train=True)
  logits = forgery_losses.neg_sq_distance_logits(z, config.loss.temperature)
  classes = batch_classes(b, k, p)
  loss = forgery_losses.multi_positive_infonce(logits, classes)
  hits = nearest_neighbour_hits(logits, classes)
  return loss, {"nn_accuracy": jnp.mean(hits.astype(jnp.float32))}


# -------------------------------------------------------------- evaluation ---


@functools.partial(jax.jit, static_argnums=0)
def _embed(graphdef, state, patches):
  return embed(nnx.merge(graphdef, state), patches)


@functools.partial(jax.jit, static_argnums=0)
def _noiseprint(graphdef, state, image):
  return nnx.merge(graphdef, state)(image[None].astype(jnp.float32) / INPUT_SCALE)[0, ..., 0]


def eval_patches(config):
  """Held-back patches: `config.eval.num_images` test-split originals x K histories x P patches.

  Returns:
    (patches [M * K * P, S, S, 3] uint8, source [M * K * P], history [M * K * P]).
  """
  d, e = config.data, config.eval
  source = synthetic.source_from_config(d, "test")
  rng = np.random.default_rng(e.seed)
  patches, sources, histories = [], [], []
  for i in range(min(len(source), e.num_images)):
    image = read_image(source[i]["image"])
    for h in rng.choice(len(HISTORIES), d.histories, replace=False):
      patches.append(cut_patches(apply_history(image, int(h)), rng, size=d.patch, count=d.patches))
      sources += [i] * d.patches
      histories += [int(h)] * d.patches
  return np.concatenate(patches), np.array(sources), np.array(histories)


def spliced_example(config) -> tuple[np.ndarray, np.ndarray]:
  """A spliced record of the forgery builder's test split (image, mask), made here.

  The first splice into a photograph, if one of the first 20 splices is;
  else the first splice.
  """
  d = config.data
  pool = splits.photo_pool("test", d.get("photo_dir"))
  indices = [i for i in range(120) if forgery.kind_of(i) == "splice"]
  made = [forgery.make_forgery("test", i, d.resolution, d.seed, pool=pool) for i in indices]
  f = next((f for f in made if f.source.startswith("photo:")), made[0])
  return read_image(f.stored.data), f.stored.mask


def visualise(noise: np.ndarray) -> np.ndarray:
  """A noiseprint as uint8 grey: clipped to its 1st-99th percentiles, stretched."""
  lo, hi = np.percentile(noise, [1, 99])
  grey = np.clip((noise - lo) / max(hi - lo, 1e-12), 0, 1)
  return np.repeat(np.round(grey * 255).astype(np.uint8)[..., None], 3, axis=-1)


def evaluate(models, config) -> dict:
  """Nearest-neighbour accuracy of held-back patch embeddings, and a spliced image's noiseprint.

  `nn_accuracy`: the fraction of patches whose nearest other patch (by
  embedding distance) shares their source and history (chance is about
  (P - 1) / (M * K * P)); `nn_history_accuracy`: shares the history only.
  """
  model = models["model"]
  graphdef, state = nnx.split(model)
  patches, sources, histories = eval_patches(config)
  z = np.asarray(_embed(graphdef, state, jnp.asarray(patches)))
  sq = np.sum(z * z, axis=1)
  dist = sq[:, None] + sq[None, :] - 2.0 * z @ z.T
  np.fill_diagonal(dist, np.inf)
  nearest = np.argmin(dist, axis=1)
  same_history = histories[nearest] == histories
  image, mask = spliced_example(config)
  noise = np.asarray(_noiseprint(graphdef, state, jnp.asarray(image)))
  gt = np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=-1)
  return {
      "nn_accuracy": float(np.mean(same_history & (sources[nearest] == sources))),
      "nn_history_accuracy": float(np.mean(same_history)),
      "noiseprint_splice": overlay.panel(
          [image, gt, visualise(noise)], ["spliced image", "ground truth", "noiseprint"], height=192
      ),
  }
