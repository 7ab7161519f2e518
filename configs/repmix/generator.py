"""One generator of the RepMix zoo (provjax.models.genzoo), trained to reconstruct real content.

    provjax train --config configs/repmix/generator.py:tconv --workdir runs/gen_tconv_s0
    provjax train --config configs/repmix/generator.py:tconv,seed=1 --workdir runs/gen_tconv_s1
    python scripts/release_genzoo.py --workdirs runs/gen_*   # -> checkpoints/genzoo.<v>-s<seed>

Variants: tconv, nearest, bilinear, pixelshuffle, vae (each differs only in its
decoder's upsampling path). Add `,quick` for a smoke run, `,seed=N` for
another training seed of the same architecture (the zoo's fine-grained pair).
Data: the seen semantics of `provjax_genzoo`'s train split, drawn on the fly
(photo crops of the train photos and procedural images), 64 px.
"""

import ml_collections


def get_config(arg: str = "tconv") -> ml_collections.ConfigDict:
  variant, *flags = arg.split(",")
  options = dict(f.split("=", 1) for f in flags if "=" in f)
  c = ml_collections.ConfigDict()
  c.task = "genzoo"
  c.seed = int(options.get("seed", 0))
  c.distributed = False
  c.model = dict(name=f"genzoo.{variant}", overrides={})
  c.data = dict(resolution=64, count=20_000, seed=0, photo_dir=None, num_threads=2)
  c.loss = dict(kl_weight=0.05 if variant == "vae" else 0.0)
  c.optimizer = dict(name="adam", lr=2e-3, weight_decay=0.0, schedule="cosine", warmup_steps=20)
  c.train = dict(
      steps=300,
      batch_size=16,
      log_every=20,
      ckpt_every=100,
      keep=2,
      eval_every=300,
      allow_config_change=False,
  )
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
  return c
