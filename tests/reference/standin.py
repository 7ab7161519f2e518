"""Deterministic stand-in weights in an official PyTorch state_dict format, made with numpy alone, and the
reference inputs on which the official code was run with them.

    weights = standin.make("trufor")          # {key: np.ndarray}, official layouts (conv O, I, kh, kw)
    image, x = standin.trufor_input()         # uint8 HxWx3, and the official model's input tensor
    image, mask, x, m = standin.safepaint_input()

Recorded so far (each with its <name>_state_dict.tsv in ../specs/):
- trufor: map / conf / det logits and the Noiseprint++ map on trufor_input() (official test_docker model,
  trufor.yaml).
- safepaint: both stage outputs and the four style vectors of InpaintGenerator on safepaint_input().
- copynce_descriptor, copynce_matcher: ViT-S/16 descriptor `feat` (512-d, L2-normalised) and CLS token on
  two 224 x 224 images (a picture and its mirror; `model_input` is after ImageNet normalisation); the
  matcher's `preds` logit and CLS tokens for the pairs (a, b) and (b, a). One file:
  copynce_reference_outputs.npz (keys descriptor_*, matcher_*).

(Copied from ../shared/reference with its tsv beside it.) Keys, shapes and dtypes come from <name>_state_dict.tsv. Entry i (in file order) is drawn from
numpy's default_rng(i): running_var = 1 + 0.5 * U[0, 1); running_mean = 0.1 * N(0, 1);
num_batches_tracked = 0; any other 1-D weight = 1 + 0.1 * N(0, 1); any other bias = 0.05 * N(0, 1);
tensors of rank >= 2 = N(0, 1) / sqrt(fan_in), fan_in = product of all dimensions but the first.
<name>_reference_outputs.npz beside this file holds what the official PyTorch model computed with these
weights on the reference input (eval mode): a port plus a converter that reproduce it are faithful.
"""

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def entries(name):
  rows = []
  for line in open(os.path.join(HERE, f"{name}_state_dict.tsv")):
    if line.startswith("#") or not line.strip():
      continue
    key, shape, dtype = line.rstrip("\n").split("\t")
    rows.append((key, tuple(int(x) for x in shape.strip("()").split(",") if x.strip()), dtype))
  return rows


def make(name):
  out = {}
  for i, (key, shape, dtype) in enumerate(entries(name)):
    rng = np.random.default_rng(i)
    if key.endswith("num_batches_tracked"):
      out[key] = np.zeros(shape, np.int64)
      continue
    if key.endswith("running_var"):
      v = 1 + 0.5 * rng.random(shape)
    elif key.endswith("running_mean"):
      v = 0.1 * rng.standard_normal(shape)
    elif len(shape) >= 2:
      v = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
    elif key.endswith("bias"):
      v = 0.05 * rng.standard_normal(shape)
    else:
      v = 1 + 0.1 * rng.standard_normal(shape)
    out[key] = v.astype(np.float32)
  return out


def _picture(h, w, seed):
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:h, 0:w].astype(np.float32)
  img = (
      128
      + 60 * np.sin(x / 9.0)[..., None] * np.cos(y / 13.0)[..., None]
      + rng.normal(0, 12, (h, w, 3))
  )
  img[h // 4 : h * 5 // 8, w // 4 : w * 5 // 8] = np.clip(
      img[h // 4 : h * 5 // 8, w // 4 : w * 5 // 8] * 0.7 + 50, 0, 255
  )
  return np.clip(img, 0, 255).astype(np.uint8)


def trufor_input():
  """160 x 224 RGB as the official TruFor loader gives it: uint8 / 256, NCHW float32."""
  img = _picture(160, 224, 2023)
  return img, img.transpose(2, 0, 1)[None].astype(np.float32) / 256.0


def safepaint_input():
  """256 x 256 RGB and a hole mask (1 = hole) as the official SafePaint loader gives them: [0, 1], NCHW."""
  img = _picture(256, 256, 2024)
  mask = np.zeros((256, 256), np.uint8)
  yy, xx = np.mgrid[0:256, 0:256]
  mask[((yy - 120) ** 2 / 50.0**2 + (xx - 140) ** 2 / 70.0**2) < 1] = 255
  mask[200:230, 30:120] = 255
  x = img.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
  m = (mask > 127).astype(np.float32)[None, None]
  return img, mask, x, m
