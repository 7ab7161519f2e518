"""SImProv's sections of `provjax bench` (printed, not asserted).

  models      descriptor forwards (tiny and r50, batch 16): as trained, bf16, and the
              inference form the engine runs (BatchNorm folded, compile_options)
  train       train-step median for descriptor tiny / r50 configs, model FLOPs per
              step and the fraction of the matmul ceiling it reaches
  pipeline    grain pipeline images/s (decode + augment + batch) for the descriptor
  retrieval   ScaNN vs exact at 1M x 256 (PERFORMANCE.md recipe) with a sweep
  provenance  end-to-end query latency (search + k=100 comparator re-rank), tiny and
              small models, over gallery sizes

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
  """Descriptor forwards as trained (f32, bf16) and in the engine's inference form."""
  del peak  # forward throughput is reported as is
  import provjax
  from provjax import compile_options
  from provjax.models import resnet

  rows = []
  for variant in ["tiny"] if quick else ["tiny", "r50"]:
    forms = [
        ("f32", jnp.float32, False),
        ("bf16", jnp.bfloat16, False),
        ("f32 folded + compile_options", jnp.float32, True),
    ]
    for form, dtype, inference in forms:
      model = provjax.create_model(f"simprov.{variant}", dtype=dtype)
      if inference:
        model = resnet.fold_batch_norm(model)
      options = compile_options.compiler_options() if inference else {}
      graphdef, state = nnx.split(model)
      s, b = model.image_size, 16
      fwd = jax.jit(lambda st, x: nnx.merge(graphdef, st)(x), compiler_options=options)
      x = jnp.asarray(np.random.default_rng(0).random((b, s, s, 3), np.float32))
      sec = median_seconds(lambda: fwd(state, x).block_until_ready(), repeats=3 if quick else 5)
      flops = compiled_flops(fwd.lower(state, x).compile())
      rows.append(
          {
              "model": f"simprov.{variant}",
              "form": form,
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
            # What the grain pipeline must deliver to keep up (`pipeline` section).
            "originals/s": batch / sec,
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
  workers, rows = config.data.num_workers, []
  for how, kw in [("2 threads", {}), (f"{workers} worker processes", {"num_workers": workers})]:
    ips = pipeline.images_per_second(ds, 4 if quick else 20, **kw)
    rows.append(
        {
            "pipeline": "descriptor:tiny (decode + manipulate + 4 benign views)",
            "made by": how,
            "originals/s": ips,
            "views/s": ips * config.data.npos,
        }
    )
  return rows


def bench_retrieval(quick: bool, peak: float) -> None:
  del peak  # search speed is compared with exact search, not with the ceiling
  from provjax.provenance import bench_retrieval as retrieval

  retrieval.run(n=100_000 if quick else 1_000_000, sweep=not quick)


def bench_provenance(quick: bool, peak: float) -> list[dict]:
  """Query latency: descriptor + ScaNN top-k + comparator on k=100 pairs + heatmap.

  Each gallery is built on disk (random unit descriptors on the PERFORMANCE.md
  clusters, random thumbnails, added 50,000 at a time as a sync would), saved,
  and opened again as `provjax query` opens it, so the resident memory is that
  of a served gallery: vectors and ScaNN in RAM, thumbnails memory-mapped.
  """
  del peak  # latency, not compute
  import provjax
  from provjax.provenance.engine import Engine
  from provjax.provenance.gallery import Gallery

  image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
  # small's 128 px thumbnails take 48 KiB an entry: 1M of them would be 49 GB
  # written for a figure that differs from 100k's by the search alone.
  plan = (
      [("tiny", [10_000])]
      if quick
      else [("tiny", [10_000, 100_000, 1_000_000]), ("small", [10_000, 100_000])]
  )
  rows = []
  for variant, n in [(v, n) for v, sizes in plan for n in sizes]:
    descriptor = provjax.create_model(f"simprov.{variant}")
    comparator = provjax.create_model(f"simprov_comparator.{variant}")
    with tempfile.TemporaryDirectory() as tmp:
      build_s = _random_gallery(tmp, n, comparator.image_size)
      resident = _opened_resident_mib(tmp)
      gallery = Gallery.open(tmp)
      engine = Engine(gallery, descriptor, comparator, k=100)
      one = seconds(lambda: engine.query(image), repeats=5 if quick else 20, warmup=2)
      probe = gallery.index.vectors[:1].copy()
      search = median_seconds(lambda: gallery.index.search(probe, 100), repeats=20)
      batch = [image] * (10 if quick else 100)
      many = median_seconds(lambda: engine.query_many(batch), repeats=1 if quick else 3)
      disk = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
      del engine, gallery
    rows.append(
        {
            "models": variant,
            "gallery": n,
            "k": 100,
            "query ms (median)": 1e3 * np.median(one),
            "query ms (p95)": 1e3 * np.percentile(one, 95),
            "of which search ms": 1e3 * search,
            f"{len(batch)} batched queries/s": len(batch) / many,
            "resident MiB (opened)": resident,
            "disk B/entry": disk / n,
            "build + save s": build_s,
        }
    )
  return rows


def _random_gallery(folder: str, n: int, thumb: int, block: int = 50_000) -> float:
  """A saved gallery of `n` random entries, built `block` at a time; returns seconds."""
  from provjax.provenance.bench_retrieval import clustered_data
  from provjax.provenance.gallery import Gallery

  start = time.perf_counter()
  db, _ = clustered_data(n, 256, 1, seed=0)
  gallery = Gallery.create(folder, dim=256, thumb_size=thumb, descriptor="random")
  rng = np.random.default_rng(0)
  for first in range(0, n, block):
    vectors = db[first : first + block]
    thumbs = rng.integers(0, 255, (len(vectors), thumb, thumb, 3), dtype=np.uint8)
    paths = [f"img{first + i}" for i in range(len(vectors))]
    gallery.add(vectors, thumbs, paths, [None] * len(vectors))
  gallery.save()
  return time.perf_counter() - start


_RESIDENT = """
import os, sys
from pathlib import Path
from provjax.provenance.gallery import Gallery
def mib():
  return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
before = mib()
gallery = Gallery.open(sys.argv[1])
print(mib() - before)
"""


def _opened_resident_mib(folder: str) -> float:
  """Resident memory that opening the gallery adds, in a fresh process (Linux /proc):
  this one's heap still holds what building it used."""
  import subprocess
  import sys

  run = subprocess.run([sys.executable, "-c", _RESIDENT, folder], capture_output=True, text=True)
  if run.returncode:
    raise RuntimeError(f"opening {folder} failed: {run.stderr.strip().splitlines()[-1]}")
  return float(run.stdout.strip().splitlines()[-1])


def bench_build(quick: bool, peak: float) -> list[dict]:
  """`index build` images/s over folders of procedural JPEGs (writing them is not timed).

  Then 1 % more files are added and synced again: that append's time is what
  a sync costs per new file at that gallery size (earlier rows are linked,
  not rewritten, and unchanged files are not re-read).
  """
  del peak  # throughput of decode + describe + commit, not a fraction of the matmul ceiling
  import provjax
  from provjax.provenance.engine import Describer

  describer = Describer(provjax.create_model("simprov.tiny"))
  rows = []
  for n in [500] if quick else [10_000, 100_000]:
    with tempfile.TemporaryDirectory() as tmp:
      folder, gallery = Path(tmp) / "images", Path(tmp) / "gallery"
      _write_jpegs(folder, 0, n)
      sync = lambda: _timed_sync(folder, gallery, describer)
      full_s, summary = sync()
      extra = max(100, n // 100)
      _write_jpegs(folder, n, extra)
      append_s, appended = sync()
    rows.append(
        {
            "files": n,
            "added": summary["added"],
            "cores": os.cpu_count(),
            "s": full_s,
            "files/s": n / full_s,
            "append files": appended["added"],
            "append s": append_s,
            "append files/s": extra / append_s,
        }
    )
  return rows


def _write_jpegs(folder: Path, first: int, count: int, distinct: int = 500) -> None:
  """`count` JPEGs numbered from `first`: `distinct` procedural scenes, each copy made
  unique by its number written into a corner in pixels (drawing 100,000 scenes would
  take longer than indexing them)."""
  from PIL import Image

  from provjax.data import synthetic

  folder.mkdir(exist_ok=True)
  hour_ago = time.time() - 3600  # as files copied in earlier: outside the racy window
  scenes = [image for _, image in synthetic.generate_images("gallery", distinct, 256, seed=3)]
  bits = 2 ** np.arange(24)
  for number in range(first, first + count):
    image = scenes[number % distinct].copy()
    code = ((number & bits) > 0).reshape(4, 6).repeat(4, 0).repeat(4, 1)
    image[:16, :24] = 255 * code[..., None].astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=90)
    path = folder / f"{number:07d}.jpg"
    path.write_bytes(buf.getvalue())
    os.utime(path, (hour_ago, hour_ago))


def _timed_sync(folder: Path, gallery: Path, describer) -> tuple[float, dict]:
  from provjax.provenance.build import build_gallery

  start = time.perf_counter()
  with open(os.devnull, "w") as quiet:
    summary = build_gallery(
        folder,
        gallery,
        describer=describer,
        descriptor_name="bench",
        thumb_size=64,
        progress=False,
        log=quiet,
    )
  return time.perf_counter() - start, summary


SECTIONS = {
    "build": ("provenance index build (256 px procedural JPEGs, tiny descriptor)", bench_build),
    "models": ("models (forward)", bench_models),
    "train": ("train step (synthetic batch, data excluded)", bench_train),
    "pipeline": ("grain pipeline", bench_pipeline),
    "retrieval": ("retrieval", bench_retrieval),
    "provenance": ("provenance query latency (tiny and small models)", bench_provenance),
}
