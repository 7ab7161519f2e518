"""The trainer's task contract: named modules and optimizers, frozen parts, own steps,
init_from, config snapshots, the batch contract and evaluator pictures.

This file is itself a task module (`config.task = "test_task_contract"`): a
two-part model, `body` (Linear + BatchNorm) and `head` (Linear), with
`config.toy.mode` choosing which parts train and how.
"""

from __future__ import annotations

import json

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from provjax import tasks
from provjax.tasks.contract import Field, Optim, check_batch
from provjax.train import trainer
from provjax.train.snapshot import ConfigChangedError

# ------------------------------------------------------------ the toy task ---

SCHEMA = {
    "x": Field(("B", 4), "float32", "inputs"),
    "y": Field(("B", 1), "float32", "regression targets"),
}


class Body(nnx.Module):

  def __init__(self, width: int, rngs: nnx.Rngs):
    self.linear = nnx.Linear(4, width, rngs=rngs)
    self.norm = nnx.BatchNorm(width, rngs=rngs)

  def __call__(self, x, train: bool):
    return jax.nn.relu(self.norm(self.linear(x), use_running_average=not train))


def create_models(config, rngs):
  w = config.toy.width
  return {"body": Body(w, rngs), "head": nnx.Linear(w, 1, rngs=rngs)}


def optimizers(config):
  mode = config.toy.mode
  sgd = optax.sgd(config.optimizer.lr)
  if mode == "frozen_body":  # no optimizer names `body`: the trainer freezes it
    return {"head": Optim("head", sgd)}
  return {"body": Optim("body", optax.adam(config.optimizer.lr)), "head": Optim("head", sgd)}


def loss_fn(models, batch, rng, config):
  del rng, config
  # Training mode everywhere: a frozen body's BatchNorm still computes new
  # statistics, and the trainer must throw them away.
  pred = models["head"](models["body"](batch["x"], train=True))
  loss = jnp.mean(jnp.square(pred - batch["y"]))
  return loss, {"mse": loss}


def _two_phase_step(models, opts, batch, rng, config):
  """Own step: the body minimises the loss, then the head maximises it (GAN-like turns)."""

  # Every module a transformed function calls is passed to it (never closed over).
  def body_loss(body, head):
    return loss_fn({"body": body, "head": head}, batch, rng, config)[0]

  loss_b, grads = nnx.value_and_grad(body_loss)(models["body"], models["head"])
  opts["body"].update(models["body"], grads)

  def head_loss(head, body):
    return -loss_fn({"body": body, "head": head}, batch, rng, config)[0]

  loss_h, grads = nnx.value_and_grad(head_loss)(models["head"], models["body"])
  opts["head"].update(models["head"], grads)
  return {"loss": loss_b, "head_objective": loss_h}


def train_step(models, opts, batch, rng, config):
  if config.toy.mode == "own_step":
    return _two_phase_step(models, opts, batch, rng, config)
  from provjax.train.state import default_step  # pylint: disable=g-import-not-at-top

  return default_step(
      tasks.get("test_task_contract"), optimizers(config), models, opts, batch, rng, config
  )


def train_data(config, *, start_step: int = 0):
  b, step = config.train.batch_size, start_step
  while True:
    rng = np.random.default_rng([config.seed, step])
    x = rng.normal(size=(b, 4)).astype(np.float32)
    y = x.sum(-1, keepdims=True).astype(config.toy.y_dtype)
    yield {"x": x, "y": y}
    step += 1


def evaluate(models, config):
  del config
  w = np.asarray(models["head"].kernel.value)
  return {"head_norm": float(np.linalg.norm(w)), "kernel": np.abs(w) / np.abs(w).max()}


# ------------------------------------------------------------------ helpers ---


def _config(mode="both", **train):
  c = ml_collections.ConfigDict()
  c.task = "test_task_contract"
  c.seed = 0
  c.toy = dict(mode=mode, width=8, y_dtype="float32")
  c.optimizer = dict(name="sgd", lr=0.05, schedule="constant")
  c.train = dict(
      steps=5,
      batch_size=16,
      log_every=1,
      ckpt_every=5,
      keep=2,
      eval_every=0,
      allow_config_change=False,
  )
  c.train.update(train)
  c.init_from = ""
  c.mesh = dict(shape=(1, 1))
  c.sharding_rules = []
  return c


def _pure(module):
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(module)))


def _fresh(config):
  return tasks.get(config.task).create_models(config, nnx.Rngs(config.seed))


def _equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# -------------------------------------------------------------------- tests ---


def test_frozen_module_is_bit_identical_after_5_steps(tmp_path):
  config = _config("frozen_body")
  before = _fresh(config)
  result = trainer.train(config, tmp_path / "run", progress=False)
  assert result.step == 5
  # Parameters *and* BatchNorm statistics of the frozen part, bit for bit.
  assert _equal(_pure(before["body"]), _pure(result.models["body"]))
  assert not _equal(_pure(before["head"]), _pure(result.models["head"]))
  # Control: trained, the same body does move (statistics included).
  both = trainer.train(_config("both"), tmp_path / "both", progress=False)
  moved = _pure(both.models["body"])
  assert not np.array_equal(moved["norm"]["mean"], _pure(before["body"])["norm"]["mean"])


def test_two_optimizers_in_one_own_step(tmp_path):
  config = _config("own_step", steps=3)
  before = _fresh(config)
  result = trainer.train(config, tmp_path / "run", progress=False)
  for part in ("body", "head"):
    assert not _equal(_pure(before[part]), _pure(result.models[part])), part
  metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
  assert len(metrics) == 3 and {"loss", "head_objective"} <= set(metrics[-1])
  # Each optimizer kept its own state: adam's moments over the body, sgd's nothing.
  from provjax.train.checkpoint import Checkpointer

  ckpt = Checkpointer(tmp_path / "run" / "checkpoints")
  saved = ckpt.restore_to_host()
  ckpt.close()
  assert int(saved["opts"]["body"]["step"]) == 3 and int(saved["opts"]["head"]["step"]) == 3
  assert "mu" in json.dumps(jax.tree.map(lambda _: 0, saved["opts"]["body"]))


def test_init_from_workdir_by_prefix_and_shape_mismatch(tmp_path):
  trainer.train(_config("both", steps=2), tmp_path / "a", progress=False)
  source = trainer.train(
      _config("both", steps=2), tmp_path / "a2", progress=False
  ).models  # = run a
  config = _config("frozen_body", steps=0)  # the state as the run starts
  config.init_from = f"{tmp_path / 'a'}:body"
  result = trainer.train(config, tmp_path / "b", progress=False)
  fresh = _fresh(config)
  # body came from run a; head kept this run's own initialisation.
  assert _equal(_pure(result.models["body"]), _pure(source["body"]))
  assert not _equal(_pure(result.models["body"]), _pure(fresh["body"]))
  assert _equal(_pure(result.models["head"]), _pure(fresh["head"]))

  wide = _config("both", steps=1)
  wide.toy.width = 16
  wide.init_from = f"{tmp_path / 'a'}:body"
  with pytest.raises(
      ValueError,
      match=r"shape mismatch at body/linear/bias: \(8,\) in the source, \(16,\) in this run",
  ):
    trainer.train(wide, tmp_path / "d", progress=False)


def test_resume_with_changed_schedule_is_refused(tmp_path):
  trainer.train(_config("both", steps=2), tmp_path / "run", progress=False)
  changed = _config("both", steps=4)
  with pytest.raises(ConfigChangedError, match=r"train.steps: 2 -> 4.*allow_config_change"):
    trainer.train(changed, tmp_path / "run", progress=False)
  changed.train.allow_config_change = True
  assert trainer.train(changed, tmp_path / "run", progress=False).step == 4
  snap = json.loads((tmp_path / "run" / "config.json").read_text())
  assert snap["train"]["steps"] == 4


def test_first_batch_is_checked_against_the_schema(tmp_path):
  config = _config("both")
  config.toy.y_dtype = "float64"
  with pytest.raises(ValueError, match=r"batch\['y'\] is float64, expected float32"):
    trainer.train(config, tmp_path / "run", progress=False)
  good = {"x": np.zeros((2, 4), np.float32), "y": np.zeros((2, 1), np.float32)}
  with pytest.raises(ValueError, match=r"has shape \(2, 4\), expected \(B, 4\) with B=3"):
    check_batch(good, SCHEMA, task="toy", sizes={"B": 3})
  with pytest.raises(ValueError, match="lacks 'y' \\(regression targets\\)"):
    check_batch({"x": good["x"]}, SCHEMA, task="toy")


def test_evaluator_pictures_are_written_beside_metrics(tmp_path):
  config = _config("both", steps=2, eval_every=2)
  trainer.train(config, tmp_path / "run", progress=False)
  records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
  assert any("eval/head_norm" in r for r in records)
  assert (tmp_path / "run" / "eval" / "2" / "kernel.png").is_file()


@pytest.mark.slow  # a training run from released weights (~25 s)
def test_init_from_released_weights_into_the_only_module():
  from provjax import weights
  from provjax.config import load_config
  from provjax.train import init_from, mesh as mesh_lib
  from provjax.train.state import build_state
  from pathlib import Path

  root = Path(__file__).resolve().parents[1]
  config = load_config(f"{root}/configs/simprov/descriptor.py:tiny,quick")
  task = tasks.get(config.task)
  _, state, _ = build_state(config, task, mesh_lib.make_mesh((1, 1)))
  init_from.apply(state, "simprov.synth-v2", log=lambda _: None)
  released = nnx.to_pure_dict(nnx.state(weights.load("simprov.synth-v2")))
  assert _equal(nnx.to_pure_dict(state["models"]["model"]), released)


def test_init_from_released_weights_goes_to_model_beside_loss_parameters():
  """CopyNCE's run holds `model` and the loss's `logit_scale`: released weights go to `model`."""
  from provjax import weights
  from provjax.config import load_config
  from provjax.train import init_from, mesh as mesh_lib
  from provjax.train.state import build_state
  from pathlib import Path

  root = Path(__file__).resolve().parents[1]
  config = load_config(f"{root}/configs/copynce/descriptor.py:tiny,quick")
  task = tasks.get(config.task)
  _, state, _ = build_state(config, task, mesh_lib.make_mesh((1, 1)))
  assert sorted(state["models"]) == ["logit_scale", "model"]
  scale = np.asarray(jax.tree.leaves(nnx.to_pure_dict(state["models"]["logit_scale"]))[0])
  init_from.apply(state, "copynce.synth-v1", log=lambda _: None)
  released = nnx.to_pure_dict(nnx.state(weights.load("copynce.synth-v1")))
  assert _equal(nnx.to_pure_dict(state["models"]["model"]), released)
  after = jax.tree.leaves(nnx.to_pure_dict(state["models"]["logit_scale"]))[0]
  assert np.array_equal(np.asarray(after), scale)


def test_eval_command_appends_the_scalars_as_results_rows(tmp_path, monkeypatch, capsys):
  from provjax import cli, config as config_lib, results

  config = _config("both", steps=2)
  trainer.train(config, tmp_path / "run", progress=False)
  monkeypatch.setattr(config_lib, "load_config", lambda spec, overrides: config)
  folder = tmp_path / "rows"
  argv = ["eval", "--config", "toy.py", "--checkpoint", str(tmp_path / "run")]
  assert cli.main(argv + ["--results", str(folder)]) == 0
  printed = json.loads(capsys.readouterr().out)
  rows = results.read(folder, "test_task_contract")
  assert rows and {(r["model"], r["tag"], r["split"]) for r in rows} == {
      ("test_task_contract", "run@2", "test")
  }
  assert {r["metric"]: r["value"] for r in rows} == {
      k: v for k, v in printed.items() if k not in ("checkpoint", "step")
  }
  assert rows[0]["command"].startswith("provjax")
