"""Fixtures shared by test modules."""

import pytest

import provjax
from provjax import weights


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
