"""TruFor phase 2: dual encoder + localization head, Noiseprint++ frozen.

The three phases chain through work dirs (`init_from`):

    provjax train --config configs/trufor/noiseprint.py:tiny --workdir runs/trufor_np_tiny
    provjax train --config configs/trufor/ph2.py:tiny,np=runs/trufor_np_tiny \
        --workdir runs/trufor_ph2_tiny
    provjax train --config configs/trufor/ph3.py:tiny --workdir runs/trufor_ph3_tiny \
        --config.init_from=runs/trufor_ph2_tiny
    provjax eval  --config configs/trufor/ph2.py:tiny --checkpoint runs/trufor_ph2_tiny

`np=DIR` sets `init_from` to {"source": DIR, "from": "model", "to":
"model/dncnn"}: the phase-1 model becomes the frozen extractor
(provjax/train/init_from.py); without it `init_from` is "" (a fresh
extractor). `:tiny` is the CPU variant (128-pixel crops of 160-pixel
forgeries); `:b2` the paper's model and recipe (512 crops, batch 18). Add
`,quick` for a smoke run, `,adamw` for AdamW + cosine (lr 1e-3) instead of the
paper's SGD (`ADAMW` below says why).

Data: class-balanced crops (half forged) of the `provjax_forgery` train split
(provjax.data.forgery: splice, copy-move and removal with exact masks, then
resize / JPEG post-processing), RandomScale +-0.5 (p 0.5) and JPEG 30-100
(p 0.5) augmentation, small images padded with RGB 127.5 (label -1).
Loss 0.3 CE (weights 0.5 / 2.5, ignore -1) + 0.7 Dice; SGD momentum 0.9,
lr 0.005 with poly-0.9 decay, weight decay 5e-4 on kernels only.
Evaluation: pixel F1 (best and at 0.5) and MCC over the forged images of the
test split at full size; `--config.eval.benchmark=NAME
--config.eval.manual_dir=DIR` evaluates every image of a public benchmark
instead (provjax.data.forensics.BENCHMARKS).

Last run (behind trufor.synth-v2): `:tiny,adamw`, 2,000 steps, the frozen
extractor taken from trufor.synth-v1 (`--config.init_from` =
{"source": "trufor.synth-v1", "from": "dncnn", "to": "model/dncnn"}),
`--config.data.count=4000 --config.data.photo_dir=DIR` (Debian's opencv-doc
examples + gnome-backgrounds; builder version 1.1.0), about 31 min on 2 CPU
cores: on the 40 forgeries among the first 96 test records, pixel F1_best
0.47 / 0.48 at steps 1,000 / 2,000, F1@0.5 0.40, MCC 0.37. The training loss
levelled off at 0.70-0.71 from step 750; continuing it for 300 steps with
the extractor trained too, or for 250 without the scale / JPEG augmentation,
did not lower it (0.70-0.74).
(trufor.synth-v1: SGD, 1,500 steps on builder 1.0.0, F1_best 0.46 / 0.48 /
0.46 at steps 500 / 1,000 / 1,500; AdamW reached 0.46 in 400 steps there.)

To make the forgeries from a folder of your own photographs (split by source,
see provjax.data.folder and provjax.data.splits), add
`--config.data.photo_dir=/usr/share/doc/opencv-doc/examples/data`.

To fine-tune on forgeries made elsewhere, e.g. SafePaint fills (the blue
team of the red-team loop; provjax.inpainting.fills.write_fill_folder writes
them), add `--config.data.folder=DIR` (the generic layout: fake/ + masks/ +
real/, provjax.data.forensics): its images make `data.folder_fraction` of
the batches (default 1.0, all; 0.5 keeps half synthetic so the detector does
not forget splices and copy-moves), each part class-balanced at
`data.fake_fraction`. Make DIR from training photographs only, never from
what the evaluation (`--config.eval.benchmark=folder
--config.eval.manual_dir=OTHER_DIR`) then scores.
"""

import ml_collections

# `,adamw`: AdamW + cosine instead of the paper's SGD + poly. A deviation for models trained
# from scratch (the paper's encoders start from ImageNet weights, which cannot be downloaded
# here). On the tiny variant, same data and extractor, it matched SGD: pixel F1_best 0.457
# after 400 steps against SGD's 0.464 after 500.
ADAMW = dict(
    name="adamw", schedule="cosine", lr=1e-3, weight_decay=0.01, warmup_steps=50, clip_norm=1.0
)


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  variant, *flags = arg.split(",")
  quick = "quick" in flags
  options = dict(f.split("=", 1) for f in flags if "=" in f)
  small = variant == "tiny"
  c = ml_collections.ConfigDict()
  c.task = "trufor_loc"
  c.seed = 0
  c.distributed = False
  c.model = dict(name=f"trufor.{variant}", overrides={})
  # Parts run in training mode and optimised; the rest (dncnn, conf, detection) stay as they are.
  c.train_parts = ("backbone", "decode_head")
  c.data = dict(
      data_dir="~/.cache/provjax/tensorflow_datasets",
      resolution=160 if small else 640,  # forgeries before post-processing (resize 0.5-1.0)
      count=4000 if small else 100_000,
      seed=0,
      photo_dir=None,  # a folder of photographs to forge from; None: the bundled photos
      # A folder of forgeries in the generic layout (fake/ masks/ real/, provjax.data.forensics),
      # e.g. SafePaint fills (provjax.inpainting.fills): this share of the records, the rest
      # synthetic. None: synthetic only.
      folder=None,
      folder_fraction=1.0,
      crop=128 if small else 512,
      fake_fraction=0.5,  # class-balanced batches
      aug=dict(scale_p=0.5, scale_limit=0.5, jpeg_p=0.5, jpeg_range=(30, 100)),
      num_threads=2,
  )
  c.loss = dict(ce_weight=0.3, dice_weight=0.7, class_weights=(0.5, 2.5))
  # SGD + momentum, masked weight decay and the poly schedule (provjax.tasks.trufor_loc.sgd_poly).
  c.optimizer = dict(
      name="sgd", schedule="poly", lr=0.005, momentum=0.9, weight_decay=5e-4, power=0.9
  )
  if "adamw" in flags:
    c.optimizer = ADAMW
  c.train = dict(
      steps=4000 if small else 100_000,
      batch_size=16 if small else 18,
      log_every=20,
      ckpt_every=250,
      keep=3,
      eval_every=1000,
      allow_config_change=False,
  )
  # The first num_images test-split records, or every image of `benchmark` (a name in
  # provjax.data.forensics.BENCHMARKS, its files under manual_dir).
  c.eval = dict(num_images=96, benchmark="", manual_dir="")
  # A work dir or arch.tag (see provjax/train/init_from.py); `np=DIR`: phase 1's extractor.
  c.init_from = (
      {"source": options["np"], "from": "model", "to": "model/dncnn"} if "np" in options else ""
  )
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
    # A one-stage micro encoder (still dual-branch, with FRM/FFM and both heads): a smoke run
    # checks the wiring, and this compiles in a third of the four-stage time on a CPU.
    c.model.overrides = dict(
        embed_dims=(8,), num_heads=(1,), depths=(1,), sr_ratios=(2,), decoder_dim=8
    )
    c.data.update(count=12, resolution=64, crop=64)
    c.train.update(steps=2, batch_size=2, log_every=1, ckpt_every=2, eval_every=0)
    c.eval.num_images = 8
  return c
