"""Local-feature verification of copy candidates (provjax/copydetect/verification.py)."""

from __future__ import annotations

import numpy as np
from PIL import Image
import pytest
import skimage.data

from provjax.copydetect import verification
from provjax.copydetect.detector import CopyDetector, Protocol
from provjax.copydetect.verification import Verifier


def _unit(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_ratio_matches_drops_ambiguous_ones_and_keeps_one_per_reference_keypoint():
  rng = np.random.default_rng(0)
  r = _unit(rng.normal(size=(6, 128)).astype(np.float32))
  q = np.stack(
      [
          r[0],  # exact: kept
          _unit((r[1] + r[2])[None])[0],  # halfway between two: ambiguous, dropped
          _unit((r[3] + 0.05 * r[4])[None])[0],  # near r3, second to r0 ...
          r[3],  # ... and this one is closer to r3: it wins r3
      ]
  )
  i, j = verification.ratio_matches(q, r, ratio=0.85)
  assert sorted(zip(i.tolist(), j.tolist())) == [(0, 0), (3, 3)]
  assert verification.ratio_matches(q, r[:1], 0.85)[0].size == 0  # needs two neighbours


def test_affine_inliers_counts_the_matches_of_one_map_and_refuses_mirrors_and_collapse():
  rng = np.random.default_rng(1)
  a = rng.random((60, 2))
  linear = np.array([[0.8, 0.2], [-0.15, 0.7]])  # rotation + scale + a little shear, det > 0
  b = a @ linear + np.array([0.1, 0.05])
  b[40:] = rng.random((20, 2))  # 20 wrong matches
  kw = dict(hypotheses=256, tolerance=0.01)
  assert verification.affine_inliers(a, b, **kw) == 40
  mirrored = (a * np.array([-1.0, 1.0]))[:40]  # x -> -x: only the query's mirror may match it
  assert verification.affine_inliers(a[:40], mirrored, **kw) <= 3
  squashed = np.column_stack([a[:40, 0] * 0.05, a[:40, 1]])  # a map that collapses x
  assert verification.affine_inliers(a[:40], squashed, **kw) <= 3
  assert verification.affine_inliers(a[:2], b[:2], **kw) == 0  # fewer than 3 matches


def test_root_sift_is_the_hellinger_embedding():
  d = np.array([[1.0, 3.0, 0.0], [2.0, 2.0, 4.0]])
  e = verification.root_sift(d)
  np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-6)
  hellinger = np.sum(np.sqrt(d[0] / d[0].sum() * d[1] / d[1].sum()))
  np.testing.assert_allclose(e[0] @ e[1], hellinger, rtol=1e-6)


def test_bonus_is_zero_at_chance_and_whole_from_chance_plus_span():
  v = Verifier(chance=5, span=5, weight=2.0)
  np.testing.assert_allclose(v.bonus(np.array([0, 5, 6, 8, 10, 500])), [0, 0, 0.4, 1.2, 2, 2])


def test_near_duplicate_thumbnails_earn_the_bonus_too_and_the_larger_evidence_counts():
  v = Verifier(chance=5, span=5, near_duplicate=0.9, weight=2.0)
  got = v.bonus(np.array([0, 0, 0, 8, 8]), np.array([0.5, 0.9, 0.95, 0.92, 1.0]))
  np.testing.assert_allclose(got, [0, 0, 1.0, 1.2, 2.0], atol=1e-6)
  off = Verifier(chance=5, span=5, weight=2.0)  # near_duplicate 1: cosines change nothing
  np.testing.assert_allclose(off.bonus(np.array([0, 8]), np.array([1.0, 1.0])), [0, 1.2])


def _copy(image: np.ndarray) -> np.ndarray:
  """A 2/3 crop, rotated 12 degrees and shrunk: a copy a global descriptor may miss."""
  im = Image.fromarray(image).crop((60, 40, 460, 360))
  im = im.rotate(12, resample=Image.Resampling.BILINEAR).resize((300, 240))
  return np.asarray(im)


@pytest.fixture(scope="module")
def photos():
  return {n: getattr(skimage.data, n)() for n in ("coffee", "astronaut", "chelsea", "rocket")}


def test_copies_are_verified_far_above_chance_and_unrelated_photos_are_not(photos):
  v = Verifier()
  refs = {n: v.features(im) for n, im in photos.items()}
  for name in ("coffee", "astronaut"):
    for query in (_copy(photos[name]), np.ascontiguousarray(_copy(photos[name])[:, ::-1])):
      feats = v.query_features(query)
      counts = {n: v.inliers(feats, r) for n, r in refs.items()}
      assert counts[name] >= 4 * v.chance, counts  # the copy (or its mirror image)
      assert all(c <= v.chance for n, c in counts.items() if n != name), counts


def test_featureless_images_verify_nothing():
  v = Verifier()
  flat = np.full((64, 64, 3), 128, np.uint8)
  assert v.features(flat).desc.shape == (0, 128)
  assert v.inliers(v.query_features(flat), v.features(skimage.data.coffee())) == 0
  assert v.features(np.zeros((8, 300, 3), np.uint8)).xy.shape == (0, 2)  # too small


def test_verify_top_adds_the_bonus_to_the_best_candidates_and_keeps_k(photos):
  names = list(photos)
  queries = [_copy(photos["chelsea"]), _copy(photos["rocket"])]
  det = CopyDetector(None, 0, Protocol(k=2, verify=3))
  assert det.protocol.depth == 3
  # Search order that ranks each copy's reference last among its 3 candidates.
  qi = np.array([0, 0, 0, 1, 1, 1])
  ri = np.array([0, 1, 2, 0, 1, 3])
  scores = np.array([0.9, 0.8, 0.1, 0.9, 0.8, 0.1], np.float32)
  got_q, got_r, got_s = det.verify_top(
      qi, ri, scores, lambda i: queries[i], lambda j: photos[names[j]], n_queries=2
  )
  assert got_q.tolist() == [0, 0, 1, 1]  # k = 2 per query
  assert got_r[0] == 2 and got_r[2] == 3  # each copy's reference now ranks first
  assert got_s[0] == pytest.approx(0.1 + det.protocol.verify_weight)
  glob = CopyDetector(None, 0, Protocol(k=1, verify=3, search="global"))
  got_q, got_r, _ = glob.verify_top(
      qi, ri, scores, lambda i: queries[i], lambda j: photos[names[j]], n_queries=2
  )
  assert sorted(zip(got_q.tolist(), got_r.tolist())) == [(0, 2), (1, 3)]  # budget 2 x 1


def test_query_upsampling_finds_finer_keypoints_in_the_query_only(photos):
  small = np.asarray(Image.fromarray(photos["coffee"]).resize((160, 120)))
  coarse, fine = Verifier(), Verifier(query_upsampling=2)
  assert len(fine.query_features(small)[0].xy) > len(coarse.query_features(small)[0].xy)
  np.testing.assert_array_equal(fine.features(small).xy, coarse.features(small).xy)


def test_mirrored_features_are_what_sift_finds_on_the_mirror_image(photos):
  v = Verifier()
  image = photos["astronaut"]
  derived = verification.mirrored(v.features(image))
  found = v.features(np.ascontiguousarray(image[:, ::-1]))
  # The mirror's keypoints sit at x -> (width - 1) - x, in units of the longer side.
  gray = verification.grayscale(image, v.side)
  shifted = derived.xy + np.array([(gray.shape[1] - 1) / max(gray.shape), 0.0], np.float32)
  dist = np.linalg.norm(shifted[:, None] - found.xy[None], axis=-1)
  i, j = np.nonzero(dist < 1e-3)
  assert len(i) > len(found.xy) // 2, (len(i), len(found.xy))
  cos = np.sum(derived.desc[i] * found.desc[j], axis=1)
  assert np.median(cos) > 0.85, np.median(cos)


def test_mirrored_thumbnail_is_the_mirror_images_thumbnail(photos):
  v = Verifier()
  image = photos["chelsea"]
  derived = verification.mirrored(v.features(image)).thumb
  found = v.features(np.ascontiguousarray(image[:, ::-1])).thumb
  assert float(derived @ found) > 0.999


def test_a_blurred_noisy_copy_keeps_few_keypoints_but_its_thumbnail(photos):
  rng = np.random.default_rng(0)
  image = photos["coffee"]
  small = Image.fromarray(image).convert("L").resize((16, 12))
  blurred = np.asarray(small.resize((600, 450), Image.Resampling.BICUBIC), np.float32)
  noisy = np.clip(blurred + rng.normal(0, 12, blurred.shape), 0, 255).astype(np.uint8)
  v = Verifier(near_duplicate=0.9)
  query, refs = v.query_features(noisy), {n: v.features(im) for n, im in photos.items()}
  assert v.inliers(query, refs["coffee"]) <= v.chance  # its keypoints are gone
  cos = {n: v.cosine(query, r) for n, r in refs.items()}
  assert cos["coffee"] > 0.95 and max(c for n, c in cos.items() if n != "coffee") < 0.5, cos
  bonus = v.bonus(np.zeros(2), np.array([cos["coffee"], cos["astronaut"]]))
  assert bonus[0] > 0.5 * v.weight and bonus[1] == 0


def test_a_lower_contrast_threshold_finds_keypoints_in_a_faded_image(photos):
  faded = (128 + (photos["coffee"].astype(np.float32) - 128) * 0.15).astype(np.uint8)
  found = {c: len(Verifier(contrast=c).features(faded).xy) for c in (0.04, 0.01)}
  assert found[0.01] > 3 * found[0.04], found


def test_features_found_in_worker_processes_equal_those_found_here(photos):
  v = Verifier(query_upsampling=2)
  images = list(photos.values())
  calls = [(v.features, lambda im=im: im) for im in images]
  calls += [(v.query_features, lambda im=im: im) for im in images]
  here = list(verification.run_calls(calls, workers=1))
  there = list(verification.run_calls(calls, workers=2, chunk=3))
  assert len(there) == len(here) == 8
  for a, b in zip(
      here[:4] + [q for pair in here[4:] for q in pair],
      there[:4] + [q for pair in there[4:] for q in pair],
  ):
    np.testing.assert_array_equal(a.xy, b.xy)
    np.testing.assert_array_equal(a.desc, b.desc)
