"""Results rows: every measurement of the zoo, one CSV per benchmark.

A row says which model was measured on which benchmark and split, the metric
and its value, and where it came from (commit, date, machine, the command).
`provjax eval` appends rows to `results/<benchmark>.csv`; release scripts
append the rows their model cards are rendered from; `provjax leaderboard`
reads them back. Appending rewrites the file aside and swaps it in by a
rename under a lock, so a reader never sees half a row and two writers never
lose each other's rows.

    results.append("forgery-synth", [dict(model="trufor", tag="synth-v1",
                   split="test", metric="image_auc", value=0.52)])
    rows = results.read()            # every row under results.root()
"""

from __future__ import annotations

from collections.abc import Iterable
import contextlib
import csv
import datetime
import fcntl
import io
import json
import math
import os
from pathlib import Path
import re
import subprocess
import sys

FIELDS = (
    "model",
    "tag",
    "benchmark",
    "split",
    "metric",
    "value",
    "commit",
    "date",
    "machine",
    "command",
)
# What a caller must give; the rest is filled from this process (`context`).
MEASURED = ("model", "tag", "split", "metric", "value")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def root() -> Path:
  """Where rows are written: $PROVJAX_RESULTS when set, else ./results."""
  return Path(os.environ.get("PROVJAX_RESULTS", "results"))


def released_root() -> Path:
  """The zoo's own rows (the released models' measurements), shipped with the package.

  The `provjax/zoo_results/` package data of an installed wheel (pyproject.toml
  maps the top-level results/ there), else the top-level results/ of a source
  checkout.
  """
  package = Path(__file__).resolve().parent
  installed = package / "zoo_results"
  return installed if installed.is_dir() else package.parent / "results"


def _git(folder: Path, *args: str) -> str | None:
  """A git command's output in `folder`; None outside a checkout or without git."""
  try:
    run = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10, check=True
    )
  except (OSError, subprocess.SubprocessError):
    return None
  return run.stdout.strip()


def _commit() -> str:
  """The source tree's git commit (with `+dirty` when it has local edits), or the version."""
  here = Path(__file__).resolve().parent
  head = _git(here, "rev-parse", "--short=12", "HEAD")
  if not head:
    from provjax import __version__  # pylint: disable=g-import-not-at-top

    return f"provjax-{__version__}"
  dirty = _git(here, "status", "--porcelain", "--untracked-files=no")
  return f"{head}+dirty" if dirty else head


def _machine() -> str:
  """One line: CPU model, cores, and the JAX backend (read from the machine)."""
  from provjax import cards  # pylint: disable=g-import-not-at-top

  return machine_line(cards.machine())


def context(**given) -> dict:
  """commit, date, machine and command for the rows this process writes; `given` ones kept.

  Only what is not given is read (the machine line imports JAX).
  """
  readers = {
      "commit": _commit,
      "date": lambda: datetime.date.today().isoformat(),
      "machine": _machine,
      "command": lambda: " ".join(["provjax", *sys.argv[1:]]),
  }
  return {k: given[k] if given.get(k) else read() for k, read in readers.items()}


def rows_from_metrics(model: str, split: str, metrics: dict) -> list[dict]:
  """{metric: value} of one measurement -> rows (`model` is `arch.tag`).

  Non-numbers and NaN (an undefined figure, e.g. an AUC with one class) are
  left out; an infinite PSNR (an exact fill) is kept as `inf`.
  """
  arch, _, tag = model.partition(".")
  return [
      dict(model=arch, tag=tag or "-", split=split, metric=k, value=v)
      for k, v in metrics.items()
      if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
  ]


@contextlib.contextmanager
def _locked(folder: Path):
  """An exclusive lock on the results folder itself (no lock file left behind)."""
  folder.mkdir(parents=True, exist_ok=True)
  fd = os.open(folder, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    os.close(fd)  # closing releases the lock


def append(
    benchmark: str, rows: Iterable[dict], *, folder: str | Path | None = None, **ctx
) -> Path:
  """Add rows to `<folder>/<benchmark>.csv` atomically; returns the file.

  Each row needs `MEASURED`; commit/date/machine/command default to this
  process's (`context`), or come from `ctx` (a release re-recording an earlier
  measurement passes its own).
  """
  if not _NAME.match(benchmark):
    raise ValueError(f"benchmark names are [A-Za-z0-9_.-]+, got {benchmark!r}")
  base = {**context(**ctx), "benchmark": benchmark}
  new = []
  for row in rows:
    missing = [f for f in MEASURED if row.get(f) in (None, "")]
    if missing:
      raise ValueError(f"a results row needs {', '.join(missing)}: {row}")
    new.append({f: row.get(f, base.get(f)) for f in FIELDS})
  path = Path(folder if folder is not None else root()) / f"{benchmark}.csv"
  with _locked(path.parent):
    old = path.read_text() if path.exists() else ""
    out = io.StringIO()
    writer = csv.DictWriter(out, FIELDS, lineterminator="\n")
    if not old:
      writer.writeheader()
    writer.writerows(new)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(old + out.getvalue())
    os.replace(tmp, path)
  return path


def record(args, benchmark: str, rows: list[dict]) -> Path | None:
  """What `provjax eval` does with its rows: append them (unless `args.no_results`), say where.

  `args` carries the eval parser's `--results DIR` and `--no-results`.
  """
  if args.no_results or not rows:
    return None
  path = append(benchmark, rows, folder=args.results)
  print(f"provjax eval: {len(rows)} rows appended to {path}", file=sys.stderr)
  return path


def read_file(path: str | Path) -> list[dict]:
  """The rows of one results CSV, values as floats."""
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    if tuple(reader.fieldnames or ()) != FIELDS:
      raise ValueError(f"{path}: not a results file (header {reader.fieldnames})")
    return [{**r, "value": float(r["value"])} for r in reader]


def read(folder: str | Path | None = None, benchmark: str | None = None) -> list[dict]:
  """Every row under `folder` (default `root()`), or one benchmark's."""
  folder = Path(folder if folder is not None else root())
  if not folder.is_dir():
    return []
  pattern = f"{benchmark}.csv" if benchmark else "*.csv"
  return [row for path in sorted(folder.glob(pattern)) for row in read_file(path)]


def machine_line(machine: dict) -> str:
  """A card's machine record as the one line rows carry (same form as `context`)."""
  m = machine.get
  return f"{m('cpu')}; {m('cores')} cores; {m('devices')} ({m('backend')})"


# The benchmark each released architecture's card was measured on (its release script's data).
CARD_BENCHMARKS = {
    "simprov": "provenance-synth",
    "simprov_comparator": "provenance-synth",
    "trufor": "forgery-synth",
    "repmix": "attribution-genzoo",
    "genzoo": "genzoo-reconstruction",
    "copynce": "copydetect-synth",
    "copynce_matcher": "copydetect-synth",
    "sscd": "copydetect-synth",
    "safepaint": "inpainting-synth",
    "vgg": "vgg-rotation",
}


def card_rows(name: str, command: str) -> tuple[str, list[dict], dict]:
  """(benchmark, rows, context) of a released model's card: each of its figures, one row.

  The context is the release's own: the date and machine its card records
  and `command` (the release script that measured them); the commit is the
  one that added the card.
  """
  from provjax import cards, weights  # pylint: disable=g-import-not-at-top

  folder = weights.root() / name
  record = json.loads((folder / "metrics.json").read_text())
  arch, _, tag = name.partition(".")
  rows = [
      dict(model=arch, tag=tag, **figure)
      for figure in cards.figures((folder / "model_card.md").read_text())
  ]
  ctx = dict(
      commit=_card_commit(folder),
      date=record["date"],
      machine=machine_line(record["machine"]),
      command=command,
  )
  return CARD_BENCHMARKS[arch], rows, ctx


def _card_commit(folder: Path) -> str:
  """The commit that last changed a card (`unknown` outside a git checkout)."""
  return _git(folder, "log", "-1", "--format=%h", "--", "model_card.md") or "unknown"
