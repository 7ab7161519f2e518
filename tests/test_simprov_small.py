"""The `small` SImProv pair (ResNet-18 at 128 px): shapes, sizes and its inference form."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import provjax
from provjax.models import resnet


def params(model) -> int:
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_small_descriptor_is_a_resnet18_at_128_px():
  model = provjax.create_model("simprov.small")
  assert model.image_size == 128
  # torchvision's resnet18 without its fc has 11.18M parameters; + Linear(512, 256).
  assert abs(params(model) - (11_176_512 + 512 * 256 + 256)) < 20_000
  out = nnx.eval_shape(lambda: model(jnp.zeros((2, 128, 128, 3)), train=False))
  assert out.shape == (2, 256)


@pytest.mark.slow  # 47 s on 2 cores; the tiny comparator's folding runs by default
def test_small_comparator_folded_predicts_what_eval_mode_does():
  model = provjax.create_model("simprov_comparator.small")
  assert model.image_size == 128 and model.grid == 7
  rng = np.random.default_rng(0)
  refs, query = (jnp.asarray(rng.random((n, 128, 128, 3)), jnp.float32) for n in (3, 1))
  want = model.predict(refs, query)
  got = resnet.fold_batch_norm(model).predict(refs, query)
  assert want["heatmap"].shape == (3, 7, 7) and want["probs"].shape == (3, 3)
  for key in ("probs", "heatmap", "coords"):
    np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5)
