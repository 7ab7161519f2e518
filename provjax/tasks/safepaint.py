"""SafePaint: the two-stage inpainting generator against a PatchGAN (specs/safepaint.md sections 2-3).

Models: `generator` (provjax.models.safepaint, its domain extractor
included), `discriminator` (provjax.models.patchgan) and `vgg`
(provjax.models.vgg, frozen: no optimizer names it, so the trainer restores
it after every step). `opt_g` and `opt_d` are Adam (lr 2e-4, betas 0.5 /
0.999, the official hard-coded values) over all of each.

Batch contract (`SCHEMA`): `image` [B, S, S, 3] uint8 and `mask` [B, S, S, 1]
uint8, 1 = hole and 0 = kept (uint8 rather than float: a quarter of the bytes
to move, and exactly {0, 1}).

One step, one forward (the generator in training mode: BatchNorm batch
statistics), both optimizers applied to gradients taken at the same
parameters, as the official `process`:
  L_dom   = 0.01 [Trip(z_gt, z_r, z_gt) + Trip(z_r, z_b, z_r)]
  L_adv,G = 0.1 BCE(D(O2), 1)
  L_1     = [L1(O1, I) + L1(O2, I)] / mean(m)
  L_perc  = 0.1 sum_O sum_{relu1_1..relu5_1} L1(phi(O), phi(I))
  L_style = 250 sum_O sum_{relu2_2, 3_4, 4_4, 5_2} L1(G(phi(O m)), G(phi(I m)))
  L_D     = 0.5 [BCE(D(I), 1) + BCE(D(stop_gradient(O2)), 0)]
Trip is torch's TripletMarginLoss (margin 0.1), by default per element of the
codes as the official [B, 16, 1, 1] tensors make it (`loss.domain_per_element`,
provjax.tasks.inpaint_losses.domain_loss). The generator, its extractor
included, descends L_dom + L_adv,G + L_1 + L_perc + L_style. The
discriminator descends L_D, or with `config.loss.joint_backward` L_D +
L_adv,G: the official single backward of the sum, whose D(O2) term pushes D
towards calling the fakes real (the spec's quirk; off by default). D runs on
I, stop_gradient(O2) and O2 in that order, in training mode, so its spectral
norms advance three power iterations per step as in the official code.

Red team (`config.redteam.detector` names a released TruFor, frozen as
`detector`): the generator also descends L_red = redteam.weight x the
detector's mean forged-probability over the hole of C2, so the fill learns
to pass the zoo's own forensic detector.

Data: the `provjax_inpainting` train split (provjax.data.inpainting), a
random square crop of `data.crop_scale` of the shorter side resized to
`data.size` (bicubic, PIL's default resize as the official loader), a
horizontal flip with p = 0.5 (the official augmentation) and a fresh
free-form mask per sample (provjax.transforms.masks, ratio bin and kind drawn
uniformly); batch i is a pure function of (seed, i). Evaluation: PSNR / SSIM
/ MAE of the merged C2 on a fixed held-back batch of the val split (its
records' own masks), and a picture image | masked | C1 | C2.
"""

from __future__ import annotations

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from provjax import registry, weights
from provjax.data import inpainting, pipeline
from provjax.data.images import read_image
from provjax.metrics import inpainting as metrics
from provjax.tasks import inpaint_losses as losses
from provjax.tasks.contract import Field, Optim
from provjax.tasks.optim import schedule
from provjax.transforms.masks import free_form_mask
from provjax.viz import overlay

SCHEMA = {
    "image": Field(("B", "S", "S", 3), "uint8", "RGB training crops"),
    "mask": Field(("B", "S", "S", 1), "uint8", "hole mask: 1 = hole, 0 = kept"),
}
# The VGG variant a run with `vgg = ""` (random features, tests only) builds, per model variant.
RANDOM_VGG = {"tiny": "vgg.tiny", "full": "vgg.vgg19"}
VGG_TAPS = tuple(dict.fromkeys(losses.PERCEPTUAL_TAPS + losses.STYLE_TAPS))


# ------------------------------------------------------------------ models ---


def _placed_like(loaded: nnx.Module, target: nnx.Module) -> nnx.Module:
  """`target` holding `loaded`'s arrays, each on `target`'s sharding (the run's mesh)."""
  state = nnx.state(target)
  arrays = jax.tree.map(
      lambda new, old: jax.device_put(np.asarray(new, old.dtype), old.sharding),
      nnx.to_pure_dict(nnx.state(loaded)),
      nnx.to_pure_dict(state),
  )
  nnx.replace_by_pure_dict(state, arrays)
  nnx.update(target, state)
  return target


def released_frozen(name: str, rngs: nnx.Rngs, hint: str) -> nnx.Module:
  """Released weights `name`, placed on the active mesh (a frozen part: no optimizer names it)."""
  if name not in weights.released():
    raise ValueError(
        f"the config names the released weights {name!r}, which are not installed "
        f"(looked in {weights.root()}); {hint}"
    )
  meta = weights.read_config(name)
  fresh = registry.create_model(meta["arch"], rngs=rngs, **meta.get("overrides", {}))
  return _placed_like(weights.load(name), fresh)


def frozen_vgg(config, rngs: nnx.Rngs) -> nnx.Module:
  """The loss network: the released weights `config.vgg` names.

  `config.vgg = ""` builds randomly initialised features instead (RANDOM_VGG);
  that is for tests only, since random features make the perceptual and
  style terms nearly meaningless.
  """
  if not config.vgg:
    return registry.create_model(RANDOM_VGG[config.model.variant], rngs=rngs)
  return released_frozen(
      config.vgg,
      rngs,
      "train them with configs/safepaint/vgg.py and release them, or convert torchvision's "
      "VGG19 with `provjax convert vgg19 FILE --name vgg.imagenet`",
  )


def create_models(config, rngs: nnx.Rngs) -> dict:
  m = config.model
  return {
      "generator": registry.create_model(
          f"safepaint.{m.variant}", rngs=rngs, **m.get("generator", {})
      ),
      "discriminator": registry.create_model(
          f"patchgan.{m.variant}", rngs=rngs, **m.get("discriminator", {})
      ),
      "vgg": frozen_vgg(config, rngs),
      **red_team_detector(config, rngs),
  }


def red_team_detector(config, rngs: nnx.Rngs) -> dict:
  """{"detector": the frozen TruFor the red-team term fools}, or {} when the term is off."""
  red = config.get("redteam", {})
  if not red.get("detector"):
    return {}
  hint = "release or convert a TruFor first (provjax convert trufor FILE --name trufor.TAG)"
  return {"detector": released_frozen(red.detector, rngs, hint)}


def detected_in_hole(detector, merged, masks) -> jax.Array:
  """The frozen TruFor's mean forged-probability over the hole of the merged fill (eval mode).

  TruFor reads uint8 / 256 (provjax.models.trufor.preprocess); the merged
  output in [0, 1] is put on that scale without rounding, so the term stays
  differentiable with respect to the hole's pixels.
  """
  out = detector(merged * (255.0 / 256.0))
  forged = jax.nn.softmax(out["loc_logits"], axis=-1)[..., 1:2]
  return jnp.sum(forged * masks) / jnp.maximum(jnp.sum(masks), 1.0)


def adam(cfg, steps: int) -> optax.GradientTransformation:
  """Adam with torch's defaults besides lr and betas (eps 1e-8 outside the square root)."""
  return optax.adam(schedule(cfg, steps), b1=cfg.b1, b2=cfg.b2, eps=cfg.get("eps", 1e-8))


def optimizers(config) -> dict[str, Optim]:
  tx = adam(config.optimizer, config.train.steps)
  return {"opt_g": Optim("generator", tx), "opt_d": Optim("discriminator", tx)}


# -------------------------------------------------------------------- step ---


def to_input(batch) -> tuple[jax.Array, jax.Array]:
  """uint8 image and mask -> float32 images in [0, 1] and masks in {0, 1}."""
  return batch["image"].astype(jnp.float32) / 255.0, batch["mask"].astype(jnp.float32)


def without_param_grads(module: nnx.Module, *args, **kwargs):
  """module(*args) with no gradient into its parameters (the inputs keep theirs).

  Its other state (spectral-norm vectors) is updated as by a plain call.
  """
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  copy = nnx.merge(graphdef, jax.lax.stop_gradient(params), rest)
  out = copy(*args, **kwargs)
  nnx.update(module, nnx.state(copy, nnx.Not(nnx.Param)))
  return out


def vgg_features(vgg, stacks: list[jax.Array]) -> list[dict]:
  """phi of each [B, H, W, 3] array in `stacks`, in one VGG call (VGG has no batch statistics)."""
  feats = vgg(jnp.concatenate(stacks), taps=VGG_TAPS)
  b = stacks[0].shape[0]
  return [{k: f[i * b : (i + 1) * b] for k, f in feats.items()} for i in range(len(stacks))]


def objective(generator, discriminator, vgg, images, masks, w, detector=None, red=None):
  """(the sum of every term, (terms, d_real, d_fake)); see the module docstring.

  With a `detector` (the red-team option), the generator also descends
  `red.weight` x the detector's mean forged-probability over the hole.
  """
  out = generator(images, masks, train=True)
  o1, o2 = out["o1"], out["o2"]
  d_real = discriminator(images, train=True)
  d_fake = discriminator(jax.lax.stop_gradient(o2), train=True)
  if w.joint_backward:
    d_gen = discriminator(o2, train=True)
  else:
    d_gen = without_param_grads(discriminator, o2, train=True)
  f_o1, f_o2, f_i, f_o1m, f_o2m, f_im = vgg_features(
      vgg, [o1, o2, images, o1 * masks, o2 * masks, images * masks]
  )
  terms = {
      "l_dom": losses.domain_loss(out, per_element=w.domain_per_element),
      "l_adv": w.adversarial * losses.bce(d_gen, 1.0),
      "l_1": w.l1 * (losses.hole_l1(o1, images, masks) + losses.hole_l1(o2, images, masks)),
      "l_perc": w.perceptual * (losses.perceptual(f_o1, f_i) + losses.perceptual(f_o2, f_i)),
      "l_style": w.style * (losses.style(f_o1m, f_im) + losses.style(f_o2m, f_im)),
      "l_d": 0.5 * (losses.bce(d_real, 1.0) + losses.bce(d_fake, 0.0)),
  }
  if detector is not None:
    terms["l_redteam"] = red.weight * detected_in_hole(detector, out["c2"], masks)
  return sum(terms.values()), (terms, d_real, d_fake)


def train_step(models, opts, batch, rng, config) -> dict:
  """Both updates from one forward and one backward (see the module docstring)."""
  del rng  # every random choice lives in the data pipeline
  images, masks = to_input(batch)
  gen, disc = models["generator"], models["discriminator"]
  diff = (nnx.DiffState(0, nnx.Param), nnx.DiffState(1, nnx.Param))
  grad_fn = nnx.value_and_grad(objective, argnums=diff, has_aux=True)
  (loss, (terms, d_real, d_fake)), (g_grads, d_grads) = grad_fn(
      gen,
      disc,
      models["vgg"],
      images,
      masks,
      config.loss,
      models.get("detector"),
      config.get("redteam"),
  )
  opts["opt_g"].update(gen, g_grads)
  opts["opt_d"].update(disc, d_grads)
  return {
      **terms,
      "loss": loss,
      "l_g": loss - terms["l_d"],
      "d_real": jnp.mean(d_real),
      "d_fake": jnp.mean(d_fake),
      "grad_norm_g": optax.tree.norm(g_grads),
      "grad_norm_d": optax.tree.norm(d_grads),
  }


# -------------------------------------------------------------------- data ---


def square_crop(image: np.ndarray, rng: np.random.Generator, *, size: int, scale) -> np.ndarray:
  """A random square of `scale` (lo, hi) x the shorter side, resized to size x size (bicubic)."""
  h, w = image.shape[:2]
  side = max(1, round(min(h, w) * rng.uniform(*scale)))
  top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
  crop = image[top : top + side, left : left + side]
  if side == size:
    return np.ascontiguousarray(crop)
  return np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BICUBIC))


def make_sample(record, rng: np.random.Generator, *, size: int, scale, flip_p: float) -> dict:
  """A training crop (flipped with p = flip_p) and a fresh free-form hole mask for it."""
  image = read_image(bytes(record["image"]), name=f"record {inpainting.text(record['name'])}")
  image = square_crop(image, rng, size=size, scale=scale)
  if rng.random() < flip_p:
    image = image[:, ::-1]
  hole = free_form_mask(rng, size, size)
  return {"image": np.ascontiguousarray(image), "mask": hole[..., None].astype(np.uint8)}


def train_data(config, *, start_step: int = 0):
  d = config.data
  map_fn = functools.partial(make_sample, size=d.size, scale=tuple(d.crop_scale), flip_p=d.flip_p)
  return pipeline.training_batches(
      inpainting.source_from_config(d, "train"), config, map_fn, start_step=start_step
  )


# -------------------------------------------------------------- evaluation ---


def held_back(config) -> tuple[np.ndarray, np.ndarray]:
  """The first `eval.num_images` val records at data.size: uint8 images, bool holes (fixed)."""
  source = inpainting.source_from_config(config.data, config.eval.get("split", "val"))
  size, images, holes = config.data.size, [], []
  for i in range(min(len(source), config.eval.num_images)):
    image, hole = inpainting.decode(source[i])
    if image.shape[:2] != (size, size):
      image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))
      hole = np.asarray(Image.fromarray(hole).resize((size, size), Image.Resampling.NEAREST))
    images.append(image)
    holes.append(hole)
  return np.stack(images), np.stack(holes)


@functools.partial(jax.jit, static_argnums=0)
def _merged(graphdef, state, images, holes):
  out = nnx.merge(graphdef, state)(images.astype(jnp.float32) / 255.0, holes[..., None])
  to_uint8 = lambda x: jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0).astype(jnp.uint8)
  return to_uint8(out["c1"]), to_uint8(out["c2"])


def inpaint(generator, images: np.ndarray, holes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """uint8 [N, S, S, 3] and bool holes [N, S, S] -> merged C1, C2 as uint8, in eval mode.

  Rounded, not truncated, so that pixels outside the hole come back as they went in.
  """
  graphdef, state = nnx.split(generator)
  c1, c2 = _merged(graphdef, state, jnp.asarray(images), jnp.asarray(holes, jnp.float32))
  return np.asarray(c1), np.asarray(c2)


def picture(image, hole, c1, c2) -> np.ndarray:
  masked = np.where(hole[..., None], np.uint8(255), image)  # the hole filled white, as E sees it
  return overlay.panel([image, masked, c1, c2], ["image", "masked", "C1 (coarse)", "C2 (merged)"])


def evaluate(models, config) -> dict:
  """Mean PSNR, SSIM, MAE of C2 against the ground truth; a picture of the first few.

  The held-back set is one batch: one compile, whatever the step.
  """
  images, holes = held_back(config)
  # A work dir has all three modules; released weights (`provjax eval --checkpoint
  # safepaint.TAG`) are the generator alone, passed as "model".
  generator = models["generator"] if "generator" in models else models["model"]
  c1, c2 = inpaint(generator, images, holes)
  out = {
      name: float(np.mean([fn(gt, pred) for gt, pred in zip(images, c2)]))
      for name, fn in (("psnr", metrics.psnr), ("ssim", metrics.ssim), ("mae", metrics.mae))
  }
  shown = min(config.eval.num_pictures, len(images))
  if shown:
    out["example"] = np.concatenate(
        [picture(images[i], holes[i], c1[i], c2[i]) for i in range(shown)], axis=0
    )
  return out
