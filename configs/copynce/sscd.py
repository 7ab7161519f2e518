"""SSCD baseline: ResNet + GeM + linear + L2, InfoNCE (tau 0.05) + KoLeo.

    provjax train --config configs/copynce/sscd.py:tiny --workdir runs/sscd_tiny

`:tiny`: ResNet-18 at a quarter width on 64-px views, Adam from scratch;
`:r50`: the paper's ResNet-50 at 224 px (specs/copy_detection.md section 4: LARS,
lr 0.3 x B / 256, wd 1e-6, 5 warm-up epochs then cosine; here AdamW stands in
for LARS, which optax has but the trainer's optimizer table does not). KoLeo
weight 10, the value SSCD's docs recommend for new setups (the paper's 30 is
`--config.loss.koleo=30`). `quick` is a two-step smoke run.

Last run (released as sscd.synth-v1): 800 steps of 48 view pairs, same photo folder; val µAP
0.28; test µAP 0.23, RP90 0.00, R@1 0.38.
"""

import ml_collections

from provjax.config import sibling

descriptor = sibling(__file__, "descriptor")


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  variant, *flags = arg.split(",")
  small = variant == "tiny"
  c = descriptor.get_config("tiny" + "".join("," + f for f in flags))
  c.task = "sscd"
  c.config_file = "sscd"
  c.model = dict(name=f"sscd.{variant}", overrides={})
  c.data = descriptor.data_config("tiny" if small else "vits16")
  if "quick" in flags:
    c.data.update(num_train=8, num_background=12, num_refs=6, num_matched=3, num_unmatched=3)
  c.loss = dict(temperature=0.05, koleo=10.0)
  return c
