"""The package as users get it: `pip install .` ships the released weights.

The fast check keeps pyproject.toml's explicit package list complete; the slow
one installs into a fresh virtual environment (dependencies from the package
index or pip's cache, a few minutes) and runs the demo from outside the repo.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess
import sys
import tomllib

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_subpackage():
  # pyproject.toml lists packages by hand (the checkpoints/ mapping rules out
  # `find`): a new subpackage missing there would be absent from installs.
  setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
  on_disk = {
      ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "provjax").rglob("__init__.py")
  }
  listed = set(setuptools["packages"]) - {"provjax.checkpoints", "provjax.zoo_results"}
  assert listed == on_disk, (
      f"pyproject.toml [tool.setuptools] packages: add {sorted(on_disk - listed)}, "
      f"remove {sorted(listed - on_disk)}"
  )
  assert setuptools["package-dir"]["provjax.checkpoints"] == "checkpoints"
  assert setuptools["package-dir"]["provjax.zoo_results"] == "results"


@pytest.mark.slow
def test_fresh_install_runs_the_demo(tmp_path):
  # pip builds in the source folder, and setuptools reuses a stale build/lib
  # there (deleted modules would ship): install from a clean copy instead.
  source = tmp_path / "source"
  shutil.copytree(
      REPO,
      source,
      ignore=shutil.ignore_patterns(
          ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache"
      ),
  )
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  bin_dir = venv / "bin"
  subprocess.run(
      [str(bin_dir / "pip"), "install", "--quiet", str(source)],
      check=True,
      cwd=tmp_path,
      timeout=1800,
  )
  env = {k: v for k, v in os.environ.items() if k != "PROVJAX_CHECKPOINTS"}
  env["JAX_PLATFORMS"] = env.get("JAX_PLATFORMS", "cpu")
  # Run from a folder outside the repo so only the installed copy is found.
  run = subprocess.run(
      [str(bin_dir / "provjax"), "demo", "--out", str(tmp_path / "demo"), "--distractors", "20"],
      cwd=tmp_path,
      env=env,
      capture_output=True,
      text=True,
      timeout=1800,
  )
  assert run.returncode == 0, run.stderr[-2000:]
  assert (tmp_path / "demo" / "report.html").is_file()
  # The zoo's results rows and the papers' numbers ship too: the leaderboard has both.
  board = subprocess.run(
      [str(bin_dir / "provjax"), "leaderboard", "--format", "csv"],
      cwd=tmp_path,
      env=env,
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert board.returncode == 0, board.stderr[-2000:]
  assert "trufor.synth-v1" in board.stdout and "reported in TruFor" in board.stdout
