"""SImProv's training recipe: benign views and manipulations at the paper's strengths.

`paper_benign` is the comparator's AugLy recipe (specs/simprov.md 2.10):
1 to 5 random ops from its list, then, with p = 0.5, one ImageNet-C
corruption (any but elastic_transform and glass_blur) at severity 1-5. The
list keeps the paper's ranges where they are stated (colour jitter factors
0.2-2.0, crops keeping 0.5-0.95 of each side, pad <= 0.25 of a side, JPEG
quality 5-75) and adds the search embedding's resize and affine (section
1). `paper_manipulation` draws splices, copy-moves and removals over 2-30 %
of the area (issue 7's range). The moderate `random_benign` chain stays the
query generator of the benchmarks, so a recipe change never moves the
yardstick.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from provjax.transforms import corruptions, malicious
from provjax.transforms import geometric as geo
from provjax.transforms import overlays, photometric as photo
from provjax.transforms.core import Edited
from provjax.transforms.families import benign_family

# All ImageNet-C corruptions but the two the comparator's recipe leaves out.
CORRUPTION_IDS = tuple(
    i for i, name in enumerate(corruptions.NAMES) if name not in ("elastic_transform", "glass_blur")
)
AREA_RANGE = (0.02, 0.30)  # of the image, for every manipulation kind


def _strong_color(e: Edited, rng: np.random.Generator) -> Edited:
  """AugLy colour jitter at the paper's factors: each uniform in [0.2, 2.0]."""
  b, c, s = rng.uniform(0.2, 2.0, size=3)
  return photo.color_jitter(e, rng, brightness=b, contrast=c, saturation=s)


def _crop(e: Edited, rng: np.random.Generator) -> Edited:
  """A crop keeping 0.5-0.95 of each side (about half the area on average)."""
  return geo.crop(e, rng, frac_range=(0.5, 0.95))


OPS: dict[str, Callable[[Edited, np.random.Generator], Edited]] = {
    "blur": benign_family("blur"),
    "overlay_emoji": overlays.overlay_emoji,
    "noise": benign_family("noise"),
    "pixelize": benign_family("pixelize"),
    "rotate": benign_family("rotate"),
    "flip": benign_family("flip"),
    "color": _strong_color,
    "overlay_image": overlays.overlay_image,
    "crop": _crop,
    "jpeg": lambda e, r: photo.jpeg(e, r, quality_range=(5, 75)),
    "grayscale": photo.grayscale,
    "stripes": photo.stripes,
    "pad": benign_family("pad"),
    "perspective": benign_family("perspective"),
    "sharpen": benign_family("sharpen"),
    "overlay_text": overlays.overlay_text,
    "resize": benign_family("resize"),
    "affine": benign_family("affine"),
}


def paper_benign(
    e: Edited, rng: np.random.Generator, *, n_max: int = 5, corruption_p: float = 0.5
) -> Edited:
  """1..n_max distinct ops of `OPS` in random order, then a corruption with p."""
  n = int(rng.integers(1, n_max + 1))
  for name in rng.choice(sorted(OPS), size=min(n, len(OPS)), replace=False):
    e = OPS[str(name)](e, rng)
  if rng.random() < corruption_p:
    e = corruptions.corruption(e, rng, ids=CORRUPTION_IDS)
  return e


def paper_manipulation(
    e: Edited, rng: np.random.Generator, donors: Callable[[], np.ndarray] | None = None
) -> Edited:
  """A splice (when `donors` is given), copy-move or removal over 2-30 % of the area."""
  region = malicious.region_mask(rng, e.shape, area_range=AREA_RANGE)
  kinds = ["copy_move", "remove"] + (["splice"] if donors else [])
  kind = kinds[int(rng.integers(len(kinds)))]
  if kind == "splice":
    return malicious.splice(e, rng, donors(), region=region)
  if kind == "copy_move":
    return malicious.copy_move(e, rng, region=region)
  return malicious.remove(e, rng, region=region)
