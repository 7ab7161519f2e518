"""`provjax query --distributed`: 2 processes on localhost, each holding one shard, answer
exactly like one gallery over the same files.

Slow: two processes each load the models and compile (about a minute on 2 cores).
"""

import json
import os
from pathlib import Path
import socket
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
from skimage import data

from provjax import cli

pytestmark = pytest.mark.slow

QUERY = "from provjax.cli import main; import sys; sys.exit(main())"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  root = tmp_path_factory.mktemp("distributed")
  (root / "db").mkdir(), (root / "q").mkdir()
  rng = np.random.default_rng(0)
  for i in range(24):
    tile = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(np.kron(tile, np.ones((4, 4, 1), np.uint8))).save(root / "db" / f"p{i}.png")
  for name in ("coffee", "chelsea", "astronaut"):
    Image.fromarray(getattr(data, name)()[::2, ::2]).save(root / "db" / f"{name}.png")
  Image.fromarray(data.coffee()[30:300, 50:450]).save(root / "q" / "crop.jpg")
  Image.fromarray(data.chelsea()[::3, ::3]).save(root / "q" / "small.png")
  (root / "q" / "bad.jpg").write_bytes(b"not an image")
  build = ["index", "build", str(root / "db"), "--backend", "exact", "--no-progress"]
  assert cli.main(build + ["--index", str(root / "one")]) == 0
  for i in range(2):
    assert cli.main(build + ["--index", str(root / "sharded"), "--shard", f"{i}/2"]) == 0
  return root


def _queries(root: Path) -> list[str]:
  return [str(root / "q" / n) for n in ("crop.jpg", "bad.jpg", "small.png")]


def _distributed(root: Path) -> list[subprocess.CompletedProcess]:
  port = _free_port()
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env.pop("XLA_FLAGS", None)
  argv = ["query", *_queries(root), "--index", str(root / "sharded"), "--top", "5"]
  argv += ["--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
  procs = [
      subprocess.Popen(
          [
              sys.executable,
              "-c",
              QUERY,
              *argv,
              "--out",
              str(root / f"out{i}"),
              "--process-id",
              str(i),
          ],
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          text=True,
          env=env,
      )
      for i in range(2)
  ]
  done = []
  for p in procs:
    out, err = p.communicate(timeout=600)
    done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
  return done


def _lines(text: str) -> list[dict]:
  return [json.loads(line) for line in text.splitlines()]


def _answer(record: dict) -> dict:
  """What a query found, without where its pictures were written."""
  return {k: v for k, v in record.items() if k not in ("heatmap_png", "heatmap_npy")}


def _by_path(record: dict) -> list:
  """The answer without ids (one gallery and shards number their entries differently)."""
  match = record["match"] and {k: v for k, v in record["match"].items() if k != "id"}
  candidates = [{k: v for k, v in c.items() if k != "id"} for c in record["candidates"]]
  return [record["query"], match, candidates, record["error"]]


def test_two_processes_answer_like_one_gallery(folders, capsys):
  first, second = _distributed(folders)
  assert (first.returncode, second.returncode) == (1, 1), first.stderr[-2000:]  # bad.jpg
  assert second.stdout == "", "only process 0 prints"
  assert not (folders / "out1").exists(), "only process 0 writes pictures"
  distributed = _lines(first.stdout)
  assert [r["error"] is not None for r in distributed] == [False, True, False]
  assert "bad.jpg" in first.stderr
  # The same shards opened in one process (ShardedGallery): identical answers, ids included.
  argv = ["query", *_queries(folders), "--top", "5", "--json"]
  assert cli.main(argv + ["--index", str(folders / "sharded"), "--out", str(folders / "s")]) == 1
  together = _lines(capsys.readouterr().out)
  assert [_answer(r) for r in distributed] == [_answer(r) for r in together]
  # One gallery over the same files: the same matches, candidates, scores and probabilities.
  assert cli.main(argv + ["--index", str(folders / "one"), "--out", str(folders / "o")]) == 1
  one = _lines(capsys.readouterr().out)
  assert [_by_path(r) for r in distributed] == [_by_path(r) for r in one]
  crop = distributed[0]
  assert crop["candidates"][0]["path"] == str((folders / "db" / "coffee.png").resolve())
  assert Path(crop["heatmap_png"]).is_file()


def test_a_process_without_its_shard_is_a_bad_argument(folders):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  argv = ["query", str(folders / "q" / "crop.jpg"), "--index", str(folders / "one")]
  argv += ["--out", str(folders / "x"), "--distributed", "--coordinator"]
  argv += [f"127.0.0.1:{_free_port()}", "--num-processes", "1", "--process-id", "0"]
  run = subprocess.run(
      [sys.executable, "-c", QUERY, *argv], capture_output=True, text=True, env=env, timeout=300
  )
  assert run.returncode == 2 and "no gallery shard for process 0 of 1" in run.stderr
