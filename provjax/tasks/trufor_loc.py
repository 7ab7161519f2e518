"""TruFor phase 2: train the dual encoder and the localization head (specs/trufor.md section 6).

The Noiseprint++ extractor (`dncnn`) is frozen: it runs in eval mode and no
optimizer sees it, and the confidence and detection heads are neither run nor
trained. Only `config.train_parts` (backbone, decode_head) run in training
mode and get gradients.

Batch contract (`SCHEMA`): `image` [B, S, S, 3] uint8 crops and `label`
[B, S, S] int32 pixel labels (1 forged, 0 authentic, -1 padding). Crops
smaller than S are padded; the padded pixels enter the model as RGB 127.5
(before /256) and are ignored by the loss.

Data (`train_data`): class-balanced crops of the synthetic forgery builder's
train split, of a folder of forgeries in the generic layout
(`config.data.folder`, e.g. SafePaint fills), or of both in fixed
proportion (`config.data.folder_fraction`).

Loss: 0.3 * CE(weights [0.5, 2.5], ignore -1) + 0.7 * Dice. Optimizer: SGD
momentum 0.9, weight decay 5e-4 on kernels only (no biases, no norm
parameters), poly-0.9 learning-rate decay.
"""

from __future__ import annotations

import functools
import os

from flax import nnx
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from provjax import registry
from provjax.data import forensics, forgery, pipeline
from provjax.data.images import read_image
from provjax.metrics import forgery as forgery_metrics
from provjax.models.trufor import INPUT_SCALE
from provjax.tasks import forgery_losses, optim
from provjax.tasks.contract import Field, Optim
from provjax.viz import overlay

PAD_VALUE = 127.5  # RGB value of padded pixels, before /256 (TruFor's crop padding)

SCHEMA = {
    "image": Field(("B", "S", "S", 3), "uint8", "RGB crops, padded at the bottom/right"),
    "label": Field(("B", "S", "S"), "int32", "1 forged, 0 authentic, -1 padding (ignored)"),
}


def create_model(config, rngs: nnx.Rngs):
  """`config.model.name` (e.g. trufor.tiny), honouring an active mesh."""
  return registry.create_model(config.model.name, rngs=rngs, **config.model.get("overrides", {}))


# --------------------------------------------------------------- optimizer ---


def trained(config):
  """The NNX filter of the parameters this phase trains: those under `config.train_parts`."""
  return nnx.Any(*(nnx.PathContains(part) for part in config.train_parts))


def decay_mask(params):
  """Weight decay on kernels only: biases and norm scales/offsets are the 1-D leaves."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def sgd_poly(cfg, steps: int) -> optax.GradientTransformation:
  """TruFor's optimizer: SGD + momentum, masked L2 decay, lr * (1 - t / steps) ** power.

  The decay is added to the gradient before momentum, as in PyTorch's SGD.
  """
  if (cfg.get("name", "sgd"), cfg.get("schedule", "poly")) != ("sgd", "poly"):
    raise ValueError(f"TruFor trains with name='sgd', schedule='poly'; the config says {cfg}")
  lr = optax.polynomial_schedule(cfg.lr, 0.0, cfg.get("power", 0.9), max(steps, 1))
  return optax.chain(
      optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask),
      optax.sgd(lr, momentum=cfg.get("momentum", 0.9)),
  )


def make_optimizer(cfg, steps: int) -> optax.GradientTransformation:
  """The paper's SGD + poly, or (any other name) provjax.tasks.optim's, e.g. AdamW + cosine.

  AdamW is a deviation for models trained from scratch: the paper's SGD recipe
  starts from ImageNet-pretrained encoders, which nothing here can download.
  """
  if cfg.get("name", "sgd") == "sgd":
    return sgd_poly(cfg, steps)
  return optim.make_optimizer(cfg, steps)


def optimizers(config) -> dict[str, Optim]:
  tx = make_optimizer(config.optimizer, config.train.steps)
  return {"opt": Optim("model", tx, trained(config))}


# -------------------------------------------------------------------- loss ---


def to_input(batch) -> jax.Array:
  """uint8 crops -> float32 / 256, with padded pixels (label -1) set to 127.5 / 256."""
  x = batch["image"].astype(jnp.float32) / INPUT_SCALE
  pad = (batch["label"] == forgery_losses.IGNORE)[..., None]
  return jnp.where(pad, PAD_VALUE / INPUT_SCALE, x)


def loss_fn(models, batch, rng, config):
  """0.3 weighted CE + 0.7 Dice of the localization logits (encode + localize only)."""
  model, parts = models["model"], tuple(config.train_parts)
  x = to_input(batch)
  k_enc, k_dec = jax.random.split(rng)
  _, feats = model.encode(x, train=parts, rngs=k_enc)
  logits = model.localize(feats, x.shape[1:3], train=parts, rngs=k_dec)
  c = config.loss
  loss, terms = forgery_losses.localization_loss(
      logits,
      batch["label"],
      ce_weight=c.ce_weight,
      dice_weight=c.dice_weight,
      class_weights=tuple(c.class_weights),
  )
  return loss, terms


def make_train_step(loss):
  """A step taking gradients of `loss(models, batch, rng, config)` for the trained parameters only.

  Differentiating only `trained(config)` keeps JAX from back-propagating into
  the frozen parts at all (the spec's no_grad), and makes `grad_norm` the
  norm of what the optimizer applies.
  """

  def train_step(models, opts, batch, rng, config):
    model = models["model"]

    def loss_of(model):
      return loss({"model": model}, batch, rng, config)

    diff = nnx.DiffState(0, nnx.All(nnx.Param, trained(config)))
    (value, metrics), grads = nnx.value_and_grad(loss_of, argnums=diff, has_aux=True)(model)
    opts["opt"].update(model, grads)
    return {**metrics, "loss": value, "grad_norm": optax.tree.norm(grads)}

  return train_step


train_step = make_train_step(loss_fn)


# -------------------------------------------------------------------- data ---


def _resize(image, mask, factor):
  h, w = mask.shape
  size = (max(1, round(w * factor)), max(1, round(h * factor)))
  image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
  mask = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
  return image, mask


def make_crop(record, rng: np.random.Generator, *, crop: int, aug) -> dict:
  """A training crop with its pixel labels (scale and JPEG augmentation, padding).

  RandomScale by 1 +- aug.scale_limit (p = aug.scale_p; the mask follows
  with nearest neighbours), a random crop whose offsets are multiples of 8
  (the stored JPEG grid keeps its phase), JPEG of the whole crop at a
  quality in aug.jpeg_range (p = aug.jpeg_p; the mask is unchanged), then
  padding to crop x crop with label -1.
  """
  image = read_image(record["image"], name=f"record {bytes(record['name']).decode()}")
  mask = forgery.decode_mask(record["mask"])
  if rng.random() < aug.scale_p:
    factor = rng.uniform(1.0 - aug.scale_limit, 1.0 + aug.scale_limit)
    image, mask = _resize(image, mask.astype(np.uint8), factor)
  h, w = mask.shape
  top = int(rng.integers(max(h - crop, 0) // 8 + 1)) * 8
  left = int(rng.integers(max(w - crop, 0) // 8 + 1)) * 8
  image, mask = (
      image[top : top + crop, left : left + crop],
      mask[top : top + crop, left : left + crop],
  )
  if rng.random() < aug.jpeg_p:
    image = forgery.jpeg_roundtrip(
        image, int(rng.integers(aug.jpeg_range[0], aug.jpeg_range[1] + 1))
    )
  out = np.full((crop, crop, 3), round(PAD_VALUE), np.uint8)  # replaced by 127.5 in to_input
  label = np.full((crop, crop), forgery_losses.IGNORE, np.int32)
  ch, cw = mask.shape
  out[:ch, :cw], label[:ch, :cw] = image, mask > 0
  return {"image": out, "label": label}


def index_labels(count: int) -> np.ndarray:
  """The classes of the synthetic builder's first `count` records, known from their index."""
  return np.array([int(forgery.kind_of(i) != "authentic") for i in range(count)], np.int64)


def record_labels(source) -> np.ndarray:
  """Each record's class from its `label` (1 forged, 0 authentic), read once."""
  return np.array([int(source[i]["label"]) for i in range(len(source))], np.int64)


def balanced_stream(
    source, labels, *, fake_fraction: float, seed: int, name: str = "the training source"
) -> grain.MapDataset:
  """This process's infinite stream of `source`'s records, forged ones at `fake_fraction`.

  Each class (`labels`: 1 forged, 0 authentic per record) is its own shuffled,
  repeated list (seeds `seed` and `seed + 1`), and the two lists are
  interleaved in fixed proportion, so with fraction 0.5 every two records
  hold one of each. Record i of the stream is a pure function of (seed, i).

  Raises:
    ValueError: if a class the fraction asks for has no records in `source`.
  """
  index, count = jax.process_index(), jax.process_count()
  labels = np.asarray(labels)
  lists, weights = [], []
  for k, (label, weight) in enumerate(((1, fake_fraction), (0, 1.0 - fake_fraction))):
    if weight <= 0:  # grain mixes positive weights only
      continue
    ids = np.flatnonzero(labels == label).tolist()[index::count]
    if not ids:
      kind = "forged" if label else "authentic"
      raise ValueError(f"{name} has no {kind} records for {weight:.0%} of the batches")
    lists.append(grain.MapDataset.source(ids).shuffle(seed=seed + k).repeat())
    weights.append(weight)
  order = lists[0] if len(lists) == 1 else grain.MapDataset.mix(lists, weights=weights)
  return order.map(lambda i: source[int(i)])


def batches(records: grain.MapDataset, config, map_fn, *, start_step: int = 0):
  """Infinite batches of `map_fn(record, rng)` over a record stream, from batch `start_step`.

  Each process takes its share of `config.train.batch_size`; the random
  stream of `map_fn` depends on the position only, so batch i is a pure
  function of (seed, i) and a resumed run continues where it stopped.
  """
  index, count = jax.process_index(), jax.process_count()
  map_seed = int(np.random.SeedSequence([config.seed, index]).generate_state(1)[0])
  ds = records.random_map(map_fn, seed=map_seed)
  ds = ds.batch(config.train.batch_size // count, drop_remainder=True)
  return pipeline.iterate(
      ds,
      start=start_step,
      num_threads=config.data.get("num_threads", 2),
      num_workers=config.data.get("num_workers", 0),
  )


def balanced_batches(source, config, map_fn, *, fake_fraction: float, start_step: int = 0):
  """Infinite batches of a synthetic source, forged and authentic records at `fake_fraction`.

  The classes are known from the index (`forgery.kind_of`). With fraction
  0.5 and an even batch every batch is exactly half forged; batch i is a
  pure function of (seed, i) (`balanced_stream`, `batches`).
  """
  labels = index_labels(len(source))
  records = balanced_stream(source, labels, fake_fraction=fake_fraction, seed=config.seed)
  return batches(records, config, map_fn, start_step=start_step)


def folder_share(data_config) -> float:
  """The share of training records taken from `data.folder`: 0 without one."""
  if not data_config.get("folder"):
    return 0.0
  share = float(data_config.get("folder_fraction", 1.0))
  if not 0.0 < share <= 1.0:
    raise ValueError(f"data.folder_fraction must be in (0, 1]; the config says {share}")
  return share


def synthetic_stream(config) -> grain.MapDataset:
  """Class-balanced records of the synthetic forgery builder's train split."""
  source = forgery.source_from_config(config.data, "train")
  labels = index_labels(len(source))
  return balanced_stream(source, labels, fake_fraction=config.data.fake_fraction, seed=config.seed)


def folder_stream(config) -> grain.MapDataset:
  """Class-balanced records of `config.data.folder` (the forensics `folder` builder).

  Its classes come from its records' `label`; its lists shuffle with seeds of
  their own (the synthetic ones use seed and seed + 1).
  """
  d = config.data
  folder = os.path.expanduser(d.folder)
  source = forensics.load_benchmark("folder", folder, data_dir=os.path.expanduser(d.data_dir))
  return balanced_stream(
      source,
      record_labels(source),
      fake_fraction=d.fake_fraction,
      seed=config.seed + 2,
      name=folder,
  )


def train_data(config, *, start_step: int = 0):
  """Class-balanced crops of the synthetic train split, of `config.data.folder`, or of both.

  `data.folder` is a folder of forgeries in the generic layout (fake/ +
  masks/ + real/, e.g. SafePaint fills written by provjax.inpainting.fills):
  its records make `data.folder_fraction` of the stream (1.0: all of it), the
  synthetic builder's train split the rest, interleaved in fixed proportion.
  Each part is class-balanced at `data.fake_fraction` on its own, so the
  whole stream is too.
  """
  share = folder_share(config.data)
  parts = []
  if share < 1.0:
    parts.append((synthetic_stream(config), 1.0 - share))
  if share > 0.0:
    parts.append((folder_stream(config), share))
  streams, weights = (list(x) for x in zip(*parts))
  records = streams[0] if len(streams) == 1 else grain.MapDataset.mix(streams, weights=weights)
  map_fn = functools.partial(make_crop, crop=config.data.crop, aug=config.data.aug)
  return batches(records, config, map_fn, start_step=start_step)


# -------------------------------------------------------------- evaluation ---


def eval_records(config):
  """Held-back (image, mask bool, label, kind) tuples, in stored order.

  With `config.eval.benchmark` (and `config.eval.manual_dir`), every record
  of that public benchmark (provjax.data.forensics): the protocol scores
  whole test lists. Otherwise the first `config.eval.num_images` records of
  the forgery builder's test split (authentic and forged alternate there).
  """
  e = config.eval
  data_dir = os.path.expanduser(config.data.data_dir)
  if e.get("benchmark"):
    source = forensics.load_benchmark(
        e.benchmark, os.path.expanduser(e.manual_dir), data_dir=data_dir
    )
    count = len(source)
  else:
    source = forgery.source_from_config(config.data, "test")
    count = min(len(source), e.num_images)
  for i in range(count):
    record = source[i]
    yield *forensics.decode_record(record), bytes(record["kind"]).decode()


@functools.partial(jax.jit, static_argnums=(0, 3))
def _predict(graphdef, state, image, full: bool):
  """uint8 [1, H, W, 3] -> localization map (and confidence, score when `full`)."""
  model = nnx.merge(graphdef, state)
  x = image.astype(jnp.float32) / INPUT_SCALE
  if not full:
    _, feats = model.encode(x)
    loc = model.localize(feats, x.shape[1:3])
    return {"map": jax.nn.softmax(loc, axis=-1)[0, ..., 1]}
  out = model(x)
  return {
      "map": jax.nn.softmax(out["loc_logits"], axis=-1)[0, ..., 1],
      "conf": jax.nn.sigmoid(out["conf_logits"][0, ..., 0]),
      "score": jax.nn.sigmoid(out["det_logit"][0]),
  }


def predict(model, image: np.ndarray, *, full: bool = False) -> dict:
  """One full image (any size, no crop), eval mode: {map, [conf, score]} as numpy.

  Compiled once per image size.
  """
  graphdef, state = nnx.split(model)
  return jax.device_get(_predict(graphdef, state, jnp.asarray(image[None]), full))


def picture(image: np.ndarray, mask: np.ndarray, heat: np.ndarray, title: str) -> np.ndarray:
  """Image | ground truth | predicted map overlaid, as one uint8 panel."""
  gt = np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=-1)
  return overlay.panel(
      [image, gt, overlay.overlay(image, heat)], ["image", "ground truth", title], height=192
  )


def evaluate(models, config) -> dict:
  """Pixel F1 (best / fixed 0.5) and MCC on the held-back forged images, and a picture."""
  maps, gts, shown = [], [], None
  for image, mask, label, _ in eval_records(config):
    if not label:  # localization is scored on forged images only (spec section 7)
      continue
    heat = predict(models["model"], image)["map"]
    maps.append(heat)
    gts.append(mask)
    if shown is None:
      shown = picture(image, mask, heat, "localization map")
  out = {f"loc_{k}": v for k, v in forgery_metrics.localization_summary(maps, gts).items()}
  if shown is not None:
    out["example"] = shown
  return out
