"""The package layout of DESIGN.md, checked on the source: imports point down only, no cycles.

Every module under provjax/ is parsed with `ast` (nothing is imported), and
every `import` in it counts, the lazy ones inside functions too: a lazy import
still ties the two packages together. Modules found by name at run time
(`provjax.systems.plugins`) are not imports and are not counted.
A node is a top-level module or subpackage of provjax (`provjax/__init__.py`,
the public API, is `__init__`); imports within one node do not matter here.
"""

import ast
import functools
from pathlib import Path

import pytest

PROVJAX = Path(__file__).resolve().parents[1] / "provjax"

# Bottom to top. Each layer may import its own layer and the ones below it,
# except where `_allowed` says otherwise.
METRICS = {"metrics"}
SHARED = {
    "__init__",
    "cards",
    "compile_options",
    "config",
    "data",
    "metrics",
    "models",
    "registry",
    "results",
    "retrieval",
    "timing",
    "torch_convert",
    "torch_format",
    "transforms",
    "viz",
    "weights",
}
TASKS = {"tasks"}
TRAIN = {"train"}
SYSTEMS = {"provenance", "forgery", "attribution", "copydetect", "inpainting"}
RUNNERS = {"cli", "bench", "systems", "leaderboard", "analyze", "export"}


def _node(path: Path) -> str:
  """The top-level module or subpackage `path` belongs to."""
  return path.relative_to(PROVJAX).with_suffix("").parts[0]


def _nodes() -> set[str]:
  """Every top-level module and subpackage on disk."""
  return {_node(p) for p in PROVJAX.rglob("*.py")}


def _targets(tree: ast.AST, module: str, nodes: set[str]) -> set[str]:
  """The provjax nodes the imports anywhere in `tree` (module `module`) point at."""
  found = set()
  for item in ast.walk(tree):
    if isinstance(item, ast.Import):
      names = [alias.name for alias in item.names]
    elif isinstance(item, ast.ImportFrom):
      base = item.module or ""
      if item.level:  # relative: resolve against the importing module's package
        package = module.split(".")[: -item.level]
        base = ".".join(package + ([base] if base else []))
      names = [base] if base != "provjax" else [f"provjax.{a.name}" for a in item.names]
    else:
      continue
    for name in names:
      parts = name.split(".")
      if parts[0] != "provjax":
        continue
      # `import provjax` and `from provjax import __version__` reach the public API.
      found.add(parts[1] if len(parts) > 1 and parts[1] in nodes else "__init__")
  return found


@functools.cache
def _graph() -> dict[str, set[str]]:
  """node -> the other nodes its modules import."""
  nodes = _nodes()
  graph = {node: set() for node in nodes}
  for path in sorted(PROVJAX.rglob("*.py")):
    rel = path.relative_to(PROVJAX).with_suffix("")
    module = ".".join(("provjax",) + rel.parts)
    node = _node(path)
    graph[node] |= _targets(ast.parse(path.read_text(), str(path)), module, nodes) - {node}
  return graph


def _allowed(node: str) -> set[str]:
  """The nodes `node` may import (besides itself)."""
  if node in METRICS:
    return set()
  if node in SHARED:
    return SHARED
  if node in TASKS:
    return SHARED | TASKS
  if node in TRAIN:
    return SHARED | TASKS | TRAIN
  if node == "inpainting":
    # SafePaint is measured against (and red-teams) the zoo's own TruFor detector.
    return SHARED | TASKS | TRAIN | {"forgery"}
  if node in SYSTEMS:
    return SHARED | TASKS | TRAIN  # not each other, not the runners
  if node in RUNNERS:
    return SHARED | TASKS | TRAIN | SYSTEMS | RUNNERS
  raise AssertionError(f"provjax/{node} is in no layer: add it to a layer in {__file__}")


def test_import_resolution():
  source = (
      "import provjax\n"
      "from provjax import transforms, __version__\n"
      "import provjax.models.resnet\n"
      "def f():\n"
      "  from provjax.train import mesh\n"
      "  from . import gallery\n"
      "import numpy\n"
  )
  nodes = {"transforms", "models", "train", "provenance"}
  assert _targets(ast.parse(source), "provjax.provenance.cli", nodes) == {
      "__init__",
      "transforms",
      "models",
      "train",
      "provenance",
  }


@pytest.mark.parametrize("node", sorted(_nodes()))
def test_imports_point_down(node):
  wrong = sorted(_graph()[node] - _allowed(node))
  assert not wrong, f"provjax/{node} imports {wrong}, which it may not (see DESIGN.md, Layout)"


def test_no_import_cycle_between_packages():
  graph = _graph()
  done, path = set(), []

  def visit(node):
    if node in path:
      cycle = path[path.index(node) :] + [node]
      raise AssertionError("import cycle: " + " -> ".join(cycle))
    if node in done:
      return
    path.append(node)
    for target in sorted(graph[node]):
      visit(target)
    path.pop()
    done.add(node)

  for node in sorted(graph):
    visit(node)
