"""SSCD baseline: InfoNCE (tau 0.05) + KoLeo on two augmented views of each image.

specs/copy_detection.md section 4. Both views carry the augmentation recipe
(SSCD's views are symmetric); the KoLeo weight follows the configuration
(the paper's 30, or the 10 that SSCD's docs recommend for new setups).
"""

from __future__ import annotations

from flax import nnx
import jax.numpy as jnp
import numpy as np

from provjax import registry, transforms
from provjax.data.images import read_image
from provjax.models import copynce
from provjax.tasks import copy_data
from provjax.tasks.contract import Field
from provjax.tasks.copy_losses import info_nce, koleo
from provjax.transforms import copy_recipe

SCHEMA = {"views": Field(("B", 2, "S", "S", 3), "uint8", "two augmented views of each image")}


def create_model(config, rngs: nnx.Rngs):
  return registry.create_model(config.model.name, rngs=rngs, **config.model.get("overrides", {}))


def make_views(record, rng, *, donors, size: int) -> dict:
  image = transforms.identity(read_image(bytes(record["image"]), name=f"record {record.get('id')}"))
  views = [copy_recipe.copy_view(image, rng, donors=donors, size=size).image for _ in range(2)]
  return {"views": np.stack(views)}


def train_data(config, *, start_step: int = 0):
  return copy_data.training_batches(config, make_views, start_step=start_step)


def loss_fn(models, batch, rng, config):
  del rng
  views = batch["views"]
  x = copynce.preprocess(jnp.concatenate([views[:, 0], views[:, 1]]))
  z = models["model"](x, train=True)["feat"]
  l_info = info_nce(z, 1.0 / config.loss.temperature)
  l_koleo = koleo(z)
  return l_info + config.loss.koleo * l_koleo, {"infonce": l_info, "koleo": l_koleo}


def evaluate(models, config) -> dict:
  """kNN (k = 10) µAP / RP90 / R@1 on the held-back `val` benchmark."""
  data = copy_data.held_back(config, "val")
  return copy_data.descriptor_figures(
      lambda x: copy_data.embed(models["model"], x), data, config.data.image_size
  )
