"""Distributed provenance serving on one machine: N processes, one gallery shard each.

Writes N shards of random clustered descriptors (256-d) with random thumbnails,
then times `provjax query --distributed`'s engine (a `DistributedGallery`, k = 100
re-ranked by the comparator, random tiny weights) in N local processes, beside the
same shards opened by one process (`ShardedGallery`). Reports per-shard resident
memory and disk bytes per gallery entry, one-query latency and batched QPS:

    python scripts/bench_distributed.py --size 100000 --processes 2
"""

import argparse
import json
import os
from pathlib import Path
import resource
import socket
import subprocess
import sys
import tempfile

import numpy as np


def make_shards(folder: Path, size: int, processes: int, thumb: int) -> None:
  from provjax.provenance.bench_retrieval import clustered_data
  from provjax.provenance.gallery import Gallery, shard_directory

  db, _ = clustered_data(size, 256, 1, seed=0)
  rng = np.random.default_rng(0)
  for i in range(processes):
    rows = db[i::processes]
    gallery = Gallery.create(
        shard_directory(folder, i, processes),
        dim=256,
        thumb_size=thumb,
        descriptor="random",
        shard=(i, processes),
    )
    thumbs = rng.integers(0, 255, (len(rows), thumb, thumb, 3), dtype=np.uint8)
    gallery.add(rows, thumbs, [f"img{i}-{n}" for n in range(len(rows))], [None] * len(rows))
    gallery.save()


def _resident_mib() -> float:
  """This process's resident memory now (Linux /proc)."""
  pages = int(Path("/proc/self/statm").read_text().split()[1])
  return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _du(folder: Path) -> int:
  return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def measure(gallery, queries: int) -> dict:
  """Latency of one query (median, p95) and QPS of `queries` batched queries."""
  import provjax
  from provjax.provenance.engine import Engine
  from provjax.timing import median_seconds, seconds

  descriptor = provjax.create_model("simprov.tiny", seed=0)
  comparator = provjax.create_model("simprov_comparator.tiny", seed=1)
  engine = Engine(gallery, descriptor, comparator, k=100)
  image = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
  one = seconds(lambda: engine.query(image), repeats=20, warmup=2)
  many = median_seconds(lambda: engine.query_many([image] * queries), repeats=2)
  return {
      "query ms (median)": round(1e3 * float(np.median(one)), 1),
      "query ms (p95)": round(1e3 * float(np.percentile(one, 95)), 1),
      f"{queries} batched queries/s": round(queries / many, 2),
  }


def worker(args) -> None:
  from provjax.provenance import distributed

  process = distributed.initialize(args.coordinator, args.processes, args.process_id)
  before = _resident_mib()
  gallery = distributed.DistributedGallery.open(args.folder, process)
  row = {
      "process": process[0],
      "shard entries": len(gallery.local),
      "resident MiB (before the shard)": before,
      "resident MiB (shard open)": _resident_mib(),
      **measure(gallery, args.queries),
  }
  row["resident MiB (peak)"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
  print(json.dumps(row), flush=True)


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--size", type=int, default=100_000, help="gallery entries over all shards")
  p.add_argument("--processes", type=int, default=2)
  p.add_argument("--queries", type=int, default=100)
  p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
  p.add_argument("--coordinator", help=argparse.SUPPRESS)
  p.add_argument("--process-id", type=int, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.worker:
    worker(args)
    return 0
  from provjax.provenance.gallery import Gallery, shard_directory

  with tempfile.TemporaryDirectory() as tmp:
    folder = Path(tmp) / "gallery"
    make_shards(folder, args.size, args.processes, thumb=64)
    shard0 = shard_directory(folder, 0, args.processes)
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    common = [sys.executable, __file__, "--worker", "--folder", str(folder)]
    common += ["--coordinator", f"127.0.0.1:{port}", "--processes", str(args.processes)]
    common += ["--queries", str(args.queries)]
    procs = [
        subprocess.Popen(
            common + ["--process-id", str(i)], stdout=subprocess.PIPE, env=env, text=True
        )
        for i in range(args.processes)
    ]
    rows = [json.loads(proc.communicate()[0].strip().splitlines()[-1]) for proc in procs]
    entries = len(Gallery.open(shard0))
    per_entry = _du(shard0) / entries
    together = measure(Gallery.open(folder), args.queries)
  print(
      json.dumps(
          {
              "gallery": args.size,
              "processes": args.processes,
              "cores": os.cpu_count(),
              "disk bytes per entry (256-d float32 + 64 px thumbnail + metadata)": round(per_entry),
              "distributed": rows,
              "one process, all shards (ShardedGallery)": together,
          },
          indent=1,
      )
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
