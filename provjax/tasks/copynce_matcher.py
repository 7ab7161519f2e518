"""CopyNCE matcher: copy / no-copy BCE + CopyNCE on the fused patch tokens.

specs/copy_detection.md section 6: a pair is a copy with probability
`data.positive_rate` (0.3); a copy pairs the clean source with an augmented
query view, a non-copy pairs the query view with another image of the split.
Loss = BCE(logit) + w_copynce * CopyNCE(fused tokens, gamma 1) over the copies.
Hard negatives as the paper mines them (`data.hard_negatives`): with p =
`fraction` a non-copy's reference is one of the record's k nearest train
records of another source by a released descriptor's kNN
(provjax.data.hard_negatives), else a random image of the train split.

A non-copy's reference is drawn from the whole train split and made exactly
as a copy's reference is (`transforms.to_size` of the clean image). Drawing
it from the small donor pool of the overlays, or resampling it another way,
hands the classifier a shortcut ("this reference is a donor") that no
held-back pair has: train BCE then falls while held-back µAP stays at zero.
"""

from __future__ import annotations

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from provjax import registry, transforms, weights
from provjax.data.hard_negatives import HardNegatives, neighbour_table
from provjax.data.images import read_image
from provjax.metrics import isc
from provjax.models import copynce
from provjax.tasks import copy_data
from provjax.tasks.contract import Field
from provjax.tasks.copy_losses import copynce as copynce_loss
from provjax.transforms import copy_recipe

SCHEMA = {
    "query": Field(("B", "S", "S", 3), "uint8", "augmented query view"),
    "reference": Field(("B", "S", "S", 3), "uint8", "candidate reference"),
    "label": Field(("B",), "float32", "1 when the query is a copy of the reference"),
    "overlap_qr": Field(("B", "L", "L1"), "float32", "query patch -> reference patch overlap"),
    "overlap_rq": Field(("B", "L", "L1"), "float32", "reference patch -> query patch overlap"),
}


def create_model(config, rngs: nnx.Rngs):
  return registry.create_model(config.model.name, rngs=rngs, **config.model.get("overrides", {}))


def make_pair(
    record, rng, *, donors, size: int, patch: int, positive_rate: float, references, negative=None
) -> dict:
  """A copy (p = positive_rate) or a non-copy pair for `record`.

  `references`: the random-access train split that non-copy references come
  from; `negative(record, rng)` may return a hard one instead (None: random).
  """
  image = read_image(bytes(record["image"]), name=f"record {record.get('id')}")
  if rng.random() < positive_rate:
    return {
        **copy_data.copy_pair(image, rng, donors=donors, size=size, patch=patch),
        "label": np.float32(1.0),
    }
  other = negative(record, rng) if negative is not None else None
  if other is None:
    other = _other_image(references, record, rng)
  query = copy_recipe.copy_view(transforms.identity(image), rng, donors=donors, size=size)
  empty = copy_data.no_overlap(size, patch)
  return {
      "query": query.image,
      "reference": transforms.to_size(transforms.identity(other), size).image,
      "overlap_qr": empty,
      "overlap_rq": empty,
      "label": np.float32(0.0),
  }


def _other_image(references, record, rng) -> np.ndarray:
  """A random image of `references` other than `record`'s own."""
  while True:
    other = references[int(rng.integers(len(references)))]
    if other.get("id") != record.get("id") or len(references) == 1:
      return read_image(bytes(other["image"]), name=f"record {other.get('id')}")


def hard_negatives(config):
  """`negative(record, rng)` for `make_pair` from `config.data.hard_negatives`, or None.

  Neighbours come from the released descriptor `descriptor`'s vectors of the
  train records made as references are (`transforms.to_size`, at the
  descriptor's own input size); records of one source (or, without sources,
  one record) are never each other's.
  """
  cfg = config.data.get("hard_negatives")
  if not cfg or not cfg.fraction:
    return None
  source = copy_data.source(config, "train")
  records = [source[i] for i in range(len(source))]
  size = int(weights.read_config(cfg.descriptor)["preprocessing"]["size"])
  images = np.stack(
      [
          transforms.to_size(transforms.identity(read_image(bytes(r["image"]))), size).image
          for r in records
      ]
  )
  vectors = copy_data.embed(weights.load(cfg.descriptor), images)
  sources = [bytes(r.get("source", r["id"])) for r in records]
  hard = HardNegatives(source, neighbour_table(vectors, sources, cfg.k), float(cfg.fraction))
  rows = {bytes(r["id"]): i for i, r in enumerate(records)}
  return lambda record, rng: hard.draw(rows[bytes(record["id"])], rng)


def train_data(config, *, start_step: int = 0):
  return copy_data.training_batches(
      config,
      make_pair,
      start_step=start_step,
      patch=config.data.patch,
      positive_rate=config.data.positive_rate,
      references=copy_data.source(config, "train"),
      negative=hard_negatives(config),
  )


def loss_fn(models, batch, rng, config):
  del rng
  out = models["model"](
      copynce.preprocess(batch["query"]), copynce.preprocess(batch["reference"]), train=True
  )
  label = batch["label"]
  l_bce = jnp.mean(optax.sigmoid_binary_cross_entropy(out["logit"], label))
  l_patch = copynce_loss(
      out["q_tokens"],
      out["r_tokens"],
      batch["overlap_qr"],
      batch["overlap_rq"],
      label,
      gamma=config.loss.gamma,
      scale=config.loss.patch_scale,
  )
  loss = l_bce + config.loss.copynce * l_patch
  return loss, {"bce": l_bce, "copynce": l_patch}


@functools.partial(jax.jit, static_argnums=0)
def _score(graphdef, state, pairs):
  out = nnx.merge(graphdef, state)(
      copynce.preprocess(pairs[:, 0]), copynce.preprocess(pairs[:, 1]), train=False
  )
  return jax.nn.sigmoid(out["logit"])


def score_pairs(model, queries: np.ndarray, refs: np.ndarray, batch_size: int = 64) -> np.ndarray:
  """P(copy) of each (query, reference) row pair of uint8 [N, S, S, 3] arrays."""
  graphdef, state = nnx.split(model)
  pairs = np.stack([queries, refs], axis=1)
  return copy_data.in_batches(lambda x: _score(graphdef, state, x), pairs, batch_size)


def evaluate(models, config) -> dict:
  """µAP / RP90 / R@1 on the held-back `val` benchmark, every (query, reference) pair scored."""
  data = copy_data.held_back(config, "val")
  size = config.data.image_size
  q = np.stack([copy_data.square(x, size) for x in data["queries"]])
  r = np.stack([copy_data.square(x, size) for x in data["refs"]])
  nq, nr = len(q), len(r)
  p = score_pairs(models["model"], np.repeat(q, nr, axis=0), np.tile(r, (nq, 1, 1, 1)))
  p = p.reshape(nq, nr)
  k = min(10, nr)
  top = np.argsort(-p, axis=1, kind="stable")[:, :k]
  preds = [
      (data["query_ids"][i], data["ref_ids"][j], float(p[i, j])) for i in range(nq) for j in top[i]
  ]
  m = isc.evaluate(data["pairs"], preds, gt_queries=data["gt_queries"])
  return {key: m[key] for key in ("micro_ap", "recall_at_p90", "recall_at_rank1")}
