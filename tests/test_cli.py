"""The command line: help, model listing, configs and overrides, exit codes."""

import pytest

import provjax
from provjax import cli
from provjax.config import apply_override, load_config

DESC = "configs/simprov/descriptor.py"


def test_help_lists_commands_and_plan(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  for command in ("models", "train", "eval", "bench", "index", "query", "demo"):
    assert command in out
  assert "planned" in out and "detect" in out


def test_models_lists_zoo(capsys):
  assert cli.main(["models"]) == 0
  names = capsys.readouterr().out.split()
  assert {"simprov.tiny", "simprov.r50", "comparator.tiny", "comparator.r50"} <= set(names)
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
