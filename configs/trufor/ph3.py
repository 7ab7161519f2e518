"""TruFor phase 3: confidence and detection heads on a frozen phase-2 model.

The three phases chain through work dirs (`init_from`):

    provjax train --config configs/trufor/noiseprint.py:tiny --workdir runs/trufor_np_tiny
    provjax train --config configs/trufor/ph2.py:tiny,np=runs/trufor_np_tiny \
        --workdir runs/trufor_ph2_tiny
    provjax train --config configs/trufor/ph3.py:tiny --workdir runs/trufor_ph3_tiny \
        --config.init_from=runs/trufor_ph2_tiny
    provjax eval  --config configs/trufor/ph3.py:tiny --checkpoint runs/trufor_ph3_tiny

`init_from` defaults to the phase-2 work dir of that chain (the whole model;
a missing dir stops the run). Only decode_head_conf and detection train; the
extractor, encoder and localization head run in eval mode and stay
bit-identical. `:tiny` is the CPU variant, `:b2` the paper's model and recipe.
Add `,quick` for a smoke run, `,adamw` for phase 2's AdamW recipe.

Data: phase 2's crops of the `provjax_forgery` train split, 70 % forged as in
TruFor's list mix (7 fake lists of 10). Loss 1.0 MSE(sigmoid(conf), TCP) with
the erode-15 / dilate-11 band + 0.5 BCE of the detection logit (label: more
than 3 forged pixels), weighted 0.5 / 0.7 for fakes and 0.5 / 0.3 for reals,
i.e. 0.5 over each class's share of the stream (`data.fake_fraction`), so
both classes weigh half. Evaluation: image AUC and balanced accuracy (score
> 0.5), pixel F1 / MCC of the forged images, overall and per edit kind
(`splice/`, `copy_move/`, `removal/`), on the test split or every image of
a benchmark (`--config.eval.benchmark=NAME --config.eval.manual_dir=DIR`,
provjax.data.forensics.BENCHMARKS).

Last run (released as trufor.synth-v2): `:tiny,adamw`, 600 steps from the
2,000-step phase-2 run, `--config.data.count=4000 --config.data.photo_dir=DIR`
(DIR = Debian's opencv-doc examples + gnome-backgrounds), about 7 min on 2
CPU cores: confidence MSE 0.037 -> 0.008, detection BCE still about 0.7; on
the first 96 test records image AUC 0.59 (removals 0.68, splices 0.56,
copy-moves 0.54), bACC 0.57. Localization figures equal phase 2's to the
last digit, as the frozen parts must. The released card has every figure.
(trufor.synth-v1, SGD: image AUC 0.54, bACC 0.51 on builder 1.0.0's.)

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

from provjax.config import sibling

ph2 = sibling(__file__, "ph2")


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  variant, *flags = arg.split(",")
  quick = "quick" in flags
  small = variant == "tiny"
  c = ml_collections.ConfigDict()
  c.task = "trufor_conf"
  c.seed = 0
  c.distributed = False
  c.model = dict(name=f"trufor.{variant}", overrides={})
  # Parts run in training mode and optimised; the rest stay exactly as phase 2 left them.
  c.train_parts = ("decode_head_conf", "detection")
  c.data = dict(
      data_dir="~/.cache/provjax/tensorflow_datasets",
      resolution=160 if small else 640,
      count=4000 if small else 100_000,
      seed=0,
      photo_dir=None,  # a folder of photographs to forge from; None: the bundled photos
      # A folder of forgeries in the generic layout (fake/ masks/ real/, provjax.data.forensics),
      # e.g. SafePaint fills (provjax.inpainting.fills): this share of the records, the rest
      # synthetic. None: synthetic only.
      folder=None,
      folder_fraction=1.0,
      crop=128 if small else 512,
      fake_fraction=0.7,  # TruFor's stream; the detection weights follow from it
      aug=dict(scale_p=0.5, scale_limit=0.5, jpeg_p=0.5, jpeg_range=(30, 100)),
      num_threads=2,
  )
  c.loss = dict(conf_weight=1.0, det_weight=0.5, erode=15, dilate=11, min_forged_pixels=3)
  c.optimizer = dict(
      name="sgd", schedule="poly", lr=0.005, momentum=0.9, weight_decay=5e-4, power=0.9
  )
  if "adamw" in flags:
    c.optimizer = ph2.ADAMW
  c.train = dict(
      steps=2000 if small else 100_000,
      batch_size=20 if small else 18,
      log_every=20,
      ckpt_every=250,
      keep=3,
      eval_every=1000,
      allow_config_change=False,
  )
  # The first num_images test-split records, or every image of `benchmark` (a name in
  # provjax.data.forensics.BENCHMARKS, its files under manual_dir).
  # reference="ela": the same images also scored by ELA (figures under ela/); "" skips it.
  c.eval = dict(num_images=96, benchmark="", manual_dir="", reference="ela")
  c.init_from = f"runs/trufor_ph2_{variant}"  # the phase-2 work dir (whole model)
  c.mesh = dict(shape=(-1, 1))
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
