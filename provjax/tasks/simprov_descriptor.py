"""SImProv search descriptor: multi-positive NT-Xent on benign views.

Batch (specs/simprov.md, section 1): N originals, each with `npos` views;
half are benign augmentations of the original, half benign augmentations of
a manipulated version of it, so an edited copy still retrieves its original.
"""

from __future__ import annotations

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from provjax import registry, transforms
from provjax.data import pipeline, splits, synthetic
from provjax.data.images import read_image
from provjax.retrieval.exact import topk
from provjax.tasks.contract import Field
from provjax.tasks.losses import l2_normalize, multi_positive_nt_xent
from provjax.transforms import recipes

SCHEMA = {"views": Field(("B", "npos", "S", "S", 3), "uint8", "npos benign views per original")}


def create_model(config, rngs: nnx.Rngs):
  return registry.create_model(config.model.name, rngs=rngs, **config.model.get("overrides", {}))


def _source(config, split: str):
  return synthetic.source_from_config(config.data, split)


# How training views are made (`config.data.recipe`): "moderate" is the chain
# the benchmarks' queries use (1-3 ops), "paper" the paper's strengths
# (transforms.recipes: 1-5 ops, corruptions, full colour jitter, big crops).
RECIPES = {
    "moderate": (transforms.random_benign, transforms.random_manipulation),
    "paper": (recipes.paper_benign, recipes.paper_manipulation),
}


def make_views(
    record, rng: np.random.Generator, *, npos: int, size: int, recipe: str = "moderate"
) -> dict:
  """`npos` benign views: half of the original, half of a manipulated copy."""
  benign, manipulate = RECIPES[recipe]
  image = read_image(record["image"], name=f"record {record.get('id')}")
  original = transforms.untracked(image)  # the loss reads the views' pixels only
  donor = lambda: splits.draw_procedural(rng, image.shape[0], "train")  # train sources only
  edited = manipulate(original, rng, donors=donor)
  sources = [original] * (npos // 2) + [edited] * (npos - npos // 2)
  views = [transforms.to_size(benign(s, rng), size).image for s in sources]
  return {"views": np.stack(views)}


def train_data(config, *, start_step: int = 0):
  """Deterministic infinite batches; batch i depends only on (seed, i)."""
  map_fn = functools.partial(
      make_views,
      npos=config.data.npos,
      size=config.data.image_size,
      recipe=config.data.get("recipe", "moderate"),
  )
  return pipeline.training_batches(_source(config, "train"), config, map_fn, start_step=start_step)


def loss_fn(models, batch, rng, config):
  del rng  # augmentation randomness lives in the data pipeline
  model, views = models["model"], batch["views"]
  b, v = views.shape[:2]
  x = views.reshape((b * v,) + views.shape[2:]).astype(jnp.float32) / 255.0
  z = model(x, train=True)
  loss = multi_positive_nt_xent(z, v, config.loss.temperature)
  return loss, {}


@functools.partial(jax.jit, static_argnums=0)
def _embed(graphdef, state, images):
  model = nnx.merge(graphdef, state)
  return l2_normalize(model(images.astype(jnp.float32) / 255.0, train=False))


def embed(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
  """L2-normalised descriptors of uint8 images [N, S, S, 3], in fixed-size batches."""
  graphdef, state = nnx.split(model)
  out = []
  for i in range(0, len(images), batch_size):
    chunk = images[i : i + batch_size]
    pad = batch_size - len(chunk)
    chunk = (
        np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)]) if pad else chunk
    )
    out.append(np.asarray(_embed(graphdef, state, chunk))[: batch_size - pad])
  return np.concatenate(out)


def evaluate(models, config) -> dict:
  """Recall@1/5 of held-back originals for benign and manipulated queries."""
  model = models["model"]
  source = _source(config, "test")
  n = min(len(source), config.eval.num_images)
  rng = np.random.default_rng(config.eval.seed)
  size = config.data.image_size
  gallery, benign, manip = [], [], []
  for i in range(n):
    image = read_image(source[i]["image"])
    e = transforms.identity(image)
    gallery.append(transforms.to_size(e, size).image)
    benign.append(transforms.to_size(transforms.random_benign(e, rng), size).image)
    edited = transforms.random_manipulation(
        e, rng, donors=[splits.draw_procedural(rng, image.shape[0], "test")]
    )
    manip.append(transforms.to_size(transforms.random_benign(edited, rng), size).image)
  g = embed(model, np.stack(gallery))
  metrics = {}
  for name, queries in (("benign", benign), ("manipulated", manip)):
    _, idx = topk(jnp.asarray(g), jnp.asarray(embed(model, np.stack(queries))), 5)
    idx = np.asarray(idx)
    truth = np.arange(n)[:, None]
    metrics[f"{name}_recall@1"] = float(np.mean(idx[:, :1] == truth) * 1)
    metrics[f"{name}_recall@5"] = float(np.mean(np.any(idx == truth, axis=1)))
  return metrics
