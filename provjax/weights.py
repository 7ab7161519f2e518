"""Released weights: `checkpoints/<arch>.<tag>/` folders.

Each folder holds
  config.json    - the architecture (`arch.variant`), overrides and the
                   preprocessing that travels with the weights;
  weights/       - the model state (params + batch statistics) as an Orbax
                   checkpoint (written to a temporary path, then renamed);
  model_card.md  - data, steps, config, measured metrics and limits.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil

from flax import nnx
import jax
import orbax.checkpoint as ocp

from provjax import registry


def root() -> Path:
  """Where released weights live: $PROVJAX_CHECKPOINTS or the repo's checkpoints/."""
  env = os.environ.get("PROVJAX_CHECKPOINTS")
  return Path(env) if env else Path(__file__).resolve().parents[1] / "checkpoints"


def released() -> list[str]:
  folder = root()
  if not folder.is_dir():
    return []
  return sorted(p.name for p in folder.iterdir() if (p / "config.json").is_file())


def read_config(name: str) -> dict:
  path = root() / name / "config.json"
  if not path.is_file():
    raise ValueError(
        f"no released weights named {name!r} (looked in {root()}); "
        f"available: {', '.join(released()) or 'none'}"
    )
  return json.loads(path.read_text())


def export(
    model: nnx.Module,
    name: str,
    *,
    arch: str,
    overrides: dict | None = None,
    preprocessing: dict | None = None,
    card: str = "",
    extra: dict | None = None,
) -> Path:
  """Write `checkpoints/<name>/` atomically (temp folder, then rename)."""
  target = root() / name
  tmp = target.with_name(target.name + ".tmp")
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir(parents=True)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save((tmp / "weights").absolute(), nnx.state(model))
  meta = {
      "arch": arch,
      "overrides": overrides or {},
      "preprocessing": preprocessing or {},
      **(extra or {}),
  }
  (tmp / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
  (tmp / "model_card.md").write_text(card)
  if target.exists():
    shutil.rmtree(target)
  tmp.rename(target)
  return target


def load(name: str) -> nnx.Module:
  """Model `arch.tag` with its released weights, in eval mode."""
  meta = read_config(name)
  abstract = nnx.eval_shape(lambda: registry.create_model(meta["arch"], **meta["overrides"]))
  graphdef, abstract_state = nnx.split(abstract)
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
  with ocp.StandardCheckpointer() as ckptr:
    state = ckptr.restore((root() / name / "weights").absolute(), target)
  model = nnx.merge(graphdef, state)
  model.eval()
  return model
