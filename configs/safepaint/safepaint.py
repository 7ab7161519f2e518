"""SafePaint: two-stage anti-forensic inpainting against a spectral-norm PatchGAN (provjax.tasks.safepaint).

    provjax train --config configs/safepaint/safepaint.py:tiny --workdir runs/safepaint_tiny
    provjax eval  --config configs/safepaint/safepaint.py:tiny --checkpoint runs/safepaint_tiny

`:full` is the paper's generator and discriminator at 256 x 256
(specs/safepaint.md section 3: Adam 2e-4, betas 0.5 / 0.999, batch 4, seed
10, 1e6 iterations, a checkpoint every 1,000, horizontal flips, random
masks), with VGG19 ImageNet features converted by the user (`provjax
convert vgg19 FILE --name vgg.imagenet`). `:tiny` is the quarter-width,
two-ResBlock generator and discriminator at 128 x 128 with the zoo's own VGG features
(`vgg.synth-v1`, trained with configs/safepaint/vgg.py), for a CPU; its
crops take 50-100 % of the shorter side (scale augmentation for a small
train split) where `:full` takes the whole square, as the official loader.
Images come from `provjax_inpainting` (provjax.data.inpainting): the
bundled photographs and procedural images, or `--config.data.photo_dir=DIR`.

`--config.loss.joint_backward=true` reproduces the official single backward
pass, in which the discriminator also descends the generator's adversarial
term; the default separates the two updates. `:tiny,redteam=DIR` is the red-team round: it starts the generator and the
discriminator from the work dir DIR (init_from) and fine-tunes them with the
frozen `trufor.synth-v1` in the loss (`redteam.detector`; `redteam.weight`
times its mean forged-probability over the hole), so the zoo's detector finds
less of the fills. The blue-team round fine-tunes TruFor on the fills
(configs/trufor/ph2.py `data.folder`); the card shows both rounds.
`--config.vgg=""` trains with
random VGG features: for tests only. `,quick` is a two-step smoke run at 64 px.

Last run (behind safepaint.synth-v1, scripts/release_safepaint.py): `:tiny` with
`--config.data.photo_dir=DIR` (opencv-doc examples + gnome-backgrounds), stopped at step 451
(about 30 min on 2 CPU cores), then `:tiny,redteam=DIR` for 50 steps. Val eval at step 250:
merged PSNR 18.8, SSIM 0.69. On 72 held-back test images at 256 px: PSNR 17.3 / 17.9 (base /
red-team), 10.6 / 11.3 inside the hole, against OpenCV Telea's 30.7 / 24.1; trufor.synth-v1's
image AUC 0.547 / 0.498 (Telea 0.521).
"""

import ml_collections


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  variant, *flags = arg.split(",")
  if variant not in ("tiny", "full"):
    raise ValueError(f"safepaint configs are :tiny or :full, got {variant!r}")
  small = variant == "tiny"
  c = ml_collections.ConfigDict()
  c.task = "safepaint"
  c.config_file = "safepaint"
  c.seed = 10
  c.distributed = False
  # Keyword overrides of provjax.models.safepaint / patchgan VARIANTS entries.
  c.model = dict(variant=variant, generator={}, discriminator={})
  c.vgg = "vgg.synth-v1" if small else "vgg.imagenet"
  c.data = dict(
      data_dir="~/.cache/provjax/tensorflow_datasets",
      photo_dir=None,  # a folder of photographs used instead of the bundled ones
      resolution=256,  # stored records (provjax.data.inpainting)
      num_train=1000,
      num_val=120,
      num_test=240,
      seed=0,
      size=128 if small else 256,  # training and evaluation crops
      crop_scale=(0.5, 1.0) if small else (1.0, 1.0),
      flip_p=0.5,
      num_threads=2,
  )
  c.loss = dict(
      adversarial=0.1,
      l1=1.0,
      perceptual=0.1,
      style=250.0,
      joint_backward=False,
      # The official [B, 16, 1, 1] codes make the triplet distance per element.
      domain_per_element=True,
  )
  # Red team: with a released TruFor named here, the generator also descends `weight` x that
  # frozen detector's mean forged-probability over the hole (start from a trained SafePaint
  # with --config.init_from=DIR).
  c.redteam = dict(detector="", weight=1.0)
  options = dict(f.split("=", 1) for f in flags if "=" in f)
  c.optimizer = dict(lr=2e-4, b1=0.5, b2=0.999, schedule="constant")
  c.train = dict(
      steps=3000 if small else 1_000_000,
      batch_size=4,
      log_every=50 if small else 100,
      ckpt_every=250 if small else 1000,
      keep=2,
      eval_every=500 if small else 10_000,
      allow_config_change=False,
  )
  c.eval = dict(split="val", num_images=16, num_pictures=3)
  # The red-team round starts from a trained run's generator and discriminator.
  source = options.get("redteam")
  c.init_from = [f"{source}:generator", f"{source}:discriminator"] if source else ""
  c.mesh = dict(shape=(-1, 1))
  c.sharding_rules = [
      ["conv_in", None],
      ["conv_out", "model"],
      ["embed_in", None],
      ["embed_out", "model"],
      ["head", None],
  ]
  if source:
    c.redteam.detector = "trufor.synth-v1"
  if "quick" in flags:
    c.data.update(resolution=64, num_train=4, num_val=4, num_test=4, size=64, num_threads=1)
    c.train.update(steps=2, log_every=1, ckpt_every=2, eval_every=2)
    c.eval.update(num_images=2, num_pictures=1)
  return c
