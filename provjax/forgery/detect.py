"""Run a TruFor model on whole images of any size, and write what it finds.

    detector = Detector(provjax.load("trufor.synth-v2"))
    pred = detector(image)                       # HxWx3 uint8, never resized
    pred.map, pred.conf, pred.score, pred.noiseprint
    write_outputs(out_dir, "0000-photo", image, pred, save_np=True)

Images run at their native size with batch 1, as the official tool does. The
whole forward pass (scaling, Noiseprint++, encoder, both decoders, detector,
softmax / sigmoid) is one jitted function with static shapes, compiled once
per distinct (H, W) and kept (`Detector.compiled`). Memory grows with the
pixel count (stage-1 attention alone is N x N / 64 for N = H W / 16), so
images above `max_pixels` are refused rather than risking the process;
`provjax bench --only detect` measures what a size needs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from provjax import compile_options
from provjax.models.trufor import preprocess
from provjax.viz import overlay

DEFAULT_MAX_PIXELS = 4096 * 4096


class TooLargeError(ValueError):
  """An image with more pixels than the detector's limit."""


@dataclasses.dataclass(frozen=True)
class Prediction:
  """TruFor's outputs for one image, all HxW float32 on the image's own pixels."""

  map: np.ndarray  # softmax(loc_logits)[..., 1]: probability that a pixel is forged
  conf: np.ndarray  # sigmoid(conf_logits): how far the map can be trusted there
  score: float  # sigmoid(det_logit): whole-image forgery score
  noiseprint: np.ndarray  # the Noiseprint++ map the encoder saw


def _forward(graphdef, state, image):
  """uint8 [1, H, W, 3] -> (map, conf, score, noiseprint) in eval mode."""
  model = nnx.merge(graphdef, state)
  out = model(preprocess(image))
  return (
      jax.nn.softmax(out["loc_logits"], axis=-1)[0, ..., 1],
      jax.nn.sigmoid(out["conf_logits"][0, ..., 0]),
      jax.nn.sigmoid(out["det_logit"][0]),
      out["noiseprint"][0, ..., 0],
  )


class Detector:
  """A TruFor model compiled per image size.

  Args:
    model: a TruFor module (e.g. `provjax.load("trufor.synth-v2")`); it is run
      in eval mode whatever mode it is in.
    max_pixels: larger images raise TooLargeError before anything runs.
  """

  def __init__(self, model, *, max_pixels: int = DEFAULT_MAX_PIXELS):
    self.graphdef, self.state = nnx.split(model)
    self.max_pixels = max_pixels
    self._compiled: dict[tuple[int, int], jax.stages.Compiled] = {}

  def compiled(self, height: int, width: int) -> jax.stages.Compiled:
    """The executable for one H x W (compiled on first use, then cached)."""
    key = (int(height), int(width))
    if key not in self._compiled:
      image = jax.ShapeDtypeStruct((1, *key, 3), jnp.uint8)
      forward = jax.jit(_forward, static_argnums=0)
      self._compiled[key] = forward.lower(self.graphdef, self.state, image).compile(
          compiler_options=compile_options.compiler_options()
      )
    return self._compiled[key]

  def check_size(self, height: int, width: int) -> None:
    """Raise TooLargeError for more than `max_pixels` pixels."""
    if height * width > self.max_pixels:
      raise TooLargeError(
          f"image too large for the detector ({width}x{height} = {height * width} pixels, limit "
          f"{self.max_pixels}; TruFor runs at native size and its memory grows with the pixels)"
      )

  def __call__(self, image: np.ndarray) -> Prediction:
    """HxWx3 uint8 RGB (any size up to max_pixels) -> its Prediction."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
      raise ValueError(f"expected an HxWx3 uint8 image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    self.check_size(h, w)
    # The state goes in as an argument (not a constant baked into each executable), so
    # every size shares one copy of the weights.
    out = self.compiled(h, w)(self.state, image[None])
    heat, conf, score, noise = jax.device_get(out)
    return Prediction(heat, conf, float(score), noise)


def picture(image: np.ndarray, pred: Prediction, title: str) -> np.ndarray:
  """image | localization heatmap | confidence map, titled, with the score in the first title."""
  conf = np.round(np.clip(pred.conf, 0.0, 1.0) * 255).astype(np.uint8)
  return overlay.panel(
      [image, overlay.overlay(image, pred.map), np.repeat(conf[..., None], 3, axis=-1)],
      [f"{title}  score {pred.score:.3f}", "localization map", "confidence (white = reliable)"],
  )


def write_outputs(
    out: Path,
    stem: str,
    image: np.ndarray,
    pred: Prediction,
    *,
    title: str | None = None,
    save_np: bool = False,
) -> dict:
  """`stem.npz` (map, conf, score, imgsize, [np++]) and `stem.png` (the panel) in `out`.

  `title` heads the picture (default: `stem`). Returns the record fields naming
  the files: {"map_npz", "overlay_png"}.
  """
  arrays = dict(
      map=pred.map.astype(np.float32),
      conf=pred.conf.astype(np.float32),
      score=np.float32(pred.score),
      imgsize=np.asarray(image.shape[:2]),
  )
  if save_np:
    arrays["np++"] = pred.noiseprint.astype(np.float32)
  npz, png = out / f"{stem}.npz", out / f"{stem}.png"
  np.savez(npz, **arrays)
  overlay.save_png(picture(image, pred, title or stem), png)
  return {"map_npz": str(npz), "overlay_png": str(png)}
