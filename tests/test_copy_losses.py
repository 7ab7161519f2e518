"""Copy-detection losses against hand computations (specs/copy_detection.md sections 4, 6)."""

import numpy as np
import pytest

from provjax.tasks import copy_losses


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_info_nce_two_pairs_by_hand():
  # Pairs (0, 2) and (1, 3) of four 2-d unit vectors at known angles.
  angles = np.array([0.0, 1.5, 0.3, 1.2])
  z = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
  scale = 5.0
  cos = z @ z.T
  partner = [2, 3, 0, 1]
  want_sscd, want_copynce = 0.0, 0.0
  for i in range(4):
    others = [j for j in range(4) if j != i]
    want_sscd += -(scale * cos[i, partner[i]] - np.log(np.sum(np.exp(scale * cos[i, others]))))
    row = np.where(np.arange(4) == i, -1.0, cos[i])  # CopyNCE: self cosine set to -1
    want_copynce += -(scale * row[partner[i]] - np.log(np.sum(np.exp(scale * row))))
  got_sscd = float(copy_losses.info_nce(z, scale))
  got_copynce = float(copy_losses.info_nce(z, scale, self_cos=-1.0))
  assert got_sscd == pytest.approx(want_sscd / 4, rel=1e-5)
  assert got_copynce == pytest.approx(want_copynce / 4, rel=1e-5)
  assert got_copynce > got_sscd  # the self term only adds to the denominator


def test_koleo_nearest_non_match_by_hand():
  angles = np.array([0.0, 2.0, 0.1, 2.5])  # pairs (0, 2), (1, 3)
  z = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
  # Nearest non-match of 0 is 1 (angle 2.0), of 1 is 2 (1.9), of 2 is 1 (1.9), of 3 is 2 (2.4).
  gaps = np.array([2.0, 1.9, 1.9, 2.4])
  want = -np.mean(np.log(np.sqrt(2 - 2 * np.cos(gaps))))
  assert float(copy_losses.koleo(z)) == pytest.approx(want, rel=1e-5)


def _official_directional(zq, zr, counts, gamma, scale):
  """Straight from the definition: counts [B, L, L+1] of pixel mappings per bin."""
  zq, zr = _unit(zq), _unit(zr)
  out = []
  for b in range(zq.shape[0]):
    s = scale * zq[b] @ zr[b].T
    logp = s - np.log(np.sum(np.exp(s), axis=1, keepdims=True))
    w = (counts[b] / counts[b].sum(axis=1, keepdims=True)) ** gamma
    w = w / w.sum(axis=1, keepdims=True)
    out.append(np.mean(np.sum(-w[:, :-1] * logp, axis=1)))
  return np.array(out)


@pytest.mark.parametrize("gamma", [1.0, 3.0])
def test_copynce_matches_the_definition(gamma):
  rng = np.random.default_rng(0)
  b, l, c = 3, 4, 8
  zq = rng.normal(size=(b, l, c)).astype(np.float32)
  zr = rng.normal(size=(b, l, c)).astype(np.float32)
  counts_qr = rng.integers(0, 5, size=(b, l, l + 1)).astype(np.float32)
  counts_qr[..., -1] += 1  # no all-zero row
  counts_rq = rng.integers(0, 5, size=(b, l, l + 1)).astype(np.float32)
  counts_rq[..., -1] += 1
  overlap_qr = counts_qr / counts_qr.sum(-1, keepdims=True)
  overlap_rq = counts_rq / counts_rq.sum(-1, keepdims=True)
  positive = np.array([1.0, 0.0, 1.0])
  per_pair = 0.5 * _official_directional(zq, zr, counts_qr, gamma, 16.0) + 0.5 * (
      _official_directional(zr, zq, counts_rq, gamma, 16.0)
  )
  want = (per_pair[0] + per_pair[2]) / 2  # the non-copy pair carries no patch target
  got = copy_losses.copynce(zq, zr, overlap_qr, overlap_rq, positive, gamma=gamma)
  assert float(got) == pytest.approx(want, rel=1e-4)


def test_copynce_rewards_the_traced_patch():
  # Identity overlap: query patch i is reference patch i. Tokens that agree score lower.
  rng = np.random.default_rng(1)
  l, c = 6, 16
  tokens = rng.normal(size=(1, l, c)).astype(np.float32)
  overlap = np.concatenate([np.eye(l), np.zeros((l, 1))], axis=1)[None].astype(np.float32)
  aligned = copy_losses.copynce(tokens, tokens, overlap, overlap, np.ones(1), gamma=3.0)
  shuffled = copy_losses.copynce(tokens, tokens[:, ::-1], overlap, overlap, np.ones(1), gamma=3.0)
  assert float(aligned) < 0.1 < float(shuffled)
  # A query with no source anywhere (all dummy) has no target: zero loss.
  dummy = np.zeros_like(overlap)
  dummy[..., -1] = 1.0
  assert float(copy_losses.copynce(tokens, tokens, dummy, dummy, np.ones(1), gamma=1.0)) == 0.0
