"""Copy-detection losses (specs/copy_detection.md sections 4 and 6): InfoNCE, KoLeo, CopyNCE.

Descriptor batches hold B positive pairs stacked as z = [queries; references]
([2B, D]), so row i's positive is row (i + B) mod 2B; every other row is a
negative. The patch loss takes the PixTrace overlap matrices of
`provjax.transforms.pixtrace` (last column = the dummy bin of pixels with no
source in the other view).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from provjax.tasks.losses import l2_normalize


def _pair_partner(n2: int) -> jnp.ndarray:
  half = n2 // 2
  return (jnp.arange(n2) + half) % n2


def info_nce(z, scale, *, self_cos: float | None = None):
  """InfoNCE over stacked pairs: -log softmax at the partner.

  SSCD and CopyNCE differ in the scale (SSCD's fixed 1/tau, tau 0.05;
  CopyNCE's learned exp(log_scale)) and in the anchor's own entry: SSCD leaves
  it out of the denominator (`self_cos=None`), CopyNCE overwrites its cosine
  with -1 (`self_cos=-1.0`). With one positive per anchor, SSCD's "other
  positives left out of the denominator" is the plain softmax.
  """
  z = l2_normalize(z.astype(jnp.float32))
  n2 = z.shape[0]
  eye = jnp.eye(n2, dtype=bool)
  cos = z @ z.T
  logits = scale * (cos if self_cos is None else jnp.where(eye, self_cos, cos))
  if self_cos is None:
    logits = jnp.where(eye, -jnp.inf, logits)
  logp = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(logp[jnp.arange(n2), _pair_partner(n2)])


def koleo(z, eps: float = 1e-6):
  """KoLeo entropy term: -mean log(distance to the nearest non-match).

  The non-matches of row i are every row but itself and its partner; for unit
  vectors the distance is sqrt(2 - 2 cos), clamped at `eps` before the root as
  the official code does.
  """
  z = l2_normalize(z.astype(jnp.float32))
  n2 = z.shape[0]
  cos = z @ z.T
  same = jnp.eye(n2, dtype=bool) | (jnp.arange(n2)[None, :] == _pair_partner(n2)[:, None])
  nearest = jnp.max(jnp.where(same, -1.0, cos), axis=-1)
  return -jnp.mean(jnp.log(jnp.sqrt(jnp.maximum(2.0 - 2.0 * nearest, eps))))


def copynce_directional(zq, zr, overlap, *, gamma: float, scale: float = 16.0):
  """L(q -> r) per pair [B]: overlap-weighted cross-entropy of each query patch over
  the paired image's patches.

  zq [B, Lq, C], zr [B, Lr, C]; overlap [B, Lq, Lr + 1] the fraction of query
  patch i's pixels landing in reference patch j (last column: no source).
  Weights are overlap**gamma normalised over the Lr + 1 bins, then the dummy is
  dropped and they are held constant (the official weighting); the softmax runs
  over the Lr patches only and the loss is averaged over all query patches.
  """
  zq = l2_normalize(zq.astype(jnp.float32))
  zr = l2_normalize(zr.astype(jnp.float32))
  logp = jax.nn.log_softmax(scale * jnp.einsum("bic,bjc->bij", zq, zr), axis=-1)
  w = jnp.power(overlap.astype(jnp.float32), gamma)
  w = w / jnp.maximum(jnp.sum(w, axis=-1, keepdims=True), 1e-12)
  w = jax.lax.stop_gradient(w[..., :-1])
  return jnp.mean(jnp.sum(-w * logp, axis=-1), axis=-1)


def copynce(zq, zr, overlap_qr, overlap_rq, positive, *, gamma: float, scale=16.0, lam=0.5):
  """Symmetric CopyNCE, lam * L(q->r) + (1 - lam) * L(r->q), averaged over positive pairs.

  `positive` [B] marks the pairs that are copies (the matcher also sees
  non-copies, which carry no patch target). With none, the loss is 0 and still
  depends on the inputs, as the official code keeps the graph connected.
  """
  per_pair = lam * copynce_directional(zq, zr, overlap_qr, gamma=gamma, scale=scale) + (
      1.0 - lam
  ) * copynce_directional(zr, zq, overlap_rq, gamma=gamma, scale=scale)
  positive = positive.astype(jnp.float32)
  return jnp.sum(positive * per_pair) / jnp.maximum(jnp.sum(positive), 1.0)
