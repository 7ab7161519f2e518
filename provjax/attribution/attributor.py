"""Released RepMix weights as a function: images -> real / synthetic and which generator.

The preprocessing travels with the weights (config.json `preprocessing`):
shorter side to `resize` (bicubic, the path the zoo's real photographs took),
a `crop` x `crop` center crop, the class names, and the real/synthetic
threshold on P(real) that the release chose on held-back real images (never
on test data). Images are batched at one static shape, so one compilation
serves every image.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from provjax import weights
from provjax.tasks import repmix as repmix_task


@dataclasses.dataclass
class Attributor:
  """`model` with its preprocessing, class names (index 0 = real) and threshold."""

  model: object
  classes: tuple[str, ...]
  resize: int
  crop: int
  threshold: float
  batch_size: int = 32

  @classmethod
  def load(cls, name: str, **kwargs) -> "Attributor":
    pre = weights.read_config(name)["preprocessing"]
    return cls(
        weights.load(name),
        classes=tuple(pre["classes"]),
        resize=int(pre["resize"]),
        crop=int(pre["crop"]),
        threshold=float(pre["threshold"]),
        **kwargs,
    )

  def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
    """[N, K] per-class probabilities (softmax of the gated attribution) of decoded images."""
    crops = np.stack(
        [repmix_task.preprocess(im, resize=self.resize, crop=self.crop) for im in images]
    )
    return repmix_task.predict(self.model, crops, batch_size=self.batch_size)[0]

  def describe(self, probs: np.ndarray) -> dict:
    """The verdict of one image from its class probabilities."""
    p_real = float(probs[0])
    synthetic = p_real < self.threshold
    source = self.classes[1 + int(np.argmax(probs[1:]))] if synthetic else self.classes[0]
    return {
        "is_synthetic": bool(synthetic),
        "p_real": p_real,
        "source": source,
        "probabilities": {c: float(p) for c, p in zip(self.classes, probs)},
    }

  def __call__(self, images: list[np.ndarray]) -> list[dict]:
    return [self.describe(p) for p in self.probabilities(images)]
