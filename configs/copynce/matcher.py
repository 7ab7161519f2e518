"""CopyNCE matcher: copy / no-copy BCE + CopyNCE on the fused patch tokens.

    provjax train --config configs/copynce/matcher.py:tiny --workdir runs/copynce_matcher_tiny

`:tiny`: 4 shared + 2 fusion blocks (dim 192, patch 8) on 64-px pairs, from
scratch; `:vits16`: the paper's 8 + 4 blocks of ViT-S/16 at 224 px, positive
rate 0.3, batch 32 per GPU, base lr 1e-3, CopyNCE weight 3 with gamma 1
(specs/copy_detection.md section 6). Half of the non-copies are hard negatives as
the paper mines them (`data.hard_negatives`: one of the record's 10 nearest train
records of another source by copynce.synth-v2), the rest random train images.
`quick` is a two-step smoke run.

Last run (released as copynce_matcher.synth-v1): 600 steps of 32 pairs, same photo folder; val
µAP 0.003 with every pair scored: it did not learn, and re-scoring the descriptor's top 10 lowers
test µAP to 0.05, so the released protocol does not use it. Tried since (not released): the
shared encoder initialised from copynce.synth-v2's (`init_from` {"source": "copynce.synth-v2",
"from": "encoder", "to": "model/encoder"}), batch 64: train BCE 0.69 -> 0.44 by step 300
(2.2 s a step), but val µAP 0.001 and R@1 0.04 with every pair scored, so it was stopped.

Why: both runs drew a non-copy's reference from the 64-image donor pool of the overlays and
resampled it unlike a copy's reference (mean difference 3.5 grey levels at 64 px), so "is this
reference a donor" answered the question on train pairs and on no held-back pair. Non-copy
references now come from the whole train split, made as a copy's reference is
(provjax/tasks/copynce_matcher.py; tests/test_copydetect_tasks.py). Re-run the same way
(`--config.train.steps=1000`, 40 min): train BCE 0.69 -> 0.41 (the 30 % base rate's entropy is
0.61); val µAP with every pair scored 0.004 / 0.011 / 0.038 / 0.034 and R@1 0 / 0 / 0.18 / 0.18
at steps 250 / 500 / 750 / 1000; on balanced pairs (a copy against its reference or a random
one) ROC AUC 0.86 on fresh training pairs and 0.77 on val. So it now learns what generalises,
but re-scoring synth-v2's 10 best candidates with it still lowers µAP (val 0.53 -> 0.19, test
0.58 -> 0.22 at the released protocol). Not released: it needs far longer training, or the
paper's hard negatives, before it can re-score.

With hard negatives (the same run, `data.hard_negatives.fraction=0.5`, 1,000 steps, 54 min with
its first 100 steps sharing the 2 cores with a test run):
train BCE 0.69 -> 0.60 (harder pairs); val µAP with every pair scored 0.044 / 0.016 / 0.036 /
0.041 and R@1 0.04 / 0.07 / 0.07 / 0.14 at steps 250 / 500 / 750 / 1000; re-scoring
synth-v2's 10 best at the released protocol still lowers val µAP, 0.533 -> 0.075 at step 500
and 0.120 at step 1000 (R@1 0.61 -> 0.34), against 0.187 for the run without them. Not
released either: at this length hard negatives do not make the matcher a re-scorer.
"""

import ml_collections

from provjax.config import sibling

descriptor = sibling(__file__, "descriptor")


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  variant, *flags = arg.split(",")
  small = variant == "tiny"
  c = descriptor.get_config(arg)
  c.task = "copynce_matcher"
  c.config_file = "matcher"
  c.model = dict(name=f"copynce_matcher.{variant}", overrides={})
  c.data.positive_rate = 0.3
  # The paper's hard negatives (p = 0.5 of the non-copies): one of the record's k nearest
  # train records of another source by this released descriptor (provjax.data.hard_negatives).
  c.data.hard_negatives = dict(fraction=0.5, k=10, descriptor="copynce.synth-v2")
  c.loss = dict(copynce=3.0, gamma=1.0, patch_scale=16.0)
  if "quick" in flags:
    c.data.hard_negatives.k = 2  # the smoke run's 8 training images
  else:
    c.train.update(steps=1500 if small else 100_000, batch_size=64 if small else 256)
    c.optimizer.lr = 1e-3
  # Every (query, reference) pair of val is scored: keep the evaluation small.
  c.eval = dict(max_queries=60)
  return c
