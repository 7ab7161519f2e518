"""CopyNCE descriptor: InfoNCE + CopyNCE (PixTrace patch overlaps) + KoLeo.

    provjax train --config configs/copynce/descriptor.py:tiny --workdir runs/copynce_tiny
    provjax eval  --config configs/copynce/descriptor.py:tiny --checkpoint runs/copynce_tiny
    python scripts/release_copydetect.py --descriptor runs/copynce_tiny \
        --matcher runs/copynce_matcher_tiny --sscd runs/sscd_tiny

`:tiny` is a 6-block ViT (dim 192, patch 8) on 64-px views, trained from
scratch on CPU; `:vits16` is the paper's ViT-S/16 at 224 px (specs/copy_detection.md
section 6: AdamW 0.9/0.999, wd 0.04, base lr 6e-4 per 1,024 square-root scaled,
clip 3.0, loss weights 1 / 5 / 5, gamma 3, s 16, patch embedding frozen).
Pairs come from `provjax_copydetect`'s train split (provjax.data.copydetect);
`val` is the held-back benchmark the evaluation reports.

Deviations: no DINO initialisation exists offline, so `:tiny` trains the patch
embedding (freezing a random one only hurts) and uses a larger learning rate;
no hard-negative mining from a DINO kNN (negatives are the other pairs of the
batch). `quick` is a two-step smoke run.

Runs behind the releases (`--config.data.photo_dir=DIR`, DIR = Debian's opencv-doc examples +
gnome-backgrounds):
- copynce.synth-v1: 1,500 steps, 46 min of log on 2 CPU cores (shared part of the time); val
  µAP 0.23 / 0.30 / 0.37 at steps 500 / 1,000 / 1,500.
- copynce.synth-v2: that run continued, `--config.init_from=copynce.synth-v1
  --config.train.steps=2000 --config.optimizer.lr=0.0007 --config.optimizer.warmup_steps=50`
  (a fresh schedule), 32 min of log; val µAP 0.29 / 0.38 / 0.42 / 0.43 at steps 500 / 1,000 /
  1,500 / 2,000. Test figures (and the protocol chosen on val) are in the model cards and the
  README (scripts/release_copydetect.py).
"""

import ml_collections


def data_config(variant: str) -> dict:
  small = variant == "tiny"
  return dict(
      data_dir="~/.cache/provjax/tensorflow_datasets",
      photo_dir=None,  # a folder of photographs added to the bundled ones
      disc21_dir="",  # DISC21 unpacked here (provjax.data.disc21): train on its training images
      resolution=128 if small else 288,  # stored shorter side of references
      num_train=1000,
      num_background=200,
      num_refs=200,
      num_matched=100,
      num_unmatched=100,
      seed=0,
      image_size=64 if small else 224,
      patch=8 if small else 16,
      num_threads=2,
  )


def vit_sharding_rules() -> list:
  return [["embed_in", None], ["embed_out", "model"], ["conv_in", None], ["conv_out", "model"]]


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  variant, *flags = arg.split(",")
  small = variant == "tiny"
  c = ml_collections.ConfigDict()
  c.task = "copynce_descriptor"
  c.config_file = "descriptor"
  c.seed = 0
  c.distributed = False
  c.model = dict(name=f"copynce.{variant}", overrides={}, freeze_patch_embed=not small)
  c.data = data_config(variant)
  c.loss = dict(
      infonce=1.0, copynce=5.0, koleo=5.0, gamma=3.0, patch_scale=16.0, log_scale_init=3.2
  )
  c.train = dict(
      steps=1500 if small else 30 * 1_000_000 // 768,
      batch_size=48 if small else 768,
      log_every=50,
      ckpt_every=250,
      keep=2,
      eval_every=500,
      allow_config_change=False,
  )
  c.optimizer = dict(
      name="adamw",
      lr=1e-3 if small else 6e-4 * (768 / 1024) ** 0.5,
      weight_decay=0.04,
      schedule="cosine",
      warmup_steps=100 if small else 1_000_000 // 768,
      clip_norm=3.0,
  )
  c.eval = dict(max_queries=0)
  c.init_from = ""
  c.mesh = dict(shape=(-1, 1))
  c.sharding_rules = vit_sharding_rules()
  if "quick" in flags:
    c.data.update(num_train=8, num_background=12, num_refs=6, num_matched=3, num_unmatched=3)
    c.train.update(steps=2, batch_size=4, log_every=1, ckpt_every=2, eval_every=0)
    c.optimizer.warmup_steps = 1
  return c
