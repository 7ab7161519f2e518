"""The config a work dir was started with (`config.json`), checked on resume.

Resuming a run with another schedule, step count, model or data would
silently produce a model that no config describes; the trainer stops instead
unless `--config.train.allow_config_change=true`. Keys that only change how a
run is watched (logging, checkpoint cadence, threads, paths) may change freely.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax

from provjax.train.init_from import flatten

# Dotted key prefixes that may differ between the snapshot and a resumed run.
MAY_CHANGE = (
    "train.log_every",
    "train.ckpt_every",
    "train.eval_every",
    "train.keep",
    "train.allow_config_change",
    "data.data_dir",
    "data.num_threads",
    "data.num_workers",
    "distributed",
    "eval.",
    "init_from",  # only read at the start of a run
)


class ConfigChangedError(ValueError):
  """A resumed run's config differs from the one its work dir was started with."""


def as_dict(config) -> dict:
  """JSON-safe nested dict of a ConfigDict (tuples become lists)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def write(config, workdir: Path) -> None:
  if jax.process_index() == 0:
    path = Path(workdir) / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(as_dict(config), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def read(workdir) -> "ml_collections.ConfigDict":
  """The config a work dir was started with (its snapshot), as a ConfigDict."""
  import ml_collections  # pylint: disable=g-import-not-at-top

  path = Path(workdir) / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"no config snapshot {path}: not a `provjax train` work dir")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def changes(old: dict, new: dict) -> list[str]:
  """'key: old -> new' for every key that differs and may not change."""
  a, b = flatten(old, sep="."), flatten(new, sep=".")
  out = []
  for key in sorted(set(a) | set(b)):
    if any(key == p or key.startswith(p) for p in MAY_CHANGE):
      continue
    if a.get(key, "<absent>") != b.get(key, "<absent>"):
      out.append(f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}")
  return out


def check_resume(config, workdir: Path) -> None:
  """Raise ConfigChangedError if `config` differs from the work dir's snapshot."""
  path = Path(workdir) / "config.json"
  if not path.is_file() or config.train.get("allow_config_change", False):
    return
  diff = changes(json.loads(path.read_text()), as_dict(config))
  if diff:
    raise ConfigChangedError(
        f"{workdir} was started with another config ({'; '.join(diff)}); resuming would train "
        "a model no config describes. Use a new --workdir, or pass "
        "--config.train.allow_config_change=true to resume anyway."
    )
