"""RepMix: generator attribution with representation mixing (specs/repmix.md, sections 3-7).

Batch: B mixed samples, each of `n` images (n = 2 with mixing, 1 without)
with their source labels (0 = real) and mixing weights. The first image of a
sample is a record of the split, its partner a uniform draw from the whole
split (any source, any semantic, as in the official MixupFolder); each image
gets its own random crop, flip and, with probability p, one of the 15
training corruptions at a uniform severity 1-5. Weights come from
Beta(beta, beta), i.e. Dirichlet([beta] * 2), drawn per sample in the data
pipeline.

Loss (the official compute_loss): L = L_attr + L_det with
  L_attr = mean_b sum_i w_bi * CE(a'_b, y_bi)                (a': gated logits)
  L_det  = mean_b sum_i w_bi * c[y_bi > 0] * CE(d_b, y_bi > 0), c = [1, 1/(K-1)]
(PyTorch's `weight` with reduction='none': no re-normalisation).

Evaluation follows the official test.py: no mixing, pred = argmax(a'),
detection accuracy, attribution accuracy and NMI, split by seen / unseen
semantics, on the clean, seen-corruption and unseen-corruption test copies.
"""

from __future__ import annotations

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from provjax import registry
from provjax.data import attribution88, genzoo, pipeline
from provjax.data.images import read_image
from provjax.metrics import attribution as attribution_metrics
from provjax.tasks.contract import Field
from provjax.transforms import corruptions

SCHEMA = {
    "images": Field(("B", "n", "S", "S", 3), "uint8", "n images per mixed sample"),
    "labels": Field(("B", "n"), "int32", "source of each image (0 = real)"),
    "mix": Field(("B", "n"), "float32", "mixing weights, summing to 1 per sample"),
}
EVAL_SPLITS = ("test", "test_seen", "test_unseen")


def source(config, split: str):
  """A split of Attribution88 (`config.data.manual_dir` set) or of the generator zoo."""
  d = config.data
  if d.get("manual_dir"):
    return attribution88.load(d.manual_dir, data_dir=d.data_dir, split=split)
  return genzoo.source_from_config(d, split)


def create_model(config, rngs: nnx.Rngs):
  overrides = {**config.model.get("overrides", {}), "mix_level": config.mix.level}
  return registry.create_model(config.model.name, rngs=rngs, **overrides)


# ---------------------------------------------------------------- the loss ---


def repmix_loss(attribution, detection, labels, mix, *, weighted_detection: bool = True):
  """(L_attr + L_det, parts): mixed-label CE on gated logits + class-weighted detection CE.

  Args:
    attribution: [B, K] gated attribution logits a'.
    detection: [B, 2] detection logits (index 0 = real).
    labels: [B, n] source labels of the n images mixed into each sample.
    mix: [B, n] their mixing weights.
    weighted_detection: weigh real / fake detection terms by [1, 1/(K-1)].
  """
  k = attribution.shape[-1]
  ce_attr = -jnp.take_along_axis(nnx.log_softmax(attribution), labels, axis=-1)
  fake = (labels > 0).astype(jnp.int32)
  ce_det = -jnp.take_along_axis(nnx.log_softmax(detection), fake, axis=-1)
  class_w = jnp.where(fake == 1, 1.0 / (k - 1), 1.0) if weighted_detection else 1.0
  l_attr = jnp.mean(jnp.sum(mix * ce_attr, axis=-1))
  l_det = jnp.mean(jnp.sum(mix * class_w * ce_det, axis=-1))
  return l_attr + l_det, {"attr": l_attr, "det": l_det}


def loss_fn(models, batch, rng, config):
  del rng  # pairing, crops, corruptions and weights are drawn in the data pipeline
  images, labels, mix = batch["images"], batch["labels"], batch["mix"]
  b, n = labels.shape
  x = images.reshape((b * n,) + images.shape[2:]).astype(jnp.float32) / 255.0
  out = models["model"](x, train=True, mix=mix if n > 1 else None)
  loss, parts = repmix_loss(
      out["attribution"],
      out["detection"],
      labels,
      mix,
      weighted_detection=config.loss.weighted_detection,
  )
  # The official soft accuracy: sum_i w_i * softmax(a')[y_i] (logged only).
  soft = jnp.take_along_axis(nnx.softmax(out["attribution"]), labels, axis=-1)
  return loss, {**parts, "soft_acc": jnp.mean(jnp.sum(mix * soft, axis=-1))}


# -------------------------------------------------------------------- data ---


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
  """A random size x size crop, flipped left-right half the time."""
  h, w = image.shape[:2]
  top, left = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
  crop = image[top : top + size, left : left + size]
  return crop[:, ::-1] if rng.random() < 0.5 else crop


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  h, w = image.shape[:2]
  top, left = (h - size) // 2, (w - size) // 2
  return image[top : top + size, left : left + size]


def augment(record, rng: np.random.Generator, *, resize: int, size: int, p: float) -> np.ndarray:
  """Decode, shorter side to `resize` (a no-op on the zoo), random crop + flip, then a
  training corruption with probability p (the official prep -> RandomImagenetC)."""
  image = resize_short_side(read_image(bytes(record["image"]), name="training record"), resize)
  image = random_crop(image, size, rng)
  return corruptions.random_corruption(np.ascontiguousarray(image), rng, p=p)[0]


def make_sample(record, rng: np.random.Generator, *, source, config) -> dict:
  """One mixed sample: the record and (with mixing) a uniform partner from the split."""
  records = [record]
  if config.mix.samples == 2:
    records.append(source[int(rng.integers(len(source)))])
  d = config.data
  images = [augment(r, rng, resize=d.resolution, size=d.crop, p=d.corruption_p) for r in records]
  if len(records) == 2:
    lam = rng.beta(config.mix.beta, config.mix.beta)
    weights = np.array([lam, 1.0 - lam], np.float32)
  else:
    weights = np.ones(1, np.float32)
  return {
      "images": np.stack(images),
      "labels": np.array([int(r["label"]) for r in records], np.int32),
      "mix": weights,
  }


def train_data(config, *, start_step: int = 0):
  records = source(config, "train")
  map_fn = functools.partial(make_sample, source=records, config=config)
  return pipeline.training_batches(records, config, map_fn, start_step=start_step)


# -------------------------------------------------------------- prediction ---


@nnx.jit
def _probs(model, images):
  out = model(images.astype(jnp.float32) / 255.0)
  return nnx.softmax(out["attribution"]), out["embedding"]


def predict(model, images: np.ndarray, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
  """(per-class probabilities [N, K], embeddings [N, 256]) of uint8 crops, fixed-size batches."""
  n = len(images)
  pad = -n % batch_size  # one static shape: the last batch is padded, its padding dropped
  if pad:
    images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
  # Dispatch every batch first and fetch once: no host sync inside the loop.
  outs = [
      _probs(model, jnp.asarray(images[i : i + batch_size]))
      for i in range(0, len(images), batch_size)
  ]
  probs, embeds = (np.asarray(jnp.concatenate(parts))[:n] for parts in zip(*outs))
  return probs, embeds


def split_arrays(config, split: str, limit: int | None = None) -> dict:
  """Model crops, labels and semantics of an evaluation split (its first `limit` records)."""
  records = source(config, split)
  # The zoo's records are stored shuffled (TFDS), so its first n sample every cell;
  # Attribution88 keeps its CSV order (evaluate it whole, the default).
  records = [records[i] for i in range(len(records) if not limit else min(limit, len(records)))]
  d = config.data
  crops = [
      preprocess(read_image(bytes(r["image"])), resize=d.resolution, crop=d.crop) for r in records
  ]
  return {
      "images": np.stack(crops),
      "labels": np.array([int(r["label"]) for r in records]),
      "semantics": np.array([int(r["dlabel"]) for r in records]),
  }


def evaluate(models, config) -> dict:
  """The official test.py figures on each test copy, split by seen / unseen semantics."""
  out = {}
  for split in config.eval.splits:
    arrays = split_arrays(config, split, config.eval.get("max_images"))
    probs, _ = predict(models["model"], arrays["images"])
    summary = attribution_metrics.summary(
        arrays["labels"], probs.argmax(-1), arrays["semantics"], config.eval.num_seen
    )
    out.update({f"{split}/{k}": v for k, v in summary.items()})
  return out


def resize_short_side(image: np.ndarray, size: int) -> np.ndarray:
  """Shorter side to `size`, bicubic, as the zoo's photo crops were made (photos.photo_crop)."""
  h, w = image.shape[:2]
  scale = size / min(h, w)
  new = (max(size, round(w * scale)), max(size, round(h * scale)))
  if new == (w, h):
    return image
  return np.asarray(Image.fromarray(image).resize(new, Image.Resampling.BICUBIC, reducing_gap=2.0))


def preprocess(image: np.ndarray, *, resize: int, crop: int) -> np.ndarray:
  """Any image -> the model's uint8 crop: shorter side to `resize`, then a center crop."""
  return np.ascontiguousarray(center_crop(resize_short_side(image, resize), crop))
