"""Released weights: `checkpoints/<arch>.<tag>/` folders.

Each folder holds
  config.json    - the architecture (`arch.variant`), overrides and the
                   preprocessing that travels with the weights;
  weights/       - the model state (params + batch statistics) as an Orbax
                   checkpoint;
  model_card.md  - data, steps, config, machine, measured metrics and limits,
                   written by `provjax.cards` from measurements only;
  metrics.json   - the card's figures as rows;
  manifest.json  - sha256 and size of every other file, checked before loading
                   so a truncated download or an edited file fails loudly
                   instead of loading wrong numbers.

A folder is built aside and swapped in by renames, so readers see either the
old complete folder or the new complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
import shutil
import tempfile

from flax import nnx
import jax
import numpy as np
import orbax.checkpoint as ocp

from provjax import cards, registry

MANIFEST = "manifest.json"


class CorruptWeightsError(ValueError):
  """A released-weights folder does not match its manifest."""


def root() -> Path:
  """Where released weights live.

  $PROVJAX_CHECKPOINTS when set; else the `provjax/checkpoints/` package data
  of an installed wheel (pyproject.toml maps the top-level checkpoints/
  there); else the top-level checkpoints/ of a source checkout.
  """
  env = os.environ.get("PROVJAX_CHECKPOINTS")
  if env:
    return Path(env)
  package = Path(__file__).resolve().parent
  installed = package / "checkpoints"
  return installed if installed.is_dir() else package.parent / "checkpoints"


def released() -> list[str]:
  folder = root()
  if not folder.is_dir():
    return []
  # Dot-names are an export's staging or backup folders, never a release.
  return sorted(
      p.name
      for p in folder.iterdir()
      if not p.name.startswith(".") and (p / "config.json").is_file()
  )


def _folder(name: str) -> Path:
  folder = root() / name
  if not (folder / "config.json").is_file():
    raise ValueError(
        f"no released weights named {name!r} (looked in {root()}); "
        f"available: {', '.join(released()) or 'none'}"
    )
  return folder


def read_config(name: str) -> dict:
  return json.loads((_folder(name) / "config.json").read_text())


def file_sha256(path: str | Path) -> str:
  """Hex sha256 of the file at `path`, read in 1 MiB blocks."""
  path = Path(path)
  digest = hashlib.sha256()
  with path.open("rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _listed_files(folder: Path) -> list[str]:
  """Every file of the folder but the manifest, as sorted POSIX relative paths."""
  return sorted(
      p.relative_to(folder).as_posix()
      for p in folder.rglob("*")
      if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST
  )


def write_manifest(folder: str | Path) -> Path:
  """Write `folder/manifest.json`: relative path -> {sha256, size} for each file."""
  folder = Path(folder)
  files = {
      rel: {"sha256": file_sha256(folder / rel), "size": (folder / rel).stat().st_size}
      for rel in _listed_files(folder)
  }
  path = folder / MANIFEST
  tmp = path.with_name(MANIFEST + ".tmp")
  tmp.write_text(json.dumps({"files": files}, indent=2) + "\n")
  os.replace(tmp, path)
  return path


def verify(folder: str | Path) -> None:
  """Raise CorruptWeightsError naming the first file that is missing or differs.

  Files the manifest does not list are ignored: nothing listed refers to them,
  so they cannot change what is loaded.
  """
  folder = Path(folder)
  hint = "re-export or reinstall"
  manifest = folder / MANIFEST
  if not manifest.is_file():
    raise CorruptWeightsError(f"{manifest}: missing; {hint}")
  try:
    files = json.loads(manifest.read_text())["files"]
  except (ValueError, KeyError) as e:
    raise CorruptWeightsError(f"{manifest}: unreadable ({e}); {hint}") from e
  for rel, entry in files.items():
    path = folder / rel
    if not path.is_file():
      raise CorruptWeightsError(f"{path}: missing; {hint}")
    # The size is checked first: it catches truncation without reading the file.
    if path.stat().st_size != entry["size"] or file_sha256(path) != entry["sha256"]:
      raise CorruptWeightsError(f"{path}: sha256 mismatch (corrupted or modified); {hint}")


def _usual_permissions(folder: Path) -> None:
  """What a plain mkdir / open would have given (mkdtemp and mkstemp make them private)."""
  umask = os.umask(0)
  os.umask(umask)
  for path in [folder, *folder.rglob("*")]:
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def swap_in(staged: Path, target: Path) -> None:
  """Replace `target` by `staged` with renames only; the old folder goes last.

  Directories cannot be exchanged atomically, so the old folder is first
  renamed aside (and put back if the second rename fails) rather than deleted:
  at no point is the only complete copy gone.
  """
  _usual_permissions(staged)
  backup = None
  if target.exists():
    backup = staged.with_suffix(".old")  # unique because the staging name is
    target.rename(backup)
  try:
    staged.rename(target)
  except BaseException:
    if backup is not None:
      backup.rename(target)
    raise
  if backup is not None:
    shutil.rmtree(backup)


def params_sha256(model: nnx.Module) -> str:
  """sha256 of the model's state values in tree order: the same weights give the same hash,
  whatever bytes Orbax writes (its files carry timestamps and random names)."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(nnx.state(model)):
    digest.update(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
  return digest.hexdigest()


def export(
    model: nnx.Module,
    name: str,
    *,
    arch: str,
    overrides: dict | None = None,
    preprocessing: dict | None = None,
    card: "cards.Card | None" = None,
    extra: dict | None = None,
    card_text: str | None = None,
) -> Path:
  """Write `checkpoints/<name>/` (weights, config, card, manifest) atomically.

  The card (`provjax.cards.Card`, figures from measurements only) becomes
  model_card.md and metrics.json. `card_text` is a model_card.md written as
  given, for weights no run trained or measured (a conversion into a starting
  point), which `cards.render`'s training and metrics sections would misdescribe.
  """
  if card is not None and card_text is not None:
    raise ValueError("export takes a card or a card_text, not both")
  target = root() / name
  target.parent.mkdir(parents=True, exist_ok=True)
  staged = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=target.parent))
  try:
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save((staged / "weights").absolute(), nnx.state(model))
    meta = {
        "params_sha256": params_sha256(model),
        "arch": arch,
        "overrides": overrides or {},
        "preprocessing": preprocessing or {},
        **(extra or {}),
    }
    (staged / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    if card is not None:
      cards.write(staged, card)
    elif card_text is not None:
      (staged / "model_card.md").write_text(card_text)
    write_manifest(staged)
    swap_in(staged, target)
  except BaseException:
    shutil.rmtree(staged, ignore_errors=True)
    raise
  return target


def load(name: str) -> nnx.Module:
  """Model `arch.tag` with its released weights (checked against the manifest), in eval mode."""
  folder = _folder(name)
  verify(folder)
  meta = json.loads((folder / "config.json").read_text())
  abstract = nnx.eval_shape(lambda: registry.create_model(meta["arch"], **meta["overrides"]))
  graphdef, abstract_state = nnx.split(abstract)
  # Restored onto one local device whatever mesh is active (inside a training run's mesh the
  # abstract shardings name an AbstractMesh, which Orbax cannot place); a caller that wants the
  # weights sharded places them itself.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract_state
  )
  with ocp.StandardCheckpointer() as ckptr:
    state = ckptr.restore((folder / "weights").absolute(), target)
  model = nnx.merge(graphdef, state)
  model.eval()
  return model
