"""The command line: help, model listing, configs and overrides, exit codes."""

import argparse

import pytest

import provjax
from provjax import cli
from provjax.config import apply_override, load_config

DESC = "configs/simprov/descriptor.py"


def test_help_lists_every_command(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  for command in (
      "models",
      "train",
      "eval",
      "bench",
      "index",
      "query",
      "demo",
      "detect",
      "inpaint",
      "analyze",
      "leaderboard",
      "export",
  ):
    assert command in out
  # Every system package exists now, so the help announces none as planned.
  assert "planned" not in out


def test_models_lists_zoo(capsys):
  assert cli.main(["models"]) == 0
  names = capsys.readouterr().out.split()
  assert {
      "simprov.tiny",
      "simprov.r50",
      "simprov_comparator.tiny",
      "simprov_comparator.r50",
  } <= set(names)
  assert names == provjax.list_models()


def test_bad_arguments_exit_2(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["train", "--workdir", "x"])  # --config missing
  assert e.value.code == 2
  assert cli.main(["train", "--config", "nope.py", "--workdir", "x"]) == 2
  assert (
      cli.main(["train", "--config", f"{DESC}:tiny", "--workdir", "x", "--config.train.stepz=3"])
      == 2
  )
  assert "unknown config key" in capsys.readouterr().err


def test_config_variants_and_overrides():
  c = load_config(f"{DESC}:r50", ["train.steps=7", "optimizer.lr=1", "mesh.shape=(4, 2)"])
  assert c.model.name == "simprov.r50" and c.data.image_size == 224
  assert c.train.steps == 7 and c.optimizer.lr == 1.0 and tuple(c.mesh.shape) == (4, 2)
  with pytest.raises(KeyError):
    apply_override(c, "train.nothing=1")


def test_unknown_model_names_are_clear():
  with pytest.raises(ValueError, match="unknown architecture"):
    provjax.create_model("nosuch.tiny")
  with pytest.raises(ValueError, match="unknown simprov variant"):
    provjax.create_model("simprov.huge")
  with pytest.raises(ValueError, match="no released weights"):
    provjax.load("simprov.not-a-tag")


def _subparser(parser, *path):
  """The parser of `provjax <path...>`, reached through argparse's subparser actions."""
  for name in path:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parser = action.choices[name]
  return parser


@pytest.mark.parametrize(
    "command", [("query",), ("index", "build"), ("index", "stats"), ("index", "compact"), ("demo",)]
)
def test_every_flag_has_help(command):
  parser = _subparser(cli.build_parser(), *command)
  for action in parser._actions:
    assert action.help, f"provjax {' '.join(command)}: {action.dest} has no help"


def test_query_help_documents_the_json_fields(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["query", "--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  for field in ("query", "match", "candidates", "heatmap_png", "heatmap_npy", "error", "--json"):
    assert field in out


def test_query_bad_arguments_exit_2(tmp_path, capsys):
  img = str(tmp_path / "a.png")
  assert cli.main(["query", img, "--index", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
  assert "none" in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:
    cli.main(["query", img, "--index", str(tmp_path), "--out", str(tmp_path), "--k", "0"])
  assert e.value.code == 2
  assert "at least 1" in capsys.readouterr().err


def test_boolean_overrides_accept_true_and_false_in_any_case():
  config = load_config(DESC)
  apply_override(config, "train.allow_config_change=true")
  assert config.train.allow_config_change is True
  apply_override(config, "train.allow_config_change=FALSE")
  assert config.train.allow_config_change is False
