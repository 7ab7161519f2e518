"""Comparator task: (original, query) pairs -> 3-way verdict + edit heatmap.

Batch contract (`SCHEMA`): `ref`, `query` [B, H, W, 3] uint8 (the loss
scales them to [0, 1]);
`label` [B] int32 (0 benign, 1 manipulated, 2 distinct); `heatmap`
[B, grid, grid] float32 ground truth in R's frame (all 0 for benign pairs,
all 1 for distinct pairs, normalised edit coverage for manipulated pairs);
`edit_mask` [B, H, W] float32, the same target at the input's resolution;
`flow` [B, H, W, 2] float32, the exact query pixel of each R pixel (-1: none).

Loss (specs/simprov.md 2.7):
  0.5 * CE(logits, label)
  + 0.5 * mean_b (1 - cos(heatmap_b * [argmax_b != 0], gt_b))
  + 1.0 * photometric MSE(R, warp(Q)) over valid pixels of non-distinct pairs
    (on ImageNet-normalised values, the reference's scale, when
    `loss.photometric_normalized`)
  + `loss.coords` * the warp's mean end-point error against `flow`, in units of
    the image side (issue 7: the warp learns from exact coordinates)
  + `loss.dense` * the heatmap term on the finer map of a model with `dense_side`,
    against `edit_mask` pooled to its size.
"""

from __future__ import annotations

import functools
from typing import Iterable, Mapping

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from provjax import registry, weights
from provjax.data import pairs, pipeline, synthetic
from provjax.data.hard_negatives import HardNegatives, neighbour_table
from provjax.data.images import read_image
from provjax.metrics import heatmap as heatmap_metrics
from provjax.models.layers.preprocess import IMAGENET_STD
from provjax.models.layers.warp import adaptive_avg_pool
from provjax.retrieval.thumbnail import thumbnail, with_thumbnail
from provjax.tasks.losses import l2_normalize
from provjax.tasks.contract import Field, Optim
from provjax.tasks.copy_data import in_batches
from provjax.tasks.optim import make_optimizer
from provjax.viz.overlay import resize

BENIGN, MANIPULATED, DISTINCT = 0, 1, 2


SCHEMA = {
    "ref": Field(("B", "H", "W", 3), "uint8", "original R, RGB"),
    "query": Field(("B", "H", "W", 3), "uint8", "query Q, RGB, same size as R"),
    "label": Field(("B",), "int32", "0 benign, 1 manipulated, 2 distinct"),
    "heatmap": Field(
        ("B", "grid", "grid"),
        "float32",
        "edit map in R's frame: 0 benign, 1 distinct, coverage if manipulated",
    ),
    "edit_mask": Field(("B", "H", "W"), "float32", "the heatmap target at the input's size"),
    "flow": Field(("B", "H", "W", 2), "float32", "(y, x) query pixel of each R pixel, -1: none"),
}


def create_model(config, rngs: nnx.Rngs):
  """`config.model.name` (e.g. comparator.tiny), honouring an active mesh."""
  return registry.create_model(config.model.name, rngs=rngs, **config.model.get("overrides", {}))


def optimizers(config) -> dict[str, Optim]:
  """One optimizer; with `optimizer.only` (a path part, e.g. "warp") only the
  parameters under it train: the warp pre-training stage."""
  only = config.optimizer.get("only", "")
  wrt = nnx.PathContains(only) if only else nnx.Param
  return {"opt": Optim("model", make_optimizer(config.optimizer, config.train.steps), wrt)}


def cosine_heatmap_loss(pred, gt, eps: float = 1e-8):
  """Per-sample 1 - cos(pred, gt) of [B, g, g] maps.

  Cosine as torch's `F.cosine_similarity` (x.y / max(|x| |y|, eps)), except
  that two (near-)zero maps count as identical (cos = 1, loss 0): a benign
  pair correctly classified has its prediction zeroed against an all-zero
  target, and torch's 0/eps would charge it the maximal loss of 1 for being
  right. With exactly one zero map the loss is 1 with zero gradient, so the
  classifier term alone handles those samples.
  """
  p = pred.reshape(pred.shape[0], -1).astype(jnp.float32)
  t = gt.reshape(gt.shape[0], -1).astype(jnp.float32)
  # Clamp inside the sqrt: sqrt'(0) is infinite and a zeroed map is common.
  p_norm = jnp.sqrt(jnp.maximum(jnp.sum(p * p, -1), eps * eps))
  t_norm = jnp.sqrt(jnp.maximum(jnp.sum(t * t, -1), eps * eps))
  cos = jnp.sum(p * t, -1) / jnp.maximum(p_norm * t_norm, eps)
  both_zero = (p_norm <= eps) & (t_norm <= eps)
  return 1.0 - jnp.where(both_zero, 1.0, cos)


def photometric_loss(ref, warped, valid, use, normalized: bool = False):
  """MSE between R and warped Q over valid pixels, averaged over `use` samples.

  Only pixels whose sample fell inside Q count (zero padding is not a
  mismatch to correct), and distinct pairs are excluded (`use` False): two
  unrelated images have no alignment, so pulling them together would only
  teach the warp to distort. `normalized` measures the difference in
  ImageNet-standardised units, as the reference does on its normalised inputs
  (about 19x the [0, 1] scale).
  """
  v = valid.astype(jnp.float32)[..., None]
  diff = ref.astype(jnp.float32) - warped.astype(jnp.float32)
  if normalized:
    diff = diff / jnp.asarray(IMAGENET_STD, jnp.float32)
  per_pixel = jnp.square(diff) * v
  per_sample = jnp.sum(per_pixel, (1, 2, 3)) / (
      ref.shape[-1] * jnp.maximum(jnp.sum(v, (1, 2, 3)), 1.0)
  )
  w = use.astype(jnp.float32)
  return jnp.sum(per_sample * w) / jnp.maximum(jnp.sum(w), 1.0)


def coordinate_loss(coords, flow, use, eps: float = 1e-3):
  """Mean end-point error |coords - flow| / side over R pixels that have a target.

  `coords` [B, H, W, 2] are where the warp samples Q, `flow` the exact
  positions (-1 where Q does not show the pixel); samples with `use` False
  or no target pixel count zero. The norm is smoothed by `eps` (in units of
  the side) so its gradient stays finite at a perfect warp.
  """
  target = (flow[..., 0] >= 0).astype(jnp.float32)
  side = float(max(coords.shape[1:3]))
  d = (coords.astype(jnp.float32) - flow.astype(jnp.float32)) / side
  epe = jnp.sqrt(jnp.sum(jnp.square(d), -1) + eps * eps) * target
  count = jnp.sum(target, (1, 2))
  per_sample = jnp.sum(epe, (1, 2)) / jnp.maximum(count, 1.0)
  w = use.astype(jnp.float32) * (count > 0)
  return jnp.sum(per_sample * w) / jnp.maximum(jnp.sum(w), 1.0)


def dense_target(edit_mask, side: int):
  """[B, H, W] coverage -> [B, side, side] pooled and divided by its maximum
  (zero maps stay zero): `heatmap_target` at a finer grid."""
  pooled = adaptive_avg_pool(edit_mask[..., None].astype(jnp.float32), (side, side))[..., 0]
  peak = jnp.max(pooled, axis=(1, 2), keepdims=True)
  return jnp.where(peak > 0, pooled / jnp.maximum(peak, 1e-12), 0.0)


def make_loss_fn(
    cls_weight: float = 0.5,
    heatmap_weight: float = 0.5,
    photometric_weight: float = 1.0,
    coords_weight: float = 0.0,
    photometric_normalized: bool = False,
    dense_weight: float = 0.0,
):
  """Builds `loss(model, batch, rngs=None) -> (loss, metrics)` with these weights.

  The weights are closed over rather than keyword arguments because
  `nnx.value_and_grad` binds every argument positionally.

  Args:
    cls_weight, heatmap_weight, photometric_weight: loss weights (spec:
      0.5, 0.5, 1).
    coords_weight: weight of `coordinate_loss` (0: the spec's loss).
    photometric_normalized: the photometric term on ImageNet-normalised values.
    dense_weight: weight of the heatmap term on a finer `dense_heatmap`.
  """

  def loss_fn(model, batch, rngs=None):
    """Training loss of one batch (BatchNorm in training mode).

    Args:
      model: a `Comparator`.
      batch: see `SCHEMA`.
      rngs: unused (the comparator has no stochastic layers); part of the
        task contract shared by all tasks.

    Returns:
      (loss, metrics) with scalar metrics `loss`, `ce`, `heatmap`,
      `photometric`, `accuracy`.
    """
    del rngs
    out = model(batch["ref"], batch["query"], train=True)
    labels = batch["label"].astype(jnp.int32)
    ce = optax.softmax_cross_entropy_with_integer_labels(out["logits"], labels).mean()
    pred_cls = jnp.argmax(out["logits"], axis=-1)
    # Spec 2.7: the heatmap counts as empty whenever the pair is called benign.
    keep = (pred_cls != BENIGN)[:, None, None].astype(out["heatmap"].dtype)
    heat = cosine_heatmap_loss(out["heatmap"] * keep, batch["heatmap"]).mean()
    related = labels != DISTINCT
    photo = photometric_loss(
        batch["ref"], out["warped"], out["valid"], related, photometric_normalized
    )
    coord = coordinate_loss(out["coords"], batch["flow"], related)
    total = cls_weight * ce + heatmap_weight * heat + photometric_weight * photo
    if coords_weight:
      total = total + coords_weight * coord
    if "dense_heatmap" in out:
      target = dense_target(batch["edit_mask"], out["dense_heatmap"].shape[1])
      dense = cosine_heatmap_loss(out["dense_heatmap"] * keep, target).mean()
      total = total + dense_weight * dense
    metrics = dict(
        loss=total,
        ce=ce,
        heatmap=heat,
        photometric=photo,
        coords=coord,
        accuracy=jnp.mean((pred_cls == labels).astype(jnp.float32)),
    )
    if "dense_heatmap" in out:
      metrics["dense"] = dense
    return total, metrics

  return loss_fn


pair_loss = make_loss_fn()


def eval_step(model, batch: Mapping) -> dict:
  """Predictions of one batch in inference mode (jit with `nnx.jit`).

  Returns:
    dict with `pred` [B] int32, `probs` [B, 3] and `heatmap` [B, g, g], the
    test-time map of `Comparator.predict` (zeros if benign, ones if
    distinct, min-max normalised otherwise).
  """
  out = model.predict(batch["ref"], batch["query"])
  return dict(pred=out["label"], probs=out["probs"], heatmap=out["heatmap"], coords=out["coords"])


_jitted_eval_step = nnx.jit(eval_step)


def evaluate_batches(model, batches: Iterable[Mapping], *, jit: bool = True) -> dict:
  """Accuracy and heatmap metrics over `batches` (spec 2.11).

  Returns:
    dict with `accuracy` (3-way), `confusion` (3x3 counts, rows = truth),
    `iou` (mean heatmap IoU over manipulated pairs), `iou_nonbenign` (over
    manipulated and distinct pairs: the reference's `val_iou`, which scores
    every pair whose target is not empty), `emptiness` (mean over benign
    pairs), `epe` (the warp's mean end-point error in pixels over the R
    pixels the query shows, non-distinct pairs) and `count`. A mean over no
    pairs is NaN.
  """
  step = _jitted_eval_step if jit else eval_step
  labels, preds, iou, empt, epe = [], [], [], [], []
  for batch in batches:
    out = jax.device_get(step(model, batch))
    lab = np.asarray(batch["label"])
    gt = np.asarray(batch["heatmap"])
    if out["heatmap"].shape[1:] != gt.shape[1:]:  # a finer map: its own target
      gt = np.asarray(dense_target(jnp.asarray(batch["edit_mask"]), out["heatmap"].shape[1]))
    flow = np.asarray(batch["flow"])
    shown = (flow[..., 0] >= 0) & (lab != DISTINCT)[:, None, None]
    if shown.any():
      epe.append(np.linalg.norm(out["coords"] - flow, axis=-1)[shown])
    labels.append(lab)
    preds.append(out["pred"])
    for y, p, t in zip(lab, out["heatmap"], gt):
      if y == BENIGN:
        empt.append(heatmap_metrics.emptiness(p))
      else:
        iou.append((y, heatmap_metrics.heatmap_iou(p, t)))
  labels, preds = np.concatenate(labels), np.concatenate(preds)
  confusion = np.zeros((3, 3), np.int64)
  np.add.at(confusion, (labels, preds), 1)
  manip = [v for y, v in iou if y == MANIPULATED]
  return dict(
      accuracy=float(np.mean(labels == preds)),
      confusion=confusion,
      iou=_mean(manip),
      iou_nonbenign=_mean([v for _, v in iou]),
      emptiness=_mean(empt),
      epe=_mean(np.concatenate(epe)) if epe else float("nan"),
      count=int(labels.size),
  )


def _mean(values) -> float:
  return float(np.mean(values)) if len(values) else float("nan")


# ------------------------------------------------------- trainer contract ---


def to_float(batch: Mapping) -> dict:
  """uint8 images from the pipeline (4x less to transfer) -> float32 in [0, 1]."""
  out = dict(batch)
  for key in ("ref", "query"):
    if out[key].dtype == jnp.uint8 or np.dtype(out[key].dtype) == np.uint8:
      out[key] = out[key].astype(jnp.float32) / 255.0
  return out


def loss_fn(models, batch, rng, config):
  """The trainer's entry: spec loss weights from `config.loss`."""
  del rng
  w = config.loss
  fn = make_loss_fn(
      w.cls,
      w.heatmap,
      w.photometric,
      w.get("coords", 0.0),
      w.get("photometric_normalized", False),
      w.get("dense", 0.0),
  )
  return fn(models["model"], to_float(batch))


def _source(config, split: str):
  return synthetic.source_from_config(config.data, split)


def search_vectors(name: str, images: list[np.ndarray], batch: int = 64) -> np.ndarray:
  """Released SImProv descriptor `name`'s search vectors of `images`, as a gallery holds them:
  the unit descriptor of each image resized to the model's input, joined with its 16 x 16
  thumbnail at the share stored with the weights (`retrieval.thumbnail.with_thumbnail`)."""
  model = weights.load(name)
  share = float(weights.read_config(name).get("thumbnail_weight", 0.0))
  s = int(model.image_size)
  small = np.stack([im if im.shape[:2] == (s, s) else resize(im, s, s) for im in images])
  graphdef, state = nnx.split(model)
  embed = jax.jit(
      lambda st, x: l2_normalize(
          nnx.merge(graphdef, st)(x.astype(jnp.float32) / 255.0, train=False)
      )
  )
  vectors = in_batches(lambda x: embed(state, x), small, batch)  # one shape, one compile
  return with_thumbnail(vectors, thumbnail(list(small)), share)


def hard_negatives(source, cfg) -> HardNegatives | None:
  """`cfg` = config.data.hard_negatives: neighbours by the released descriptor `cfg.descriptor`
  (`search_vectors`), or None when `cfg.fraction` is 0."""
  if not cfg.fraction:
    return None
  records = [source[i] for i in range(len(source))]
  images = [read_image(r["image"], name=f"record {r['id']}") for r in records]
  vectors = search_vectors(cfg.descriptor, images)
  sources = [bytes(r["source"]).decode() for r in records]
  table = neighbour_table(vectors, sources, cfg.k)
  return HardNegatives(source, table, float(cfg.fraction))


def make_example(
    record,
    rng: np.random.Generator,
    *,
    size: int,
    grid: int,
    split: str = "train",
    photo_dir: str | None = None,
    recipe: str = "moderate",
    hard: HardNegatives | None = None,
) -> dict:
  """A pair from `record`; distinct images and donors from the same split (splits.py).

  With `hard`, a share of the distinct pairs show one of the record's nearest
  records of another source instead of a random distractor.
  """
  image = read_image(record["image"], name=f"record {record.get('id')}")
  negative = functools.partial(hard.draw, int(record["id"])) if hard is not None else None
  return pairs.make_pair(
      image,
      rng,
      size=size,
      grid=grid,
      split=split,
      photo_dir=photo_dir,
      recipe=recipe,
      negative=negative,
  )


def train_data(config, *, start_step: int = 0):
  """Deterministic infinite batches; batch i depends only on (seed, i)."""
  source = _source(config, "train")
  hard_cfg = config.data.get("hard_negatives")
  map_fn = functools.partial(
      make_example,
      size=config.data.image_size,
      grid=config.data.grid,
      split="train",
      photo_dir=config.data.get("photo_dir"),
      recipe=config.data.get("recipe", "moderate"),
      hard=hard_negatives(source, hard_cfg) if hard_cfg else None,
  )
  return pipeline.training_batches(source, config, map_fn, start_step=start_step)


def eval_batches(config) -> list[dict]:
  """The held-back pairs: the test split, one pair per image, fixed seed."""
  source = _source(config, "test")
  n = min(len(source), config.eval.num_pairs)
  rng = np.random.default_rng(config.eval.seed)
  examples = [
      make_example(
          source[i],
          rng,
          size=config.data.image_size,
          grid=config.data.grid,
          split="test",
          photo_dir=config.data.get("photo_dir"),
      )
      for i in range(n)
  ]
  b = config.eval.batch_size
  return [
      to_float({k: np.stack([e[k] for e in examples[i : i + b]]) for k in examples[0]})
      for i in range(0, n, b)
  ]


def evaluate(models, config) -> dict:
  """3-way accuracy, heatmap IoU (manipulated) and emptiness (benign) on held-back pairs."""
  out = evaluate_batches(models["model"], eval_batches(config))
  return {k: v for k, v in out.items() if k != "confusion"}
