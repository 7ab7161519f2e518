"""Model cards state only measured figures: every number traces back to an input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provjax import cards, weights


def _card(**over) -> cards.Card:
  values = dict(
      name="simprov.test-v0",
      summary="A search encoder.",
      arch="simprov.tiny",
      config_spec="configs/simprov/descriptor.py:tiny",
      config={
          "seed": 3,
          "optimizer": {"name": "adamw", "lr": 0.002, "schedule": "cosine"},
          "train": {"batch_size": 32},
      },
      steps=2500,
      data="crops of 4000 originals at 96 px",
      metrics={"Held-back": {"benign_recall@1": 0.6123, "manipulated_recall@1": 0.4}},
      tables={"Families": ("One query per original.", [{"family": "jpeg", "R@1": 0.975}])},
      findings=["Weakest family: jpeg (0.975)."],
      training_log=[{"step": 1000, "benign_recall@1": 0.51}],
      machine={
          "cpu": "Test CPU",
          "cores": 2,
          "memory_gib": 23.4,
          "devices": "1 x cpu",
          "backend": "cpu",
          "jax": "0.10.2",
          "python": "3.11.7",
      },
      date="2026-11-22",
  )
  values.update(over)
  return cards.Card(**values)


def _allowed(card: cards.Card) -> set[str]:
  """Numbers a card may print: those of its inputs, raw or as `cards.fmt` prints them."""
  raw = json.dumps(
      [
          card.name,
          card.arch,
          card.config_spec,
          card.config,
          card.steps,
          card.data,
          card.metrics,
          card.tables,
          card.findings,
          card.training_log,
          card.machine,
          card.date,
      ],
      default=str,
  )
  allowed = cards.numbers(raw)

  def walk(v):
    if isinstance(v, dict):
      for x in v.values():
        walk(x)
    elif isinstance(v, (list, tuple)):
      for x in v:
        walk(x)
    elif isinstance(v, float):
      allowed.update(cards.numbers(cards.fmt(v)))

  walk([card.metrics, card.tables, card.training_log, card.config])
  return allowed


def test_card_prints_only_input_figures():
  card = _card()
  text = cards.render(card)
  assert cards.numbers(text) <= _allowed(card), cards.numbers(text) - _allowed(card)
  assert "0.612" in text and "0.975" in text and "Test CPU, 2 cores, 23.4 GiB" in text
  assert "adamw lr 0.002 (cosine), seed 3" in text


def test_a_figure_nobody_measured_is_caught():
  card = _card(findings=["Small edits under 7 % of the area are missed."])
  assert cards.numbers(cards.render(card)) - _allowed(_card()) == {"7"}


def test_rows_and_metrics_json(tmp_path):
  card = _card()
  cards.write(tmp_path, card)
  record = json.loads((tmp_path / "metrics.json").read_text())
  got = {(r["section"], r["metric"]): r["value"] for r in record["rows"]}
  assert got[("Held-back", "benign_recall@1")] == 0.6123
  assert got[("Families", "jpeg/R@1")] == 0.975
  assert record["machine"]["cores"] == 2


def test_machine_is_read_from_the_machine():
  info = cards.machine()
  assert info["cores"] >= 1 and info["backend"] == "cpu" and info["jax"]


@pytest.mark.parametrize("name", weights.released())
def test_released_cards_state_only_their_measurements(name):
  """Each released card's figures appear in its measured metrics.json or its config.json."""
  folder = weights.root() / name
  text = (folder / "model_card.md").read_text()
  sources = [(folder / f).read_text() for f in ("metrics.json", "config.json")]
  allowed = set().union(*(cards.numbers(s) for s in sources))
  measured = json.loads(sources[0])
  values = [r["value"] for r in measured["rows"]]
  values += [v for line in measured["training_log"] for v in line.values()]
  allowed |= {n for v in values if isinstance(v, float) for n in cards.numbers(cards.fmt(v))}
  for entry in json.loads(sources[1]).get("train_config", {}).values():
    allowed |= cards.numbers(json.dumps(entry))
  allowed |= cards.numbers(name)
  assert cards.numbers(text) <= allowed, sorted(cards.numbers(text) - allowed)
