"""The system packages, and how the runners find what each one plugs in.

A system is a subpackage `provjax.<package>`. It offers commands in its `cli`
module (`add_commands(subparsers)`) and benchmark sections in its `bench`
module (`SECTIONS`); the runners look these up by module name, so a new
system edits no runner. `SYSTEMS` is only what the help says about systems
whose package has not arrived yet.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from types import ModuleType

import provjax

# package -> (its commands, one line on what it does)
SYSTEMS = {
    "provenance": ("index query demo", "SImProv provenance: match, verdict and edit heatmap"),
    "forgery": ("detect", "TruFor forgery map / confidence / integrity score"),
    "attribution": ("attribute", "RepMix generator attribution"),
    "copydetect": ("copydetect", "PixTrace + CopyNCE copy detection (ISC-format CSV)"),
    "inpainting": ("inpaint", "SafePaint anti-forensic inpainting"),
}


def packages() -> list[str]:
  """The subpackages of provjax, sorted; found on disk, none imported."""
  return sorted(info.name for info in pkgutil.iter_modules(provjax.__path__) if info.ispkg)


def planned() -> dict[str, tuple[str, str]]:
  """The `SYSTEMS` entries whose package does not exist yet."""
  present = set(packages())
  return {name: entry for name, entry in SYSTEMS.items() if name not in present}


def plugins(module: str) -> list[ModuleType]:
  """`provjax.<package>.<module>` of every subpackage that has one, in package order."""
  found = []
  for package in packages():
    paths = [os.path.join(root, package) for root in provjax.__path__]
    if any(info.name == module for info in pkgutil.iter_modules(paths)):
      found.append(importlib.import_module(f"provjax.{package}.{module}"))
  return found
