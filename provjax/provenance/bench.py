"""SImProv's sections of `provjax bench` (printed, not asserted).

  models      forward throughput of the descriptors (tiny and r50, batch 16)
  train       train-step median for descriptor tiny / r50 configs, model FLOPs per
              step and the fraction of the matmul ceiling it reaches
  pipeline    grain pipeline images/s (decode + augment + batch) for the descriptor
  retrieval   ScaNN vs exact at 1M x 256 (PERFORMANCE.md recipe) with a sweep
  provenance  end-to-end query latency (search + k=100 comparator re-rank) over
              gallery sizes

`SECTIONS` maps each name to (title, fn); `fn(quick, peak)` returns table rows
for the runner to print, or prints its own table and returns None.
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path
import tempfile
import time

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from provjax.timing import compiled_flops, median_seconds, seconds

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "simprov"


def bench_models(quick: bool, peak: float) -> list[dict]:
  del peak  # forward throughput is reported as is
  import provjax

  rows = []
  for variant in ["tiny"] if quick else ["tiny", "r50"]:
    for dtype in (jnp.float32, jnp.bfloat16):
      model = provjax.create_model(f"simprov.{variant}", dtype=dtype)
      graphdef, state = nnx.split(model)
      s, b = model.image_size, 16
      fwd = jax.jit(lambda st, x: nnx.merge(graphdef, st)(x))
      x = jnp.asarray(np.random.default_rng(0).random((b, s, s, 3), np.float32))
      sec = median_seconds(lambda: fwd(state, x).block_until_ready(), repeats=3 if quick else 5)
      flops = compiled_flops(fwd.lower(state, x).compile())
      rows.append(
          {
              "model": f"simprov.{variant}",
              "dtype": jnp.dtype(dtype).name,
              "batch": b,
              "images/s": b / sec,
              "GFLOP/s": flops / sec / 1e9,
          }
      )
  return rows


def bench_train(quick: bool, peak: float) -> list[dict]:
  from provjax import tasks
  from provjax.config import load_config
  from provjax.train import mesh as mesh_lib
  from provjax.train import state as state_lib

  rows = []
  for arg, batch in [("tiny", 32)] if quick else [("tiny", 32), ("r50", 8)]:
    config = load_config(f"{CONFIGS}/descriptor.py:{arg}", [f"train.batch_size={batch}"])
    task = tasks.get(config.task)
    mesh = mesh_lib.make_mesh(tuple(config.mesh.shape))
    graphdef, state, frozen = state_lib.build_state(config, task, mesh)
    sharding = jax.tree.map(lambda x: x.sharding, state)
    step = state_lib.make_train_step(graphdef, task, config, sharding, frozen)
    s, v = config.data.image_size, config.data.npos
    views = np.random.default_rng(0).integers(0, 255, (batch, v, s, s, 3), dtype=np.uint8)
    with jax.set_mesh(mesh):
      b = mesh_lib.shard_batch({"views": views}, mesh)
      flops = compiled_flops(step.lower(state, b, jnp.int32(0)).compile())
      holder = {"state": state}

      def run():
        holder["state"], m = step(holder["state"], b, jnp.int32(0))
        jax.block_until_ready(m)

      sec = median_seconds(run, repeats=3 if (quick or arg == "r50") else 10)
    rows.append(
        {
            "config": f"descriptor:{arg}",
            "images/step": batch * v,
            "step ms": 1e3 * sec,
            "GFLOP/step": flops / 1e9,
            "GFLOP/s": flops / sec / 1e9,
            "of peak": flops / sec / 1e9 / peak,
        }
    )
  return rows


def bench_pipeline(quick: bool, peak: float) -> list[dict]:
  del peak  # data throughput, not compute
  from provjax.config import load_config
  from provjax.data import pipeline
  from provjax.tasks import simprov_descriptor as descriptor

  config = load_config(f"{CONFIGS}/descriptor.py:tiny")
  src = descriptor._source(config, "train")  # pylint: disable=protected-access
  map_fn = functools.partial(
      descriptor.make_views, npos=config.data.npos, size=config.data.image_size
  )
  ds = pipeline.make_dataset(src, seed=0, batch_size=config.train.batch_size, map_fn=map_fn)
  ips = pipeline.images_per_second(ds, 3 if quick else 10)
  return [
      {
          "pipeline": "descriptor:tiny (decode + manipulate + 4 benign views)",
          "originals/s": ips,
          "views/s": ips * config.data.npos,
      }
  ]


def bench_retrieval(quick: bool, peak: float) -> None:
  del peak  # search speed is compared with exact search, not with the ceiling
  from provjax.provenance import bench_retrieval as retrieval

  retrieval.run(n=100_000 if quick else 1_000_000, sweep=not quick)


def bench_provenance(quick: bool, peak: float) -> list[dict]:
  """Query latency: descriptor + ScaNN top-k + comparator on k=100 pairs + heatmap."""
  del peak  # latency, not compute
  import provjax
  from provjax.provenance.bench_retrieval import clustered_data
  from provjax.provenance.engine import Engine
  from provjax.provenance.gallery import Gallery

  rows = []
  descriptor = provjax.create_model("simprov.tiny")
  comparator = provjax.create_model("simprov_comparator.tiny")
  s = comparator.image_size
  rng = np.random.default_rng(0)
  image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
  for n in [10_000] if quick else [10_000, 100_000]:
    db, _ = clustered_data(n, 256, 1, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
      gallery = Gallery.create(tmp, dim=256, thumb_size=s, descriptor="random")
      thumbs = rng.integers(0, 255, (n, s, s, 3), dtype=np.uint8)
      gallery.add(db, thumbs, [f"img{i}" for i in range(n)], [None] * n)
      engine = Engine(gallery, descriptor, comparator, k=100)
      one = seconds(lambda: engine.query(image), repeats=5 if quick else 20, warmup=2)
      search = median_seconds(lambda: gallery.index.search(db[:1], 100), repeats=20)
      batch = [image] * (10 if quick else 100)
      many = median_seconds(lambda: engine.query_many(batch), repeats=1 if quick else 3)
    rows.append(
        {
            "gallery": n,
            "k": 100,
            "query ms (median)": 1e3 * np.median(one),
            "query ms (p95)": 1e3 * np.percentile(one, 95),
            "of which search ms": 1e3 * search,
            f"{len(batch)} batched queries/s": len(batch) / many,
        }
    )
  return rows


def bench_build(quick: bool, peak: float) -> list[dict]:
  """`index build` images/s over folders of procedural JPEGs (writing them is not timed)."""
  del peak  # throughput of decode + describe + commit, not a fraction of the matmul ceiling
  import provjax
  from PIL import Image

  from provjax.data import synthetic
  from provjax.provenance.build import build_gallery
  from provjax.provenance.engine import Describer

  describer = Describer(provjax.create_model("simprov.tiny"))
  rows = []
  for n in [500] if quick else [10_000, 100_000]:
    with tempfile.TemporaryDirectory() as tmp:
      folder = Path(tmp) / "images"
      folder.mkdir()
      for i, (_, image) in enumerate(synthetic.generate_images("gallery", n, 256, seed=3)):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=90)
        (folder / f"{i:07d}.jpg").write_bytes(buf.getvalue())
      start = time.perf_counter()
      with open(os.devnull, "w") as quiet:
        summary = build_gallery(
            folder,
            Path(tmp) / "gallery",
            describer=describer,
            descriptor_name="bench",
            thumb_size=64,
            progress=False,
            log=quiet,
        )
      sec = time.perf_counter() - start
    rows.append(
        {
            "files": n,
            "added": summary["added"],
            "cores": os.cpu_count(),
            "s": sec,
            "files/s": n / sec,
        }
    )
  return rows


SECTIONS = {
    "build": ("provenance index build (256 px procedural JPEGs, tiny descriptor)", bench_build),
    "models": ("models (forward)", bench_models),
    "train": ("train step (synthetic batch, data excluded)", bench_train),
    "pipeline": ("grain pipeline", bench_pipeline),
    "retrieval": ("retrieval", bench_retrieval),
    "provenance": ("provenance query latency (tiny models)", bench_provenance),
}
