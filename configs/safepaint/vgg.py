"""The VGG feature network of SafePaint's losses, trained by rotation prediction (RotNet).

    provjax train --config configs/safepaint/vgg.py:tiny --workdir runs/vgg_tiny \
        --config.data.photo_dir=/root/provjax-photos
    python -c "from provjax.inpainting import vgg_convert; \
        vgg_convert.release_trained('runs/vgg_tiny', 'vgg.synth-v1')"

`:tiny` is VGG19's 16-conv layout at a quarter width (provjax.models.vgg),
trained with a BatchNorm after every conv (folded into the convs on release)
on 32-px crops: random crops of the train split's photographs (the bundled
ones, or a folder: `--config.data.photo_dir=DIR`) and a quarter procedural
images, each seen at all four quarter turns (provjax.tasks.vgg_features).
32 px rather than 64 keeps a run within minutes on 2 CPU cores. `:vgg19` is
the full width, for a machine with an accelerator. Add `,quick` for a smoke
run. Evaluation: rotation accuracy on the held-back `test` split (chance 0.25).

Last run (released as vgg.synth-v1): 800 steps of 16 crops x 4 turns on the
photo folder above (gnome-backgrounds + opencv samples), 8.4 min logged on 2
shared CPU cores; held-back rotation accuracy test 0.293 (photo crops 0.324,
procedural 0.262), gallery 0.297 (0.338, 0.256). Training-batch accuracy
averaged 0.50 over the last 200 steps: the features generalise weakly.
"""

import ml_collections


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  variant, *flags = arg.split(",")
  c = ml_collections.ConfigDict()
  c.task = "vgg_features"
  c.seed = 0
  c.distributed = False
  c.model = dict(name=f"vgg.{variant}", overrides=dict(batch_norm=True))
  c.data = dict(
      resolution=32, count=100_000, seed=0, photo_dir=None, procedural_fraction=0.25, num_threads=2
  )
  c.optimizer = dict(name="adam", lr=1e-3, weight_decay=0.0, schedule="cosine", warmup_steps=20)
  c.train = dict(
      steps=800,
      batch_size=16,
      log_every=10,
      ckpt_every=200,
      keep=2,
      eval_every=400,
      allow_config_change=False,
  )
  c.eval = dict(split="test", count=256)
  c.init_from = ""
  c.mesh = dict(shape=(-1, 1))
  c.sharding_rules = [
      ["conv_in", None],
      ["conv_out", "model"],
      ["embed_in", None],
      ["embed_out", "model"],
      ["head", None],
  ]
  if "quick" in flags:
    c.data.count = 16
    c.train.update(steps=2, batch_size=4, log_every=1, ckpt_every=2, eval_every=0)
    c.eval.count = 8
  return c
