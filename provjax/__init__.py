"""provjax: a JAX/Flax model zoo for image provenance and forensics.

import provjax
provjax.list_models()                 # ['simprov_comparator.tiny', 'simprov.r50', ...]
model = provjax.create_model("simprov.tiny")
model = provjax.load("simprov.synth-v2")   # released weights in checkpoints/
"""

from provjax import registry
from provjax.registry import create_model

__version__ = "0.1.0"


def list_models(pretrained: bool = False) -> list[str]:
  """All `arch.variant` names, or with pretrained=True all released `arch.tag`s."""
  if pretrained:
    from provjax import weights  # orbax is only imported when weights are asked for

    return weights.released()
  return registry.list_models()


def load(name: str):
  """Load released weights `arch.tag` (see `provjax models --pretrained`)."""
  from provjax import weights

  return weights.load(name)


__all__ = ["create_model", "list_models", "load", "__version__"]
