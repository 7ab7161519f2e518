"""Model cards written from measurements only, one writer for every system.

A card is rendered from a `Card`: the measured metrics and tables, the
training config, a data description, the training log and the machine (read
from the machine, never typed). The fixed sentences of the template state no
figure; every number in a card comes from those inputs, and `metrics.json`
beside the card keeps the same figures as rows for leaderboards.

    card = cards.Card(name="simprov.synth-v2", summary=..., ...)
    cards.write(folder, card)   # model_card.md + metrics.json
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path
import platform
import re


def machine() -> dict:
  """What this process runs on, read from the machine (CPU, cores, memory, JAX devices)."""
  import jax  # pylint: disable=g-import-not-at-top

  info = {
      "cpu": _cpuinfo_field("model name") or platform.processor() or platform.machine(),
      "cores": os.cpu_count(),
      "memory_gib": _meminfo_gib(),
      "platform": platform.platform(terse=True),
      "python": platform.python_version(),
      "jax": jax.__version__,
      "backend": jax.default_backend(),
      "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
  }
  return {k: v for k, v in info.items() if v is not None}


def _cpuinfo_field(name: str) -> str | None:
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith(name):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return None


def _meminfo_gib() -> float | None:
  try:
    for line in Path("/proc/meminfo").read_text().splitlines():
      if line.startswith("MemTotal:"):
        return round(int(line.split()[1]) / 2**20, 1)
  except OSError:
    pass
  return None


@dataclasses.dataclass
class Card:
  """Everything a card says. Only `metrics`, `tables`, `findings` and `config` carry figures."""

  name: str  # arch.tag
  summary: str  # what the model is and does (no figures)
  arch: str  # arch.variant
  config_spec: str  # configs/<system>/<exp>.py:variant
  config: dict  # the training config as it was run
  steps: int
  data: str  # where the training data came from (no figures beyond the config's)
  # section title -> {metric: value}, each measured by the release run
  metrics: dict[str, dict[str, float]]
  # title -> (one-line description of how it was measured, rows of {column: value})
  tables: dict[str, tuple[str, list[dict]]] = dataclasses.field(default_factory=dict)
  # sentences computed from the measurements by the caller (e.g. the weakest family)
  findings: list[str] = dataclasses.field(default_factory=list)
  training_log: list[dict] = dataclasses.field(default_factory=list)  # eval lines of metrics.jsonl
  machine: dict = dataclasses.field(default_factory=machine)
  date: str = dataclasses.field(default_factory=lambda: datetime.date.today().isoformat())


def fmt(value) -> str:
  """How every figure of a card is printed (3 decimals for fractions)."""
  if isinstance(value, bool) or value is None:
    return "-" if value is None else str(value)
  if isinstance(value, float):
    if 0 < abs(value) < 0.01:
      return f"{value:.2g}"  # an operating point like 0.0021 keeps its digits
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
  return str(value)


def _table(rows: list[dict]) -> str:
  cols = list(dict.fromkeys(c for r in rows for c in r))
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
  return "\n".join(lines)


def _optimizer(opt: dict) -> str:
  """ "adamw lr 0.002 (cosine)", leaving out what the config does not say."""
  text = " ".join(str(p) for p in (opt.get("name"), "lr", opt.get("lr")) if p is not None)
  return f"{text} ({opt['schedule']})" if opt.get("schedule") else text


def render(card: Card) -> str:
  """The model card as Markdown."""
  cfg = card.config
  opt, train = cfg.get("optimizer", {}), cfg.get("train", {})
  m = card.machine
  out = [
      f"# Model card: {card.name}",
      "",
      card.summary,
      "",
      f"- Architecture: `{card.arch}`.",
      f"- Training: `provjax train --config {card.config_spec}`; {card.steps} steps, batch "
      f"{train.get('batch_size')}, {_optimizer(opt)}, seed {cfg.get('seed')}.",
      f"- Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB; "
      f"{m.get('devices')} ({m.get('backend')}); jax {m.get('jax')}, Python {m.get('python')}.",
      f"- Data: {card.data}",
      f'- Released {card.date}. Load with `provjax.load("{card.name}")`; the full training '
      "config is in config.json.",
  ]
  for title, values in card.metrics.items():
    out += ["", f"## {title}", _table([{"metric": k, "value": v} for k, v in values.items()])]
  for title, (how, rows) in card.tables.items():
    out += ["", f"## {title}", how, "", _table(rows)]
  if card.training_log:
    out += ["", "## Held-back evaluation during training", _table(card.training_log)]
  if card.findings:
    out += ["", "## Findings and limits (from the figures above)"]
    out += [f"- {f}" for f in card.findings]
  return "\n".join(out) + "\n"


def rows(card: Card) -> list[dict]:
  """The card's figures as flat rows (model, tag, section, metric, value)."""
  arch, _, tag = card.name.partition(".")
  out = []
  for section, values in card.metrics.items():
    out += [
        dict(model=arch, tag=tag, section=section, metric=k, value=v) for k, v in values.items()
    ]
  for section, (_, table) in card.tables.items():
    for row in table:
      key = next(iter(row.values()))
      for k, v in list(row.items())[1:]:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
          out.append(dict(model=arch, tag=tag, section=section, metric=f"{key}/{k}", value=v))
  return out


def write(folder: str | Path, card: Card) -> None:
  """model_card.md and metrics.json into `folder` (the caller swaps the folder in atomically)."""
  folder = Path(folder)
  (folder / "model_card.md").write_text(render(card))
  record = {
      "name": card.name,
      "date": card.date,
      "machine": card.machine,
      "rows": rows(card),
      "training_log": card.training_log,
  }
  (folder / "metrics.json").write_text(json.dumps(record, indent=1) + "\n")


NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?")


def numbers(text: str) -> set[str]:
  """Every figure in a text, as written (used to check a card invents none)."""
  return set(NUMBER.findall(text))


# ------------------------------------------------------- cards -> results rows ---

_CELL_NUMBER = re.compile(r"^-?(?:\d+(?:\.\d+)?(?:e-?\d+)?|inf)$")


def tables(text: str) -> list[tuple[str, list[dict[str, str]]]]:
  """Every table of a rendered card: (its section title, rows of {column: cell text})."""
  found, section, header = [], "", None
  for line in text.splitlines():
    if line.startswith("## "):
      section, header = line[3:].strip(), None
    elif line.startswith("|") and header is None:
      header = [c.strip() for c in line.strip("|").split("|")]
      found.append((section, []))
    elif line.startswith("|---"):
      continue
    elif line.startswith("|"):
      cells = [c.strip() for c in line.strip("|").split("|")]
      found[-1][1].append(dict(zip(header, cells)))
    else:
      header = None
  return found


def split_of(section: str) -> str:
  """Which data a card section's figures were measured on, from how the card titles it."""
  title = section.lower()
  if title.startswith("val") or "validation" in title or "during" in title:
    return "val"
  if title.startswith("training"):
    return "train"
  if title in ("benchmark", "benchmark setup", "evaluation", "data") or "setup" in title:
    return "setup"
  return "test"


def figures(text: str) -> list[dict]:
  """A rendered card's figures as {split, metric, value}, one per numeric table cell.

  `metric` is `<section>: <row key>/<column>`; a metric/value table keys by
  its metric. A row's key is its non-numeric cells joined by `/` (empty ones
  left out); where those do not tell the rows apart (a setting given as a
  number, e.g. how many candidates a matcher re-scores), numeric columns join
  the key from the left until they do. `-` cells (not measured) are not figures.
  """
  out = []
  for section, rows in tables(text):
    keys = _key_columns(rows)
    for row in rows:
      key = "/".join(row[c] for c in keys if row[c])
      for column, cell in row.items():
        if column in keys or not _is_number(cell):
          continue
        name = key if column == "value" else f"{key}/{column}"
        out.append(dict(split=split_of(section), metric=f"{section}: {name}", value=float(cell)))
  return out


def _key_columns(rows: list[dict[str, str]]) -> list[str]:
  columns = list(rows[0]) if rows else []
  keys = [c for c in columns if not any(_is_number(r[c]) for r in rows)]
  for column in columns:
    if len({tuple(r[c] for c in keys) for r in rows}) == len(rows):
      break
    if column not in keys:
      keys = [c for c in columns if c in keys or c == column]
  return keys


def _is_number(cell: str) -> bool:
  return bool(_CELL_NUMBER.match(cell))
