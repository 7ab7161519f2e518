"""Provenance engine plumbing: index build / query CLI, JSON contract, bad inputs."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
import pytest

import provjax
from provjax import cli
from provjax.data import photos
from provjax.provenance.engine import heatmap_on_query
from provjax.provenance.gallery import Gallery
from provjax.retrieval.index import IndexCorruptError
from provjax.transforms import pixel_grid


def _build_args(db, index, flags) -> list[str]:
  """`provjax index build` of `db` into `index` with exact search and the test weights."""
  return [
      "index",
      "build",
      str(db),
      "--index",
      str(index),
      "--no-progress",
      "--backend",
      "exact",
      *flags,
  ]


def _images(folder, n, seed=0):
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  paths = []
  for i in range(n):
    path = folder / f"img{i}.png"
    Image.fromarray(photos.procedural_image(rng, 80 + 8 * i)).save(path)
    paths.append(path)
  return paths


def test_released_weights_round_trip(fresh_weights):
  model = provjax.load("simprov.test")
  again = provjax.load("simprov.test")
  x = np.random.default_rng(0).random((2, 64, 64, 3), np.float32)
  np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(again(x)))
  assert "simprov.test" in provjax.list_models(pretrained=True)


def test_index_build_query_cli(fresh_weights, tmp_path, capsys):
  paths = _images(tmp_path / "db", 6)
  (tmp_path / "db" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
  flags = ["--descriptor", "simprov.test", "--comparator", "simprov_comparator.test"]
  rc = cli.main(_build_args(tmp_path / "db", tmp_path / "idx", flags))
  out, err = capsys.readouterr()
  assert rc == 1 and "broken.jpg" in err
  stats = json.loads(out.strip().splitlines()[-1])
  assert stats["added"] == 6 and stats["errors"] == 1

  # Building again is a sync with nothing to do: every file is recognised by its sha256.
  rc = cli.main(_build_args(tmp_path / "db", tmp_path / "idx", flags))
  stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert stats["added"] == 0 and stats["unchanged"] == 6 and stats["size"] == 6

  rc = cli.main(
      [
          "query",
          str(paths[2]),
          str(tmp_path / "db" / "broken.jpg"),
          "--index",
          str(tmp_path / "idx"),
          "--out",
          str(tmp_path / "out"),
          "--k",
          "4",
          *flags,
      ]
  )
  lines = [json.loads(l) for l in capsys.readouterr().out.strip().splitlines()]
  assert rc == 1 and len(lines) == 2
  good, bad = lines
  assert bad["error"] and "broken.jpg" in bad["error"] and bad["match"] is None
  assert good["error"] is None and len(good["candidates"]) == 4
  # The query is itself in the gallery: search must find it with cosine 1.
  best = max(good["candidates"], key=lambda c: c["score"])
  assert best["score"] == pytest.approx(1.0, abs=1e-4) and best["path"] == str(paths[2].resolve())
  heat = np.load(good["heatmap_npy"])
  assert heat.shape == Image.open(paths[2]).size[::-1]
  assert Image.open(good["heatmap_png"]).size[0] > 3 * 200
  if good["match"] is not None:
    assert set(good["match"]) >= {
        "path",
        "id",
        "score",
        "verdict",
        "p_benign",
        "p_manipulated",
        "p_distinct",
    }
  # A gallery built with another descriptor is refused before any image is read.
  query = ["query", str(paths[2]), "--index", str(tmp_path / "idx"), "--out", str(tmp_path / "o")]
  assert cli.main(query + ["--comparator", "simprov_comparator.test"]) == 2
  assert "was built with --descriptor simprov.test" in capsys.readouterr().err


def test_search_with_a_thumbnail_share(fresh_weights, tmp_path, capsys):
  """Descriptor weights released with `thumbnail_weight` build 512-d galleries that record it;
  queries are described the same way and find themselves with cosine 1."""
  from provjax import weights
  from provjax.provenance.engine import Describer, Engine
  from provjax.retrieval.thumbnail import thumbnail, with_thumbnail

  model = provjax.load("simprov.test")
  weights.export(
      model,
      "simprov.testmix",
      arch="simprov.tiny",
      preprocessing={"image_size": model.image_size},
      extra={"thumbnail_weight": 0.4},
  )
  paths = _images(tmp_path / "db", 4)
  flags = ["--descriptor", "simprov.testmix", "--comparator", "simprov_comparator.test"]
  assert cli.main(_build_args(tmp_path / "db", tmp_path / "idx", flags)) == 0
  gallery = Gallery.open(tmp_path / "idx")
  assert gallery.info["thumbnail_weight"] == 0.4 and gallery.index.dim == 512
  engine = Engine(gallery, model, provjax.load("simprov_comparator.test"), k=4)
  image = np.asarray(Image.open(paths[1]).convert("RGB"))
  vector = engine.describe([image])[0]
  size = model.image_size
  alone = Describer(model)([image])
  small = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
  np.testing.assert_allclose(vector, with_thumbnail(alone, thumbnail([small]), 0.4)[0], atol=1e-5)
  best = max(engine.query(image).candidates, key=lambda c: c["score"])  # search similarity
  assert best["path"] == str(paths[1].resolve()) and best["score"] == pytest.approx(1.0, abs=1e-3)
  capsys.readouterr()


def test_gallery_thumbnails_survive_save_and_load(tmp_path):
  g = Gallery.create(tmp_path / "g", dim=4, thumb_size=8, descriptor="x", backend="exact")
  v = np.eye(4, dtype=np.float32)
  thumbs = np.arange(4 * 8 * 8 * 3, dtype=np.uint8).reshape(4, 8, 8, 3)
  g.add(v, thumbs, [f"p{i}" for i in range(4)], [f"s{i}" for i in range(4)])
  g.save()
  (tmp_path / "g" / "thumbs" / "chunk-99999999999999999999.thumbs.npy").write_bytes(b"")
  again = Gallery.open(tmp_path / "g")  # a thumbs file without its ids file (a kill) is ignored
  want = np.stack([thumbs[3], np.zeros_like(thumbs[0]), thumbs[0]])
  np.testing.assert_array_equal(again.thumbs(np.array([3, -1, 0])), want)
  assert all(isinstance(t, np.memmap) for _, t in again._chunks)  # not read into memory


def test_compact_copies_the_live_thumbnails_a_block_at_a_time(tmp_path, monkeypatch):
  from provjax.provenance import gallery as gallery_lib

  g = Gallery.create(tmp_path / "g", dim=8, thumb_size=4, descriptor="x", backend="exact")
  thumbs = np.random.default_rng(0).integers(0, 255, (8, 4, 4, 3), dtype=np.uint8)
  for part in (slice(0, 5), slice(5, 8)):  # two chunks
    ids = np.arange(8)[part]
    g.add(
        np.eye(8, dtype=np.float32)[part], thumbs[part], [f"p{i}" for i in ids], list(map(str, ids))
    )
  g.save()
  g.remove([1, 6])
  monkeypatch.setattr(gallery_lib, "WRITE_BLOCK", 2)
  asked = []
  read = g.thumbs
  monkeypatch.setattr(g, "thumbs", lambda ids: asked.append(len(ids)) or read(ids))
  assert g.compact() == {"dropped": 2, "size": 6}
  assert max(asked) == 2 and sum(asked) == 6
  live = np.array([0, 2, 3, 4, 5, 7])
  again = Gallery.open(tmp_path / "g")
  np.testing.assert_array_equal(again.thumbs(live), thumbs[live])
  assert again.verify()["thumbnail_chunks"] == 1


def test_gallery_reads_thumbnail_chunks_of_the_earlier_npz_layout(tmp_path):
  g = Gallery.create(tmp_path / "g", dim=4, thumb_size=8, descriptor="x", backend="exact")
  thumbs = np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)
  g.add(np.eye(4, dtype=np.float32)[:2], thumbs, ["a", "b"], ["sa", "sb"])
  g.save()
  folder = tmp_path / "g" / "thumbs"
  for path in folder.iterdir():
    path.unlink()
  np.savez(folder / "chunk-00000000000000000001.npz", ids=np.array([0, 1]), thumbs=thumbs)
  with g.index._meta._conn as db:  # galleries of that layout had no list of chunks
    db.execute("DELETE FROM properties WHERE key = 'thumb_chunks'")
  g.index.save(tmp_path / "g" / "index")
  np.testing.assert_array_equal(Gallery.open(tmp_path / "g").thumbs(np.array([1, 0])), thumbs[::-1])


def test_gallery_lists_its_thumbnail_chunks_with_checksums(tmp_path):
  g = Gallery.create(tmp_path / "g", dim=4, thumb_size=8, descriptor="x", backend="exact")
  rng = np.random.default_rng(0)
  thumbs = rng.integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
  g.add(np.eye(4, dtype=np.float32)[:2], thumbs[:2], ["a", "b"], ["sa", "sb"])
  g.save()
  first = sorted((tmp_path / "g" / "thumbs").iterdir())
  inodes = [p.stat().st_ino for p in first]
  again = Gallery.open(tmp_path / "g", verify=False)
  again.add(np.eye(4, dtype=np.float32)[2:], thumbs[2:], ["c", "d"], ["sc", "sd"])
  again.save()
  assert [p.stat().st_ino for p in first] == inodes  # an append never rewrites a chunk
  assert again.verify()["thumbnail_chunks"] == 2
  opened = Gallery.open(tmp_path / "g")
  np.testing.assert_array_equal(opened.thumbs(np.arange(4)), thumbs)
  data = bytearray(first[1].read_bytes())  # chunk files sort .ids before .thumbs
  data[-1] ^= 1
  first[1].write_bytes(bytes(data))
  Gallery.open(tmp_path / "g")  # opening checks sizes only
  with pytest.raises(IndexCorruptError, match="thumbs.npy: checksum mismatch"):
    opened.verify()
  first[1].write_bytes(bytes(data[:-1]))
  with pytest.raises(IndexCorruptError, match="size"):
    Gallery.open(tmp_path / "g")


def test_heatmap_on_query_follows_alignment():
  """A map in the original's frame lands on the query's pixels via the coordinates."""
  heat = np.zeros((7, 7), np.float32)
  heat[:, :3] = 1.0  # left part of the original edited
  s = 64
  grid = pixel_grid(s, s)
  flipped = grid.copy()
  flipped[..., 1] = (s - 1) - grid[..., 1]  # query = original mirrored
  same = heatmap_on_query(heat, grid, np.ones((s, s), bool), (s, s))
  mirrored = heatmap_on_query(heat, flipped, np.ones((s, s), bool), (s, s))
  assert same[:, :20].mean() > 0.9 and same[:, -20:].mean() < 0.1
  assert mirrored[:, -20:].mean() > 0.9 and mirrored[:, :20].mean() < 0.1


def test_sharded_build_matches_single_gallery(fresh_weights, tmp_path, capsys):
  """N shards built separately (one per host) answer like one gallery over the union.

  Ids differ (each shard gives out its own residue class), so answers are compared by path.
  """
  _images(tmp_path / "db", 7)
  flags = [
      "--descriptor",
      "simprov.test",
      "--comparator",
      "simprov_comparator.test",
      "--no-progress",
      "--backend",
      "exact",
  ]
  assert (
      cli.main(["index", "build", str(tmp_path / "db"), "--index", str(tmp_path / "one"), *flags])
      == 0
  )
  for i in range(3):
    assert (
        cli.main(
            [
                "index",
                "build",
                str(tmp_path / "db"),
                "--index",
                str(tmp_path / "sh"),
                "--shard",
                f"{i}/3",
                *flags,
            ]
        )
        == 0
    )
  capsys.readouterr()
  one, sharded = Gallery.open(tmp_path / "one"), Gallery.open(tmp_path / "sh")
  assert len(sharded.shards) == 3 and len(sharded) == len(one) == 7
  queries = one.index.vectors[:4] + 0.01
  s1, i1 = one.index.search(queries, 5)
  s2, i2 = sharded.index.search(queries, 5)
  paths = lambda g, ids: [[g.index.lookup(i)["path"] for i in row] for row in ids.tolist()]
  assert paths(one, i1) == paths(sharded, i2)
  assert all(int(i) % 3 == n for n, g in enumerate(sharded.shards) for i in g.index.ids)
  np.testing.assert_allclose(s1, s2, rtol=1e-6)
  np.testing.assert_array_equal(one.thumbs(i1[0]), sharded.thumbs(i2[0]))


@pytest.mark.slow
def test_query_reports_each_failure_on_its_own_line(fresh_weights, tmp_path, capsys, monkeypatch):
  paths = _images(tmp_path / "db", 3)
  corrupt = tmp_path / "corrupt.png"
  corrupt.write_bytes(paths[0].read_bytes()[:60])  # a truncated PNG
  flags = ["--descriptor", "simprov.test", "--comparator", "simprov_comparator.test"]
  assert cli.main(_build_args(tmp_path / "db", tmp_path / "idx", flags)) == 0
  capsys.readouterr()
  query = ["query", "--index", str(tmp_path / "idx"), "--out", str(tmp_path / "out"), "--k", "2"]

  rc = cli.main([*query, "--json", str(paths[0]), str(corrupt), str(paths[1]), *flags])
  out, err = capsys.readouterr()
  lines = [json.loads(line) for line in out.splitlines()]
  assert rc == 1 and [l["query"] for l in lines] == [str(paths[0]), str(corrupt), str(paths[1])]
  assert lines[0]["error"] is None and lines[2]["error"] is None
  assert "corrupt.png" in lines[1]["error"] and lines[1]["match"] is None
  assert err.count("\n") == 1 and "corrupt.png" in err

  # Not only unreadable images: any exception while querying one image is
  # that image's failure, and a terminal gets one short line per image.
  from provjax.provenance import report

  real = report.write_query_outputs

  def failing(out_dir, stem, *args, **kwargs):
    if stem.endswith("img1"):
      raise RuntimeError("disk full")
    return real(out_dir, stem, *args, **kwargs)

  monkeypatch.setattr(report, "write_query_outputs", failing)
  monkeypatch.setattr("sys.stdout.isatty", lambda: True)
  rc = cli.main([*query, str(paths[1]), str(paths[2]), *flags])
  out, err = capsys.readouterr()
  first, second = out.splitlines()
  assert rc == 1 and first.startswith(f"{paths[1]}: skipped") and second.startswith(str(paths[2]))
  assert not second.startswith("{") and "->" in second
  assert err.strip() == f"provjax query: skipped {paths[1]}: RuntimeError: disk full"


def test_no_match_draws_no_edit_heatmap(tmp_path):
  from provjax.provenance.engine import QueryResult  # pylint: disable=g-import-not-at-top
  from provjax.provenance.report import write_query_outputs  # pylint: disable=g-import-not-at-top

  image = np.full((40, 60, 3), 90, np.uint8)
  heat = np.ones((40, 60), np.float32)  # the map against an unrelated candidate: not edits
  candidate = {"id": 0, "path": "x.jpg", "score": 0.3, "p_distinct": 0.9}
  result = QueryResult(None, [candidate], heat, np.ones((7, 7)), np.zeros(1), image)
  fields = write_query_outputs(tmp_path, "q", image, result)
  assert fields["match"] is None and fields["heatmap_npy"] is None
  assert not list(tmp_path.glob("*.npy")) and fields["candidates"] == [candidate]

  def colourful(png):  # pixels an overlay colours: the grey query and white panels have none
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int(((rgb.max(-1) - rgb.min(-1)) > 60).sum())

  assert colourful(fields["heatmap_png"]) == 0
  matched = dict(result.__dict__, match={**candidate, "verdict": "benign"})
  fields = write_query_outputs(tmp_path, "m", image, QueryResult(**matched))
  assert np.load(fields["heatmap_npy"]).shape == (40, 60)
  assert colourful(fields["heatmap_png"]) > 40 * 60 // 2
