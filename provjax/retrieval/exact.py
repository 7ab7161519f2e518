"""Exact inner-product top-k in JAX: the ground truth that ScaNN's recall is measured against.

The database is scored block by block (``queries @ block.T`` then ``lax.top_k`` per block, merged
into a running top-k) so memory stays bounded at ``[Q, block]`` scores whatever the database
size, and every shape is static so one compilation serves every call with the same shapes.

Ties are broken by the lower database index: ``lax.top_k`` is stable (equal values keep their
order), blocks are visited in increasing index order, and the running top-k is always
concatenated *before* the new block's candidates. The k winners are then re-scored in float64
on the host (:func:`_rescore`), so a row's reported score does not depend on the database shape
or on the row's position, and the same row scores the same in one index or in any shard.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_BLOCK = 16384
# Queries are padded to a power of two between these sizes (and larger batches are split) so
# that arbitrary batch sizes reuse a handful of compiled programs.
MIN_QUERY_BUCKET = 8
MAX_QUERY_BUCKET = 1024


def to_device(db: np.ndarray) -> jax.Array:
  """Copies a float32 ``[N, d]`` database to the default device once, for repeated search."""
  return jax.device_put(np.asarray(db, np.float32))


@functools.partial(jax.jit, static_argnames=("k", "block"))
def _topk_blocked(db: jax.Array, n_valid: jax.Array, queries: jax.Array, k: int, block: int):
  """Jitted blocked top-k over rows ``[0, n_valid)``; ``block`` must already be <= ``N``.

  ``n_valid`` is traced, not static, so a caller can keep the database in a capacity buffer
  that grows by doubling and add rows without triggering a recompilation per size.
  """
  n = db.shape[0]
  num_blocks = -(-n // block)
  q = queries.shape[0]
  kb = min(k, block)

  def body(i, carry):
    best_s, best_i = carry
    start = i * block
    # dynamic_slice clamps the last block to start at n - block, so it overlaps rows that
    # an earlier block already scored. Masking those rows to -inf has the effect of padding
    # the database with -inf rows, without copying the whole database on every call.
    real_start = jnp.minimum(start, n - block)
    rows = jax.lax.dynamic_slice_in_dim(db, real_start, block, axis=0)
    scores = jnp.dot(queries, rows.T, preferred_element_type=jnp.float32)
    global_idx = real_start + jnp.arange(block, dtype=jnp.int32)
    real = (global_idx >= start) & (global_idx < n_valid)
    scores = jnp.where(real[None, :], scores, -jnp.inf)
    blk_s, blk_pos = jax.lax.top_k(scores, kb)
    blk_i = global_idx[blk_pos]
    # Running top-k first: on equal scores top_k keeps the earlier (lower-index) entry.
    all_s = jnp.concatenate([best_s, blk_s], axis=1)
    all_i = jnp.concatenate([best_i, blk_i], axis=1)
    best_s, pos = jax.lax.top_k(all_s, k)
    return best_s, jnp.take_along_axis(all_i, pos, axis=1)

  init = (jnp.full((q, k), -jnp.inf, jnp.float32), jnp.full((q, k), -1, jnp.int32))
  best_s, best_i = jax.lax.fori_loop(0, num_blocks, body, init)
  # Slots never filled by a real row (k > N) keep -inf; report them as id -1.
  return best_s, jnp.where(jnp.isneginf(best_s), -1, best_i)


def _rescore(db, queries: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Recomputes the winners' scores in float64 and re-sorts them (score desc, index asc).

  The blocked float32 matmul rounds differently for different database shapes and row
  positions, so the same row could score a few ulps apart in two indexes. Float32 products
  are exact in float64, and a float64 sum of d of them is accurate to ~1e-16 relative, so
  rounding it to float32 gives the same value whatever the summation order (unless it lands
  within that error of a float32 rounding boundary): a row's reported score is the same in
  any index or shard, and duplicate rows tie exactly.
  """
  valid = idx >= 0
  # [Q, k, d] gather, on the host for a numpy database, on the device (then copied) otherwise.
  rows = np.asarray(db[np.maximum(idx, 0)], np.float64)
  scores = np.einsum("qd,qkd->qk", queries.astype(np.float64), rows).astype(np.float32)
  scores[~valid] = -np.inf
  order = np.lexsort((np.where(valid, idx, np.iinfo(np.int64).max), -scores), axis=1)
  return np.take_along_axis(scores, order, 1), np.take_along_axis(idx, order, 1)


def topk(
    db: np.ndarray | jax.Array,
    queries: np.ndarray | jax.Array,
    k: int,
    block: int = DEFAULT_BLOCK,
    n_valid: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Exact maximum-inner-product top-k.

  Args:
      db: float32 ``[N, d]`` database (numpy, or a device array from :func:`to_device` to
          avoid a host-to-device copy per call).
      queries: float ``[Q, d]`` queries.
      k: neighbours per query (static: one compilation per distinct k and shapes).
      block: database rows scored per step; bounds memory at ``Q * block`` floats.
      n_valid: only rows ``[0, n_valid)`` of ``db`` are searched (the rest is spare
          capacity); default all rows.

  Returns:
      ``(scores float32 [Q, k], indices int64 [Q, k])`` sorted by decreasing score, ties by
      lower index; where ``k > N`` the missing slots have score ``-inf`` and index ``-1``.
      Scores are float64 inner products rounded to float32 (see :func:`_rescore`).
  """
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}")
  queries = np.asarray(queries, np.float32)
  if queries.ndim != 2 or db.ndim != 2 or db.shape[1] != queries.shape[1]:
    raise ValueError(f"shape mismatch: db {tuple(db.shape)}, queries {queries.shape}")
  q = queries.shape[0]
  scores = np.full((q, k), -np.inf, np.float32)
  idx = np.full((q, k), -1, np.int64)
  n_valid = db.shape[0] if n_valid is None else min(int(n_valid), db.shape[0])
  if n_valid == 0 or q == 0:
    return scores, idx
  host_db = np.asarray(db, np.float32) if isinstance(db, np.ndarray) else None
  db = jnp.asarray(db, jnp.float32)
  bucket = min(MAX_QUERY_BUCKET, max(MIN_QUERY_BUCKET, 1 << (q - 1).bit_length()))
  pending = []
  for start in range(0, q, bucket):
    chunk = queries[start : start + bucket]
    m = chunk.shape[0]
    if m < bucket:  # zero rows: their results are computed and dropped
      chunk = np.concatenate([chunk, np.zeros((bucket - m, chunk.shape[1]), np.float32)])
    # Dispatch every chunk before reading any back: JAX runs them asynchronously.
    pending.append(
        (start, m, _topk_blocked(db, np.int32(n_valid), chunk, k=k, block=min(block, db.shape[0])))
    )
  for start, m, (_, i) in pending:
    idx[start : start + m] = np.asarray(i)[:m]
  return _rescore(db if host_db is None else host_db, queries, idx)
