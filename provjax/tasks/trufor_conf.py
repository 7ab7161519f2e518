"""TruFor phase 3: train the confidence and detection heads (specs/trufor.md section 6).

Starts from a phase-2 work dir (`config.init_from`). Only `config.train_parts`
(decode_head_conf, detection) run in training mode and get gradients; the
extractor, the encoder and the localization head run in eval mode and stay
bit-identical. The batch contract and the crops are phase 2's
(`provjax.tasks.trufor_loc`), sampled with `config.data.fake_fraction` forged
crops.

Loss: 1.0 * MSE(sigmoid(conf), TCP) over the pixels inside the eroded (15)
or outside the dilated (11) forged mask, + 0.5 * weighted BCE of the
detection logit against "more than 3 forged pixels". The BCE weights are
0.5 / (share of the image's class in the training stream): the spec's
fakes 0.5/0.7, reals 0.5/0.3 for TruFor's 70 % fake stream, so both classes
weigh half in expectation (`forgery_losses.detection_class_weights`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from provjax.models import ela
from provjax.metrics import forgery as forgery_metrics
from provjax.tasks import forgery_losses, trufor_loc
from provjax.tasks.trufor_loc import (  # the same model, batch, optimizer and data as phase 2
    SCHEMA,
    create_model,
    optimizers,
    to_input,
    train_data,
)

__all__ = [
    "SCHEMA",
    "create_model",
    "evaluate",
    "loss_fn",
    "optimizers",
    "train_data",
    "train_step",
]


def loss_fn(models, batch, rng, config):
  """conf_weight * TCP-MSE + det_weight * weighted BCE; the heads see frozen features."""
  model, parts = models["model"], tuple(config.train_parts)
  x = to_input(batch)
  labels = batch["label"]
  out = model(x, train=parts, rngs=rng)
  c = config.loss
  conf = forgery_losses.confidence_loss(
      out["conf_logits"], out["loc_logits"], labels, erode=c.erode, dilate=c.dilate
  )
  target = forgery_losses.detection_labels(labels, c.min_forged_pixels)
  fake_w, real_w = forgery_losses.detection_class_weights(config.data.fake_fraction)
  det = forgery_losses.weighted_bce(
      out["det_logit"], target, fake_weight=fake_w, real_weight=real_w
  )
  pred = (out["det_logit"] > 0).astype(target.dtype)
  accuracy = jnp.mean(pred == target)
  return c.conf_weight * conf + c.det_weight * det, {"conf": conf, "det": det, "det_acc": accuracy}


train_step = trufor_loc.make_train_step(loss_fn)


def _summaries(scores, labels, maps, gts) -> dict:
  """Detection over all images given, localization over the forged ones."""
  out = {f"det_{k}": v for k, v in forgery_metrics.detection_summary(scores, labels).items()}
  if maps:
    loc = forgery_metrics.localization_summary(maps, gts)
    out.update({f"loc_{k}": v for k, v in loc.items()})
  return out


def report(scores, labels, maps, masks, kinds) -> dict:
  """Scalar figures, overall and per edit kind, with names stable enough for a model card.

  `det_auc`, `det_bacc` over every image; `loc_f1_best`, `loc_f1_fixed`,
  `loc_mcc`, `loc_count` over the forged ones; then `<kind>/det_*` (that
  kind's forgeries against every authentic image) and `<kind>/loc_*` (that
  kind's maps) for each kind of forgery present (splice, copy_move, removal,
  or a benchmark's own).

  Args:
    scores: [N] detection scores in [0, 1].
    labels: [N] 1 forged, 0 authentic.
    maps, masks: N localization maps and ground-truth masks (any sizes).
    kinds: N edit kinds ("authentic" for authentic images).
  """
  scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
  forged = np.flatnonzero(labels)
  out = _summaries(scores, labels, [maps[i] for i in forged], [masks[i] for i in forged])
  for kind in sorted({kinds[i] for i in forged}):
    mine = [i for i in forged if kinds[i] == kind]
    keep = ~labels | (np.asarray(kinds) == kind)
    part = _summaries(scores[keep], labels[keep], [maps[i] for i in mine], [masks[i] for i in mine])
    out.update({f"{kind}/{k}": v for k, v in part.items()})
  return out


def evaluate(models, config) -> dict:
  """`report` on held-back full images (`trufor_loc.eval_records`), and a picture.

  With `eval.reference` = "ela" the same images are also scored by the
  classical ELA reference (`provjax.models.ela`), its figures under `ela/`,
  so every benchmark run carries the row a learned detector must beat.
  """
  reference = config.eval.get("reference", "")
  if reference not in ("", "ela"):
    raise ValueError(f"eval.reference must be '' or 'ela', got {reference!r}")
  scores, labels, maps, masks, kinds, shown = [], [], [], [], [], None
  ela_scores, ela_maps = [], []
  for image, mask, label, kind in trufor_loc.eval_records(config):
    pred = trufor_loc.predict(models["model"], image, full=True)
    scores.append(float(pred["score"]))
    labels.append(int(label))
    maps.append(pred["map"])
    masks.append(mask)
    kinds.append(kind)
    if reference:
      ela_map, ela_score = ela.ela(image)
      ela_maps.append(ela_map)
      ela_scores.append(ela_score)
    if label and shown is None:
      shown = trufor_loc.picture(image, mask, pred["map"] * pred["conf"], "map x confidence")
  out = report(scores, labels, maps, masks, kinds)
  if reference:
    out.update(
        {f"ela/{k}": v for k, v in report(ela_scores, labels, ela_maps, masks, kinds).items()}
    )
  if shown is not None:
    out["example"] = shown
  return out
