"""Trainer: sharded == unsharded numerics, resume after SIGKILL, NaN guard."""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICK = f"{ROOT}/configs/simprov/descriptor.py:tiny,quick"


def _env(devices: int = 1) -> dict:
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  return env


def _train_cmd(workdir, data_dir, *extra):
  return [
      sys.executable,
      "-m",
      "provjax.cli",
      "train",
      "--config",
      QUICK,
      "--workdir",
      str(workdir),
      "--no-progress",
      f"--config.data.data_dir={data_dir}",
      *extra,
  ]


SHARDING_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    from provjax.config import load_config
    from provjax.train import trainer, mesh as mesh_lib, state as state_lib
    from provjax import tasks
    cfg = load_config(sys.argv[1], [f"data.data_dir={sys.argv[2]}", "train.steps=5",
                                    "train.log_every=1", "train.ckpt_every=100"])
    out = {}
    for shape in [(1, 1), (4, 2)]:
      cfg.mesh.shape = shape
      graphdef, state, _ = state_lib.build_state(cfg, tasks.get(cfg.task), mesh_lib.make_mesh(shape))
      kernel = state["models"]["model"]["backbone"]["stem"]["conv"]["kernel"]
      head = state["models"]["model"]["head"]["kernel"]
      res = trainer.train(cfg, f"{sys.argv[3]}/{shape[0]}x{shape[1]}", progress=False)
      losses = [json.loads(l)["loss"] for l in open(f"{sys.argv[3]}/{shape[0]}x{shape[1]}/metrics.jsonl")]
      out[str(shape)] = dict(losses=losses, stem_spec=str(kernel.value.sharding.spec),
                             head_spec=str(head.value.sharding.spec),
                             n_devices=len(kernel.value.sharding.device_set))
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_sharded_training_matches_single_device(tmp_path):
  """5 steps on a (4, 2) mesh of 8 simulated devices == 5 steps on one device."""
  proc = subprocess.run(
      [sys.executable, "-c", SHARDING_SCRIPT, QUICK, str(tmp_path / "tfds"), str(tmp_path)],
      env=_env(8),
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  single, sharded = out["(1, 1)"], out["(4, 2)"]
  assert len(single["losses"]) == 5
  np.testing.assert_allclose(sharded["losses"], single["losses"], rtol=1e-5)
  # Output channels are annotated `conv_out` -> mapped to the `model` axis.
  assert sharded["stem_spec"] == "P(None, None, None, 'model')"
  assert sharded["head_spec"] == "P(None, 'model')"
  assert sharded["n_devices"] == 8 and single["n_devices"] == 1


def _restore_params(workdir):
  from provjax.config import load_config
  from provjax.train.evaluate import restore_model
  from flax import nnx

  model, step = restore_model(load_config(QUICK), workdir)
  return step, nnx.state(model, nnx.Param)


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
  data_dir = tmp_path / "tfds"
  extra = ["--config.train.steps=16", "--config.train.ckpt_every=2"]
  full = subprocess.run(
      _train_cmd(tmp_path / "full", data_dir, *extra),
      env=_env(),
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert full.returncode == 0, full.stderr[-3000:]

  killed_dir = tmp_path / "killed"
  proc = subprocess.Popen(
      _train_cmd(killed_dir, data_dir, *extra),
      env=_env(),
      stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL,
  )
  deadline = time.time() + 300
  while not (killed_dir / "checkpoints" / "4").exists() and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  steps_before = sorted(
      int(p.name) for p in (killed_dir / "checkpoints").iterdir() if p.name.isdigit()
  )
  assert steps_before and max(steps_before) < 16, steps_before

  resumed = subprocess.run(
      _train_cmd(killed_dir, data_dir, *extra),
      env=_env(),
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resuming" in resumed.stderr

  import jax

  step_a, params_a = _restore_params(tmp_path / "full")
  step_b, params_b = _restore_params(killed_dir)
  assert step_a == step_b == 16
  for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_nan_guard_stops_with_clear_message(tmp_path):
  proc = subprocess.run(
      _train_cmd(
          tmp_path / "nan",
          tmp_path / "tfds",
          "--config.optimizer.lr=1e30",
          "--config.optimizer.clip_norm=0.0",
          "--config.train.steps=6",
      ),
      env=_env(),
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert proc.returncode != 0
  assert "non-finite metrics" in proc.stderr


@pytest.mark.slow
def test_sigterm_saves_and_stops_cleanly(tmp_path):
  workdir = tmp_path / "term"
  proc = subprocess.Popen(
      _train_cmd(
          workdir,
          tmp_path / "tfds",
          "--config.train.steps=100000",
          "--config.train.ckpt_every=1000",
      ),
      env=_env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL,
      text=True,
  )
  deadline = time.time() + 300
  while time.time() < deadline and not (workdir / "metrics.jsonl").exists():
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0
  summary = json.loads(out.strip().splitlines()[-1])
  assert summary["stopped_early"] and 0 < summary["step"] < 100000
  listing = sorted(p.name for p in (workdir / "checkpoints").iterdir())
  saved = [int(name) for name in listing if name.isdigit()]
  assert saved and max(saved) == summary["step"], listing
