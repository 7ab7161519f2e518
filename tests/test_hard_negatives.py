"""Hard negatives for the comparator: the neighbour table, distinct pairs that use it."""

import ml_collections
import numpy as np
import pytest

from provjax.data import hard_negatives, pairs
from provjax.data.images import read_image
from provjax.retrieval.thumbnail import thumbnail
from provjax.tasks import simprov_comparator as task


def _unit(rng, n, d):
  v = rng.normal(size=(n, d))
  return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_neighbours_are_the_nearest_records_of_other_sources():
  rng = np.random.default_rng(0)
  vectors = _unit(rng, 60, 8)
  sources = [f"photo:{i % 7}" for i in range(60)]
  table = hard_negatives.neighbour_table(vectors, sources, 5)
  sims = vectors @ vectors.T
  for i in range(60):
    expected = [j for j in np.argsort(-sims[i], kind="stable") if sources[j] != sources[i]][:5]
    assert table[i].tolist() == expected


def test_too_few_records_of_other_sources_is_refused():
  vectors = _unit(np.random.default_rng(1), 6, 4)
  with pytest.raises(ValueError, match="one source holds 4 of the 6"):
    hard_negatives.neighbour_table(vectors, ["a"] * 4 + ["b", "c"], 3)


def _checkers(size=96):
  y, x = np.mgrid[:size, :size]
  return (
      np.where(((y // 12) + (x // 12)) % 2 == 0, 230, 20).astype(np.uint8)[..., None].repeat(3, -1)
  )


def _gradient(size=96):
  y, x = np.mgrid[:size, :size] * (255.0 / (size - 1))
  return np.stack([x, y, np.full_like(x, 128.0)], -1).astype(np.uint8)


def test_a_distinct_pair_shows_the_hard_negative_and_only_distinct_pairs_ask_for_one():
  original, other = _checkers(), _gradient()
  calls = []

  def negative(rng):
    calls.append(1)
    return other

  for seed in range(4):
    for label in (pairs.BENIGN, pairs.MANIPULATED):
      pairs.make_pair(
          original, np.random.default_rng(seed), size=32, label=label, negative=negative
      )
    assert not calls
    p = pairs.make_pair(
        original, np.random.default_rng(seed), size=32, label=pairs.DISTINCT, negative=negative
    )
    assert len(calls) == 1
    calls.clear()
    q, o, n = thumbnail([p["query"], original, other])
    assert float(q @ n) > float(q @ o)  # the query is made from the negative, not a distractor
    # A negative of None falls back to the random distractor, with the same random stream.
    fallback = pairs.make_pair(
        original,
        np.random.default_rng(seed),
        size=32,
        label=pairs.DISTINCT,
        negative=lambda r: None,
    )
    plain = pairs.make_pair(original, np.random.default_rng(seed), size=32, label=pairs.DISTINCT)
    np.testing.assert_array_equal(fallback["query"], plain["query"])


def test_the_task_draws_neighbours_of_other_sources_by_the_released_descriptor():
  data = ml_collections.ConfigDict(
      dict(data_dir="~/.cache/provjax/tensorflow_datasets", resolution=64, count=64, seed=0)
  )
  source = task._source(ml_collections.ConfigDict(dict(data=data)), "train")
  cfg = ml_collections.ConfigDict(dict(fraction=1.0, k=4, descriptor="simprov.synth-v3-mix"))
  hard = task.hard_negatives(source, cfg)
  assert hard.table.shape == (len(source), 4)
  names = [bytes(source[i]["source"]).decode() for i in range(len(source))]
  for i, row in enumerate(hard.table):
    assert all(names[j] != names[i] for j in row)
  rng = np.random.default_rng(0)
  drawn = hard.draw(3, rng)
  assert any(np.array_equal(drawn, read_image(source[int(j)]["image"])) for j in hard.table[3])
  assert task.hard_negatives(source, ml_collections.ConfigDict(dict(cfg, fraction=0.0))) is None
