"""Train one generator of the zoo (provjax.models.genzoo): reconstruct real content.

Each generator learns to reconstruct the seen semantics of the zoo's train
split (provjax.data.genzoo) with an MSE loss, plus beta * KL for the VAE;
a few hundred steps are enough for its upsampling path to leave its own
fingerprint (specs/repmix.md, section 12). The released generators then make
the fake classes of `provjax_genzoo`.
"""

from __future__ import annotations

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from provjax import registry
from provjax.data import genzoo, pipeline
from provjax.tasks.contract import Field

SCHEMA = {"images": Field(("B", "S", "S", 3), "uint8", "real content of the seen semantics")}


def create_model(config, rngs: nnx.Rngs):
  return registry.create_model(config.model.name, rngs=rngs, **config.model.get("overrides", {}))


def make_image(index, rng: np.random.Generator, *, size: int, split: str, photo_dir=None) -> dict:
  """The `index`-th training image: a seen semantic in turn, its content drawn from `rng`."""
  semantic = int(index) % genzoo.NUM_SEEN
  pool = genzoo.photo_pool(split, photo_dir) if semantic == 0 else None
  return {"images": genzoo.draw_content(semantic, rng, size, split, pool)[1]}


def train_data(config, *, start_step: int = 0):
  d = config.data
  map_fn = functools.partial(make_image, size=d.resolution, split="train", photo_dir=d.photo_dir)
  return pipeline.training_batches(range(d.count), config, map_fn, start_step=start_step)


def loss_fn(models, batch, rng, config):
  x = batch["images"].astype(jnp.float32) / 255.0
  recon, kl = models["model"](x, key=rng)
  mse = jnp.mean((recon - x) ** 2)
  kl = jnp.mean(kl) / x[0].size  # per pixel value, the scale of the MSE
  return mse + config.loss.kl_weight * kl, {"mse": mse, "kl": kl}


def evaluate(models, config) -> dict:
  """Reconstruction PSNR per semantic on held-back (val and test) content."""
  out, shown = {}, []
  for split in ("val", "test"):
    for semantic in genzoo.split_semantics(split):
      rngs = [genzoo.content_rng(config.data.seed, split, semantic, 0, i) for i in range(16)]
      images = np.stack(
          [genzoo.draw_content(semantic, r, config.data.resolution, split)[1] for r in rngs]
      )
      recon = genzoo.generate(models["model"], images, seed=semantic)
      err = np.mean((recon.astype(np.float64) - images) ** 2, axis=(1, 2, 3))
      out[f"{split}/{genzoo.SEMANTICS[semantic]}_psnr"] = float(
          np.mean(10 * np.log10(255.0**2 / np.maximum(err, 1e-10)))
      )
      if split == "test":
        shown.append(np.concatenate([images[0], recon[0]], axis=0))
  out["examples"] = np.concatenate(shown, axis=1)
  return out
