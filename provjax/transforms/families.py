"""Named random augmentation families and the random benign chain.

`benign_family(name)` gives an `op(e, rng)` drawing its own parameters, so
evaluation can report retrieval per family; `random_benign` chains a few of
them (AugLy / ImageNet-C style, moderate severity) for training views and
query generation (specs/simprov.md sections 4 and 10, copy_detection.md
SSCD "advanced" augmentations).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from provjax.transforms import geometric as geo
from provjax.transforms import overlays, photometric as photo
from provjax.transforms.core import Edited, Op

# Family -> op(e, rng, s) at strength s (1 = moderate severity).
_FAMILIES: dict[str, Callable[[Edited, np.random.Generator, float], Edited]] = {
    "jpeg": lambda e, r, s: photo.jpeg(e, r, quality_range=(max(5, round(75 - 55 * s)), 75)),
    "noise": lambda e, r, s: photo.noise(e, r, std_range=(2, 2 + 18 * s)),
    "blur": lambda e, r, s: photo.blur(e, r, radius_range=(0.3, 0.3 + 2.2 * s)),
    "resize": lambda e, r, s: geo.scale(e, r, factor_range=(max(0.2, 1 - 0.5 * s), 1 + 0.3 * s)),
    "aspect": lambda e, r, s: geo.aspect(e, r, ratio_range=(np.exp(-0.5 * s), np.exp(0.5 * s))),
    "pad": lambda e, r, s: geo.pad(e, r, max_frac=0.25 * s),
    "crop": lambda e, r, s: geo.crop(
        e, r, frac_range=(max(0.2, 1 - 0.5 * s), max(0.2, 1 - 0.1 * s))
    ),
    "rotate": lambda e, r, s: geo.rotate(e, r, max_angle=30 * s),
    "affine": lambda e, r, s: geo.affine(
        e,
        r,
        max_angle=15 * s,
        scale_range=(1 - 0.2 * s, 1 + 0.2 * s),
        max_shear=10 * s,
        max_translate=0.1 * s,
    ),
    "perspective": lambda e, r, s: geo.perspective(e, r, distortion=0.1 * s),
    "flip": lambda e, r, s: geo.flip(e, r),
    "color": lambda e, r, s: photo.color_jitter(e, r, strength=s),
    "grayscale": lambda e, r, s: photo.grayscale(e, r),
    "overlay_text": lambda e, r, s: overlays.overlay_text(e, r),
    "overlay_emoji": lambda e, r, s: overlays.overlay_emoji(e, r),
    # Extras, used by random_benign but not reported per family.
    "sharpen": lambda e, r, s: photo.sharpen(e, r, factor_range=(1.5, 1.5 + 2.5 * s)),
    "pixelize": lambda e, r, s: photo.pixelize(e, r, ratio_range=(max(0.1, 0.6 - 0.45 * s), 0.6)),
    "stripes": lambda e, r, s: photo.stripes(e, r),
    "overlay_image": lambda e, r, s: overlays.overlay_image(e, r),
}

BENIGN_FAMILIES = (
    "jpeg",
    "noise",
    "blur",
    "resize",
    "aspect",
    "pad",
    "crop",
    "rotate",
    "affine",
    "perspective",
    "flip",
    "color",
    "grayscale",
    "overlay_text",
    "overlay_emoji",
)
EXTRA_FAMILIES = ("sharpen", "pixelize", "stripes", "overlay_image")
ALL_FAMILIES = BENIGN_FAMILIES + EXTRA_FAMILIES


def benign_family(name: str, strength: float = 1.0) -> Op:
  """The random op `op(e, rng)` of family `name` (see `ALL_FAMILIES`).

  Args:
    name: a family name.
    strength: severity multiplier (1 = moderate, as used for queries).

  Raises:
    KeyError: for an unknown family.
  """
  if name not in _FAMILIES:
    raise KeyError(f"unknown augmentation family {name!r}; " f"choose from {ALL_FAMILIES}")
  fn = _FAMILIES[name]

  def op(e: Edited, rng: np.random.Generator) -> Edited:
    return fn(e, rng, strength)

  op.__name__ = name
  return op


def random_benign(
    e: Edited,
    rng: np.random.Generator,
    *,
    n_min: int = 1,
    n_max: int = 3,
    strength: float = 1.0,
    families: tuple[str, ...] = ALL_FAMILIES,
) -> Edited:
  """Applies n_min..n_max distinct random benign families in random order."""
  n = int(rng.integers(n_min, n_max + 1))
  for name in rng.choice(families, size=min(n, len(families)), replace=False):
    e = benign_family(str(name), strength)(e, rng)
  return e
