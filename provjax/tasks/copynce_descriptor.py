"""CopyNCE descriptor: InfoNCE on the descriptor + CopyNCE on patch tokens + KoLeo.

specs/copy_detection.md section 6: loss = w_info * InfoNCE(feat, learned scale)
+ w_copynce * CopyNCE(last-block patch tokens, gamma 3, s 16, lambda 0.5)
+ w_koleo * KoLeo(feat). The learned log-scale (init 3.2) is its own module,
`logit_scale`, trained by the same optimizer as the model.
"""

from __future__ import annotations

from flax import nnx
import jax.numpy as jnp
import numpy as np

from provjax import registry
from provjax.data.images import read_image
from provjax.models import copynce
from provjax.tasks import copy_data
from provjax.tasks.contract import Field, Optim
from provjax.tasks.copy_losses import copynce as copynce_loss
from provjax.tasks.copy_losses import info_nce, koleo
from provjax.tasks.optim import make_optimizer

SCHEMA = {
    "query": Field(("B", "S", "S", 3), "uint8", "augmented copy of each source"),
    "reference": Field(("B", "S", "S", 3), "uint8", "the clean source"),
    "overlap_qr": Field(("B", "L", "L1"), "float32", "query patch -> reference patch overlap"),
    "overlap_rq": Field(("B", "L", "L1"), "float32", "reference patch -> query patch overlap"),
}


class LogScale(nnx.Module):
  """The InfoNCE temperature as a learned log-scale (CopyNCE's infonce_log_scale)."""

  def __init__(self, init: float):
    self.value = nnx.Param(jnp.asarray(init, jnp.float32))


def create_models(config, rngs: nnx.Rngs) -> dict:
  model = registry.create_model(config.model.name, rngs=rngs, **config.model.get("overrides", {}))
  return {"model": model, "logit_scale": LogScale(config.loss.log_scale_init)}


def optimizers(config) -> dict:
  """One optimizer over the descriptor and its scale; the patch embedding frozen if asked
  (the paper freezes DINO's; from scratch it must learn)."""
  tx = make_optimizer(config.optimizer, config.train.steps)
  wrt = nnx.Not(nnx.PathContains("patch_embed")) if config.model.freeze_patch_embed else nnx.Param
  return {"opt": Optim("model", tx, wrt), "opt_scale": Optim("logit_scale", tx)}


def make_pair(record, rng, *, donors, size: int, patch: int) -> dict:
  image = read_image(bytes(record["image"]), name=f"record {record.get('id')}")
  return copy_data.copy_pair(image, rng, donors=donors, size=size, patch=patch)


def train_data(config, *, start_step: int = 0):
  return copy_data.training_batches(
      config, make_pair, start_step=start_step, patch=config.data.patch
  )


def loss_fn(models, batch, rng, config):
  del rng  # augmentation randomness lives in the data pipeline
  model, w = models["model"], config.loss
  b = batch["query"].shape[0]
  x = copynce.preprocess(jnp.concatenate([batch["query"], batch["reference"]]))
  out = model(x, train=True)
  z = out["feat"]
  scale = jnp.exp(models["logit_scale"].value[...])
  l_info = info_nce(z, scale, self_cos=-1.0)
  l_patch = copynce_loss(
      out["patches"][:b],
      out["patches"][b:],
      batch["overlap_qr"],
      batch["overlap_rq"],
      jnp.ones((b,)),
      gamma=w.gamma,
      scale=w.patch_scale,
  )
  l_koleo = koleo(z)
  loss = w.infonce * l_info + w.copynce * l_patch + w.koleo * l_koleo
  return loss, {"infonce": l_info, "copynce": l_patch, "koleo": l_koleo, "scale": scale}


def evaluate(models, config) -> dict:
  """kNN (k = 10) µAP / RP90 / R@1 on the held-back `val` benchmark."""
  data = copy_data.held_back(config, "val")
  embed_fn = lambda x: copy_data.embed(models["model"], x)
  return copy_data.descriptor_figures(embed_fn, data, config.data.image_size)
