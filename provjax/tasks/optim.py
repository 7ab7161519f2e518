"""Optimizer and learning-rate schedule from `config.optimizer`."""

from __future__ import annotations

import optax


def schedule(cfg, steps: int) -> optax.Schedule:
  """Linear warmup then cosine decay, step decay at fractions, or per-epoch exponential decay."""
  warmup = int(cfg.get("warmup_steps", 0))
  if cfg.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, cfg.lr, max(warmup, 1), max(steps, warmup + 1))
  if cfg.schedule == "step":
    # e.g. lr_steps=[0.6]: lr x 0.1 at 60 % of training (SImProv search encoder).
    bounds = {int(f * steps): 0.1 for f in cfg.get("decay_at", [0.6])}
    return optax.piecewise_constant_schedule(cfg.lr, bounds)
  if cfg.schedule == "exponential":
    # torch StepLR(step_size=1 epoch, gamma): lr x gamma after every epoch (RepMix).
    return optax.exponential_decay(
        cfg.lr,
        transition_steps=max(int(cfg.steps_per_epoch), 1),
        decay_rate=cfg.gamma,
        staircase=True,
    )
  if cfg.schedule == "constant":
    return optax.constant_schedule(cfg.lr)
  raise ValueError(f"unknown schedule {cfg.schedule!r}")


def make_optimizer(cfg, steps: int) -> optax.GradientTransformation:
  """SGD+momentum, Adam or AdamW, with optional global-norm clipping."""
  lr = schedule(cfg, steps)
  wd = cfg.get("weight_decay", 0.0)
  if cfg.name == "sgd":
    tx = optax.chain(
        optax.add_decayed_weights(wd), optax.sgd(lr, momentum=cfg.get("momentum", 0.9))
    )
  elif cfg.name == "adam":
    # torch-style Adam weight decay (L2 added to the gradient), as in the ICN code.
    tx = optax.chain(optax.add_decayed_weights(wd), optax.adam(lr))
  elif cfg.name == "adamw":
    tx = optax.adamw(lr, weight_decay=wd)
  else:
    raise ValueError(f"unknown optimizer {cfg.name!r}")
  if cfg.get("clip_norm"):
    tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), tx)
  return tx
