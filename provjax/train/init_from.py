"""`config.init_from`: start a run from another work dir or from released weights.

Forms (a list of them is applied in order):
  "runs/ph1"                      every module of that work dir's latest checkpoint
  "runs/ph1:noiseprint"           only parameters under that path prefix
  "simprov.synth-v2"              released weights into the run's only module, or
                                  into `model` beside other modules (a loss's
                                  learned temperature)
  "/data/ckpt/simprov.dam"        the same, by the path of a released-weights folder
                                  (e.g. one `provjax convert` wrote elsewhere)
  {"source": "trufor.np-v1", "from": "", "to": "noiseprint"}
                                  released weights into the module `noiseprint`
Paths are '/'-joined keys of the models tree ("noiseprint/stem/conv/kernel");
`to` defaults to `from` for a work dir and, for released weights, to the
run's only module or its `model`. Every copied leaf must exist in the run with the same
shape, or the run stops naming the leaf.
"""

from __future__ import annotations

from pathlib import Path

from flax import nnx
import jax
import numpy as np

from provjax.train.checkpoint import Checkpointer


def parse(entry) -> dict:
  """One init_from entry as {source, from, to (None = default)}."""
  if isinstance(entry, str):
    source, _, prefix = entry.partition(":")
    return {"source": source, "from": prefix, "to": None}
  entry = dict(entry)
  return {"source": entry["source"], "from": entry.get("from", ""), "to": entry.get("to")}


def entries(value) -> list[dict]:
  if not value:
    return []
  if isinstance(value, (str, dict)) or hasattr(value, "to_dict"):
    value = [value]
  return [parse(v.to_dict() if hasattr(v, "to_dict") else v) for v in value]


def flatten(tree, prefix: str = "", sep: str = "/") -> dict:
  """Nested dict -> {"a/b/c": leaf}."""
  out = {}
  for key, value in tree.items():
    path = f"{prefix}{sep}{key}" if prefix else str(key)
    if isinstance(value, dict):
      out.update(flatten(value, path, sep))
    else:
      out[path] = value
  return out


def _under(path: str, prefix: str) -> bool:
  return not prefix or path == prefix or path.startswith(prefix + "/")


def source_leaves(source: str) -> tuple[dict[str, np.ndarray], bool]:
  """Flat model leaves of a work dir's latest checkpoint or of released weights.

  Returns (leaves, is_workdir): work-dir leaves are keyed from the module
  name; released-weights leaves from inside the module.
  """
  if _is_released_folder(source):
    source = str(Path(source).resolve())  # weights.load joins root() / source: absolute wins
  elif Path(source).is_dir():
    ckpt = Checkpointer(Path(source) / "checkpoints")
    try:
      if ckpt.latest_step is None:
        raise FileNotFoundError(f"init_from: no checkpoint in {source}/checkpoints")
      tree = ckpt.restore_to_host()
    finally:
      ckpt.close()
    return flatten(tree["models"]), True
  from provjax import weights  # pylint: disable=g-import-not-at-top

  model = weights.load(source)
  return flatten(nnx.to_pure_dict(nnx.state(model))), False


def _is_released_folder(source: str) -> bool:
  """A released-weights folder (config.json + manifest.json), not a work dir, given by path."""
  folder = Path(source)
  return (folder / "config.json").is_file() and (folder / "manifest.json").is_file()


def apply(state, value, *, log=print) -> None:
  """Copy the leaves `config.init_from` names into `state["models"]` (in place)."""
  for entry in entries(value):
    leaves, is_workdir = source_leaves(entry["source"])
    models = state["models"]
    target = entry["to"]
    if target is None:
      if is_workdir:
        target = entry["from"]
      elif len(models) == 1:
        target = next(iter(models))
      elif "model" in models:  # a single-model task beside its loss parameters (logit_scale)
        target = "model"
      else:
        raise ValueError(
            f"init_from {entry['source']!r}: released weights fit one module; say which with "
            f"'to' (one of {sorted(models)})"
        )
    dest = flatten(nnx.to_pure_dict(models))
    picked = {p: v for p, v in leaves.items() if _under(p, entry["from"])}
    if not picked:
      raise ValueError(f"init_from {entry['source']!r}: nothing under {entry['from']!r}")
    updates = {}
    for path, value in picked.items():
      rest = path[len(entry["from"]) :].lstrip("/")
      to = "/".join(p for p in (target, rest) if p)
      if to not in dest:
        raise ValueError(f"init_from {entry['source']!r}: {path} has no place {to!r} in this run")
      if tuple(np.shape(value)) != tuple(np.shape(dest[to])):
        raise ValueError(
            f"init_from {entry['source']!r}: shape mismatch at {to}: "
            f"{tuple(np.shape(value))} in the source, {tuple(np.shape(dest[to]))} in this run"
        )
      updates[to] = value
    _assign(state, {f"models/{p}": v for p, v in updates.items()})
    log(f"provjax: init_from {entry['source']} -> {target or 'all modules'}: {len(updates)} arrays")


def _assign(state, updates: dict[str, np.ndarray]) -> None:
  """Write flat updates into the nnx State, keeping each array's sharding and dtype."""
  pure = nnx.to_pure_dict(state)
  for path, value in updates.items():
    keys, node = path.split("/"), pure
    for key in keys[:-1]:
      node = node[_key(node, key)]
    k = _key(node, keys[-1])
    old = node[k]
    node[k] = jax.device_put(np.asarray(value, dtype=old.dtype), old.sharding)
  nnx.replace_by_pure_dict(state, pure)


def _key(node: dict, key: str):
  """Pure-dict keys may be ints (list indices); paths carry them as text."""
  if key in node:
    return key
  return int(key)
