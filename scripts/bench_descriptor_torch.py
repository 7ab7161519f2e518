"""SImProv ResNet-50 descriptor forward on CPU: JAX beside PyTorch, in one run.

    flock /tmp/bench.lock python scripts/bench_descriptor_torch.py [--repeats 7]

Batch 16 at 224 px, inference only. The JAX rows are
`provjax.create_model("simprov.r50")` as is, with its BatchNorms folded into
the convs (`resnet.fold_batch_norm`), and under the compiler options of
`provjax.compile_options` (`--eigen`: those options on their own
rows); the PyTorch peer is the same network written here in plain torch
(torchvision's bottleneck layout, fc -> Linear(2048, 256), ImageNet
normalisation inside as in the JAX model), eval mode, `inference_mode`, two
threads, no jit or compile: NCHW, channels_last and BatchNorm-fused
(`fuse_conv_bn_eval`) variants, the best of which is the peer.

PyTorch runs in a worker process under another interpreter (`--torch`, default
/work/torchenv/bin/python: the project's environment does not need torch). The
two processes take turns, one timed call of each variant per round, so that
load from elsewhere on the machine falls on both alike; the table gives
medians over the rounds. Weights are random on both sides (same shapes, not
the same values: speed does not depend on them).

This file is also the worker (`--worker`), which imports only torch, numpy and
the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BATCH, SIZE = 16, 224
# Let the other side's worker threads go idle before a timed call starts.
PAUSE_S = 0.3


# ---------------------------------------------------------------- PyTorch worker


def torch_resnet50():
  """torchvision's resnet50 layout (bottleneck, stride on the 3x3), fc -> Linear(2048, 256)."""
  import torch
  from torch import nn

  class Bottleneck(nn.Module):

    def __init__(self, cin: int, width: int, stride: int):
      super().__init__()
      cout = 4 * width
      self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
      self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(width)
      self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
      self.relu = nn.ReLU(inplace=True)
      self.downsample = None
      if stride != 1 or cin != cout:
        self.downsample = nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
        )

    def forward(self, x):
      identity = x if self.downsample is None else self.downsample(x)
      y = self.relu(self.bn1(self.conv1(x)))
      y = self.relu(self.bn2(self.conv2(y)))
      return self.relu(self.bn3(self.conv3(y)) + identity)

  class ResNet50(nn.Module):

    def __init__(self):
      super().__init__()
      self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
      self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
      self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
      self.bn1, self.relu = nn.BatchNorm2d(64), nn.ReLU(inplace=True)
      self.maxpool = nn.MaxPool2d(3, 2, 1)
      blocks, cin = [], 64
      for stage, (depth, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        for b in range(depth):
          blocks.append(Bottleneck(cin, width, 2 if stage and not b else 1))
          cin = 4 * width
      self.blocks = nn.Sequential(*blocks)
      self.fc = nn.Linear(2048, 256)
      for m in self.modules():
        if isinstance(m, nn.Conv2d):  # torchvision's init
          nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
      nn.init.uniform_(self.fc.weight, -0.1, 0.1)
      nn.init.zeros_(self.fc.bias)

    def forward(self, images):
      x = (images - self.mean) / self.std
      x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
      return self.fc(torch.flatten(self.blocks(x).mean((2, 3)), 1))

  return ResNet50().eval()


def fuse_batch_norm(model):
  """Every Conv2d -> BatchNorm2d pair of `model` as one conv (torch's own fusion helper)."""
  from torch import nn
  from torch.nn.utils.fusion import fuse_conv_bn_eval

  for module in list(model.modules()):
    names = [n for n, _ in module.named_children()]
    for conv_name, bn_name in zip(names, names[1:]):
      conv, bn = getattr(module, conv_name), getattr(module, bn_name)
      if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
        setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
        setattr(module, bn_name, nn.Identity())
  return model


def torch_variants() -> dict:
  """name -> zero-argument callable running one batch."""
  import copy

  import torch

  torch.manual_seed(0)
  base = torch_resnet50()
  x = torch.rand(BATCH, 3, SIZE, SIZE)
  cl = lambda m: m.to(memory_format=torch.channels_last)
  xcl = x.contiguous(memory_format=torch.channels_last)
  models = {
      "torch NCHW": (base, x),
      "torch channels_last": (cl(copy.deepcopy(base)), xcl),
      "torch BN-fused channels_last": (cl(fuse_batch_norm(copy.deepcopy(base))), xcl),
  }
  with torch.inference_mode():
    ref = base(x)
    for name, (m, inp) in models.items():
      err = (m(inp) - ref).abs().max().item() / ref.abs().max().item()
      assert err < 1e-4, (name, err)
  return {name: (lambda m=m, inp=inp: m(inp)) for name, (m, inp) in models.items()}


def worker() -> None:
  """Reads variant names on stdin, answers each with the seconds of one call (JSON lines)."""
  import torch

  torch.set_num_threads(2)
  with torch.inference_mode():
    variants = torch_variants()
    for fn in variants.values():
      fn()  # warm-up: oneDNN primitive creation, allocator
    print(json.dumps({"variants": list(variants), "version": torch.__version__}), flush=True)
    for line in sys.stdin:
      fn = variants[line.strip()]
      start = time.perf_counter()
      fn()
      print(json.dumps(time.perf_counter() - start), flush=True)


class TorchPeer:
  """The worker process, driven one timed call at a time."""

  def __init__(self, python: str):
    self.proc = subprocess.Popen(
        [python, os.path.abspath(__file__), "--worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    ready = json.loads(self.proc.stdout.readline() or "null")
    if ready is None:
      raise RuntimeError("the torch worker exited before it was ready (see its stderr above)")
    self.variants, self.version = ready["variants"], ready["version"]

  def time(self, name: str) -> float:
    self.proc.stdin.write(name + "\n")
    self.proc.stdin.flush()
    return json.loads(self.proc.stdout.readline())

  def close(self) -> None:
    self.proc.stdin.close()
    self.proc.wait()


# ---------------------------------------------------------------- JAX side


def jax_variants(eigen: bool) -> dict:
  """name -> (zero-argument callable running one batch, its output) for the JAX rows."""
  from flax import nnx
  import jax
  import jax.numpy as jnp
  import numpy as np

  import provjax
  from provjax import compile_options
  from provjax.models import resnet

  model = provjax.create_model("simprov.r50")
  randomise_batch_norm(model, np.random.default_rng(0))
  folded = resnet.fold_batch_norm(model)
  options = compile_options.compiler_options()
  x = jnp.asarray(np.random.default_rng(0).random((BATCH, SIZE, SIZE, 3), np.float32))
  rows = [("jax f32", model, {}), ("jax f32 folded", folded, {})]
  if options:
    rows.append(("jax f32 folded + options", folded, options))
    if eigen:
      rows.append(("jax f32 + options", model, options))
  variants = {}
  for name, m, opts in rows:
    graphdef, state = nnx.split(m)
    fwd = jax.jit(lambda st, im, g=graphdef: nnx.merge(g, st)(im, train=False))
    call = fwd.lower(state, x).compile(compiler_options=opts)
    out = np.asarray(call(state, x))
    variants[name] = (lambda call=call, state=state: call(state, x).block_until_ready(), out)
  return variants


def randomise_batch_norm(model, rng) -> None:
  """Running statistics and affine parameters as after training (init has mean 0, var 1, scale 0 or 1).

  So that folding is checked on non-trivial values, and no block is a no-op.
  """
  from flax import nnx
  import jax.numpy as jnp

  for _, bn in nnx.iter_modules(model):
    if isinstance(bn, nnx.BatchNorm):
      n = bn.mean.shape[0]
      for var, (lo, hi) in [(bn.mean, (-0.2, 0.2)), (bn.var, (0.5, 2.0)), (bn.scale, (0.2, 1.0))]:
        var[...] = jnp.asarray(rng.uniform(lo, hi, n), jnp.float32)
      bn.bias[...] = jnp.asarray(rng.uniform(-0.1, 0.1, n), jnp.float32)


# ---------------------------------------------------------------- the run


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--repeats", type=int, default=7, help="timed rounds (one call per variant)")
  parser.add_argument("--torch", default="/work/torchenv/bin/python", help="python with torch")
  parser.add_argument("--eigen", action="store_true", help="also the unfolded model + options")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    worker()
    return 0
  if not os.path.exists(args.torch):
    print(
        f"no PyTorch interpreter at {args.torch}: create it (python3 -m venv /work/torchenv && "
        f"/work/torchenv/bin/pip install torch==2.13.0 numpy) or pass --torch PYTHON"
    )
    return 2
  peer = TorchPeer(args.torch)
  import jax
  import numpy as np

  from provjax import compile_options

  jaxv = jax_variants(args.eigen)
  ref = jaxv["jax f32"][1]
  for name, (_, out) in jaxv.items():
    err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
    print(f"{name}: max |out - unfolded| / max |unfolded| = {err:.1e}")
  calls = {name: fn for name, (fn, _) in jaxv.items()}
  for fn in calls.values():
    fn()  # warm-up
  times = {name: [] for name in [*calls, *peer.variants]}
  for _ in range(args.repeats):
    for name in times:
      time.sleep(PAUSE_S)
      if name in calls:
        start = time.perf_counter()
        calls[name]()
        times[name].append(time.perf_counter() - start)
      else:
        times[name].append(peer.time(name))
  peer.close()

  median = {name: statistics.median(t) for name, t in times.items()}
  best_torch = min(peer.variants, key=median.get)
  print(
      f"\nSImProv r50 forward, batch {BATCH} x {SIZE} px, {os.cpu_count()} CPUs, jax {jax.__version__}, "
      f"torch {peer.version}, {args.repeats} interleaved rounds; options = "
      f"{compile_options.compiler_options() or 'none'}"
  )
  print(f"{'variant':32s} | median ms | min ms | images/s | speed vs {best_torch}")
  for name, t in times.items():
    print(
        f"{name:32s} | {1e3 * median[name]:9.0f} | {1e3 * min(t):6.0f} | "
        f"{BATCH / median[name]:8.2f} | {median[best_torch] / median[name]:.2f}x"
    )
  return 0


if __name__ == "__main__":
  sys.exit(main())
