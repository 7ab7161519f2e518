"""provjax: a JAX/Flax model zoo for image provenance and forensics.

import provjax
provjax.list_models()                 # ['comparator.tiny', 'simprov.r50', ...]
model = provjax.create_model("simprov.tiny")
model = provjax.load("simprov.synth-v1")   # released weights in checkpoints/
"""

from provjax.registry import create_model, list_models

__version__ = "0.1.0"


def load(name: str):
  """Load released weights `arch.tag` (see `provjax models --pretrained`)."""
  from provjax import weights

  return weights.load(name)


__all__ = ["create_model", "list_models", "load", "__version__"]
