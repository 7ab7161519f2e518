"""Training pairs and held-back figures shared by the copy-detection tasks.

A training pair is a reference view and a query view of one source image from
`provjax_copydetect`'s train split (provjax.data.copydetect), each with its
PixTrace coordinate table, so the patch overlaps CopyNCE needs are exact
(provjax.transforms.pixtrace). As in the official CopyNCE data (positive_ref_aug_p
0), the reference is the clean image and the query carries the augmentation
recipe (provjax.transforms.copy_recipe). Donor images for image-in-image
overlays and negatives come from the same train split.
"""

from __future__ import annotations

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from provjax import transforms
from provjax.data import copydetect, disc21, pipeline
from provjax.data.images import read_image
from provjax.metrics import isc
from provjax.models import copynce
from provjax.retrieval.exact import topk
from provjax.transforms import copy_recipe, pixtrace

# Donor images held in memory per process: enough variety for overlays, small next to the split.
DONOR_POOL = 64


def source(config, split: str):
  """A split of `provjax_copydetect`; with `data.disc21_dir` set, training images come from
  DISC21's training set (provjax.data.disc21) and the held-back figures stay synthetic."""
  if split == "train" and config.data.get("disc21_dir"):
    return disc21.load(config.data.disc21_dir, data_dir=config.data.data_dir, split="training")
  return copydetect.source_from_config(config.data, split)


_DONORS: dict[tuple, tuple[np.ndarray, ...]] = {}


def donors(config, split: str = "train") -> tuple[np.ndarray, ...]:
  """A fixed pool of the split's images, decoded once per process and data config."""
  key = (split, config.data.to_json(sort_keys=True))
  if key not in _DONORS:
    src = source(config, split)
    step = max(len(src) // DONOR_POOL, 1)
    picks = range(0, len(src), step)[:DONOR_POOL]
    _DONORS[key] = tuple(read_image(bytes(src[i]["image"])) for i in picks)
  return _DONORS[key]


def training_batches(config, make, *, start_step: int, **kwargs):
  """The train split's batches of `make(record, rng, donors=, size=, **kwargs)` samples."""
  map_fn = functools.partial(make, donors=donors(config), size=config.data.image_size, **kwargs)
  return pipeline.training_batches(source(config, "train"), config, map_fn, start_step=start_step)


def square(image: np.ndarray, size: int) -> np.ndarray:
  """Any image -> size x size, the whole image kept (a skewed square, as ISC descriptors use)."""
  if image.shape[:2] == (size, size):
    return image
  resample = Image.Resampling.BICUBIC
  return np.asarray(Image.fromarray(image).resize((size, size), resample, reducing_gap=2.0))


def copy_pair(image: np.ndarray, rng, *, donors, size: int, patch: int) -> dict:
  """A clean reference view and an augmented query view of `image`, and their overlaps."""
  original = transforms.identity(image)
  ref = transforms.to_size(original, size)
  query = copy_recipe.copy_view(original, rng, donors=donors, size=size)
  qr, rq = pixtrace.pair_overlaps(query, ref, image.shape[:2], patch)
  return {"query": query.image, "reference": ref.image, "overlap_qr": qr, "overlap_rq": rq}


def no_overlap(size: int, patch: int) -> np.ndarray:
  """The overlap matrix of a non-copy: every pixel in the dummy bin."""
  n = (size // patch) ** 2
  out = np.zeros((n, n + 1), np.float32)
  out[:, -1] = 1.0
  return out


def held_back(config, split: str = "val") -> dict:
  """References, queries and ground truth of `val` (choosing) or `test` (reporting)."""
  refs = source(config, f"{split}_refs")
  queries = source(config, f"{split}_queries")
  ref_records = [refs[i] for i in range(len(refs))]
  query_records = [queries[i] for i in range(len(queries))]
  limit = config.eval.get("max_queries", 0)
  if limit:
    query_records = query_records[:limit]
  pairs, gt_queries = copydetect.ground_truth(query_records)
  decode = lambda r: read_image(bytes(r["image"]), name=copydetect.text(r["id"]))
  return {
      "ref_ids": [copydetect.text(r["id"]) for r in ref_records],
      "refs": [decode(r) for r in ref_records],
      "query_ids": [copydetect.text(r["id"]) for r in query_records],
      "queries": [decode(r) for r in query_records],
      "families": [copydetect.text(r["family"]) for r in query_records],
      "pairs": pairs,
      "gt_queries": gt_queries,
  }


def knn_predictions(query_vecs, ref_vecs, query_ids, ref_ids, k: int = 10) -> list[tuple]:
  """k nearest references per query by inner product, as (query_id, reference_id, score)."""
  k = min(k, len(ref_ids))
  scores, idx = topk(jnp.asarray(ref_vecs), jnp.asarray(query_vecs), k)
  scores, idx = np.asarray(scores), np.asarray(idx)
  return [
      (query_ids[i], ref_ids[idx[i, j]], float(scores[i, j]))
      for i in range(len(query_ids))
      for j in range(k)
  ]


def in_batches(apply, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
  """`apply` over fixed-size batches of `images` (the last one padded), so one compile serves all."""
  out = []
  for i in range(0, len(images), batch_size):
    chunk = images[i : i + batch_size]
    pad = batch_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    out.append(np.asarray(apply(chunk))[: batch_size - pad])
  return np.concatenate(out)


@functools.partial(jax.jit, static_argnums=0)
def _embed(graphdef, state, images):
  return nnx.merge(graphdef, state)(copynce.preprocess(images), train=False)["feat"]


def embed(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
  """Unit descriptors of uint8 images [N, S, S, 3] from any descriptor returning `feat`."""
  graphdef, state = nnx.split(model)
  return in_batches(lambda x: _embed(graphdef, state, x), images, batch_size)


def descriptor_figures(embed, data: dict, size: int) -> dict:
  """µAP / RP90 / R@1 of kNN (k = 10) search with the descriptor `embed` (uint8 -> unit vectors)."""
  q = embed(np.stack([square(x, size) for x in data["queries"]]))
  r = embed(np.stack([square(x, size) for x in data["refs"]]))
  preds = knn_predictions(q, r, data["query_ids"], data["ref_ids"])
  m = isc.evaluate(data["pairs"], preds, gt_queries=data["gt_queries"])
  return {k: m[k] for k in ("micro_ap", "recall_at_p90", "recall_at_rank1")}
