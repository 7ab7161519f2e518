"""Fixtures shared by test modules."""

from pathlib import Path

import pytest

import provjax
from provjax import weights


@pytest.fixture(autouse=True)
def results_dir(tmp_path, monkeypatch):
  """Every test's `provjax eval` rows go to its own folder, never into the checkout's results/."""
  folder = tmp_path / "results"
  monkeypatch.setenv("PROVJAX_RESULTS", str(folder))
  return folder


@pytest.fixture(scope="module")
def fresh_weights(tmp_path_factory):
  """Random-init tiny models exported as released weights in a temp folder."""
  root = tmp_path_factory.mktemp("checkpoints")
  mp = pytest.MonkeyPatch()
  mp.setenv("PROVJAX_CHECKPOINTS", str(root))
  try:
    for arch in ("simprov", "simprov_comparator"):
      model = provjax.create_model(f"{arch}.tiny")
      weights.export(
          model, f"{arch}.test", arch=f"{arch}.tiny", preprocessing={"image_size": model.image_size}
      )
    yield root
  finally:
    mp.undo()


def script(name: str):
  """scripts/<name>.py loaded as a module (scripts/ is not a package)."""
  import importlib.util  # pylint: disable=g-import-not-at-top

  path = Path(__file__).resolve().parents[1] / f"scripts/{name}.py"
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def quick_zoo() -> dict:
  """The per-class counts of configs/repmix/repmix.py's `quick` flag."""
  from provjax.config import load_config  # pylint: disable=g-import-not-at-top

  config = Path(__file__).resolve().parents[1] / "configs/repmix/repmix.py"
  return dict(load_config(f"{config}:tiny,quick", []).data.per_class)


@pytest.fixture(scope="session")
def genzoo_data(tmp_path_factory):
  """A small `provjax_genzoo` (the quick config's sizes) prepared once: its TFDS data dir."""
  from provjax.data import genzoo  # pylint: disable=g-import-not-at-top
  from provjax.data.synthetic import prepared_source  # pylint: disable=g-import-not-at-top

  data_dir = tmp_path_factory.mktemp("genzoo_tfds")
  prepared_source(genzoo.builder(data_dir, per_class=quick_zoo()), "train")
  return data_dir
