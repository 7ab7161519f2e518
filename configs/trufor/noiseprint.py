"""TruFor phase 1: Noiseprint++ learned contrastively on pristine images.

The three phases chain through work dirs (`init_from`):

    provjax train --config configs/trufor/noiseprint.py:tiny --workdir runs/trufor_np_tiny
    provjax train --config configs/trufor/ph2.py:tiny,np=runs/trufor_np_tiny \
        --workdir runs/trufor_ph2_tiny
    provjax train --config configs/trufor/ph3.py:tiny --workdir runs/trufor_ph3_tiny \
        --config.init_from=runs/trufor_ph2_tiny
    provjax eval  --config configs/trufor/ph3.py:tiny --checkpoint runs/trufor_ph3_tiny

`:tiny` trains `noiseprint.tiny` (the extractor inside `trufor.tiny`) on 32-pixel
patches; `:b2` trains `noiseprint.full` (the extractor of `trufor.b2`, the
paper's 17 x 64 DnCNN) on 48-pixel patches. Add `,quick` for a smoke run.
Pristine originals are `provjax_synthetic`'s train split (bundled photo crops
and procedural images, PNG); each batch applies K of the 240 editing histories
(scale x tone x JPEG quality, provjax.tasks.noiseprint) to B originals and cuts
P patches of one neighbourhood of each result; positives share source and
history. The evaluation reports the nearest-neighbour accuracy of held-back
test-split patches and draws the noiseprint of a spliced test image.

Last run (behind trufor.synth-v1): 400 steps, `--config.data.count=400`
(bundled photos), about 5 min on 2 shared CPU cores: held-back
nearest-neighbour accuracy 0.31 (random init: 0.09; 16 test images x 4
histories x 2 patches, chance 1/127). The full schedule has not been run.

To crop the originals from a folder of your own photographs (split by source,
see provjax.data.folder and provjax.data.splits), add
`--config.data.photo_dir=/usr/share/doc/opencv-doc/examples/data`.
"""

import ml_collections

_EXTRACTOR = {"tiny": "tiny", "b2": "full"}  # the dncnn variant inside trufor.<variant>


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  variant, *flags = arg.split(",")
  quick = "quick" in flags
  small = variant == "tiny"
  c = ml_collections.ConfigDict()
  c.task = "noiseprint"
  c.seed = 0
  c.distributed = False
  c.model = dict(name=f"noiseprint.{_EXTRACTOR[variant]}", overrides={})
  c.data = dict(
      data_dir="~/.cache/provjax/tensorflow_datasets",
      resolution=256 if small else 512,  # x 2/8 (the smallest rescale) must hold 2 x 2 patches
      count=2000 if small else 100_000,
      seed=0,
      photo_dir=None,  # a folder of photographs to crop from; None: the bundled photos
      histories=4 if small else 8,  # K editing histories per source image
      patches=2 if small else 4,  # P patches per (source, history), at most 4
      patch=32 if small else 48,  # S, a multiple of 8
      num_threads=2,
  )
  c.loss = dict(temperature=1.0)
  c.optimizer = dict(
      name="adam", lr=1e-3, weight_decay=0.0, schedule="cosine", warmup_steps=100, clip_norm=1.0
  )
  c.train = dict(
      steps=3000 if small else 100_000,
      batch_size=8 if small else 16,  # B source images (x K histories x P patches)
      log_every=20,
      ckpt_every=250,
      keep=3,
      eval_every=1000,
      allow_config_change=False,
  )
  c.eval = dict(num_images=16 if small else 64, seed=1)
  c.init_from = ""  # a work dir or arch.tag (see provjax/train/init_from.py)
  c.mesh = dict(shape=(-1, 1))
  # Logical parameter axes -> mesh axes. Output channels split over `model`.
  c.sharding_rules = [
      ["conv_in", None],
      ["conv_out", "model"],
      ["embed_in", None],
      ["embed_out", "model"],
      ["head", None],
  ]
  if quick:
    c.data.update(count=8, resolution=128, histories=2, patches=2, patch=16)
    c.train.update(steps=2, batch_size=2, log_every=1, ckpt_every=2, eval_every=0)
    c.eval.num_images = 4
  return c
