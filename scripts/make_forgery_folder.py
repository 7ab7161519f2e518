"""A folder of forgeries made unlike the training data, in the generic layout, to score detectors.

    python scripts/make_forgery_folder.py PHOTOS OUT [--max-side 512] [--seed 123]
    provjax eval --config configs/trufor/ph3.py:tiny --checkpoint trufor.synth-v2 \
        --config.eval.benchmark=folder --config.eval.manual_dir=OUT

Every photograph of PHOTOS (use photographs no model was trained on) gives one
authentic image (`real/`) and one forgery (`fake/` + `masks/`, same stem),
alternately a splice and a removal. The edits differ on purpose from the
synthetic builder the zoo trains on (`provjax.data.forgery`), so a detector
that only learned that builder's artefacts does not pass:

* the photograph keeps its own pixels up to `--max-side` (longer sides are
  downscaled once, before any edit);
* regions are one smooth blob (a disc perturbed by low-pass noise) instead of
  rectangles, ellipses and polygons;
* a splice pastes the blob from ANOTHER photograph of the folder, rescaled by
  0.6-1.4, with no colour matching and a hard edge;
* a removal fills the blob (2-6 % of the area) either by biharmonic
  inpainting (scikit-image) or by copying the shifted region whose
  surrounding ring matches best (an exemplar fill, as content-aware tools do),
  not by the builder's push-pull fill;
* every image, authentic ones too, is saved once as JPEG at a quality drawn
  from 80-95, so the file format says nothing.

Almost-flat images (grey-level standard deviation under 1, e.g. wallpaper
patterns kept in an alpha channel, which decode white over white) and images
whose short side is under 128 pixels are left out; a file that cannot be
decoded gets one line on stderr naming it, and the others go on. The
masks mark exactly the pixels the edit changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.restoration import inpaint_biharmonic

from provjax.data.images import ImageError, list_images, read_image

FLAT = 1.0  # grey-level standard deviation under which an image is left out
MIN_SIDE = 128


def load(path: Path, max_side: int) -> np.ndarray:
  """The project's decoding (EXIF rotation, alpha over white, ...), longer side <= max_side."""
  im = Image.fromarray(read_image(path))
  im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
  return np.asarray(im)


def blob(rng: np.random.Generator, shape: tuple[int, int], area: float) -> np.ndarray:
  """One connected smooth region covering about `area` of the frame (0.5x-2x)."""
  h, w = shape
  yy, xx = np.mgrid[:h, :w]
  for _ in range(50):
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=min(h, w) / 12)
    cy, cx = rng.integers(h // 6, 5 * h // 6), rng.integers(w // 6, 5 * w // 6)
    radius = np.sqrt(area * h * w / np.pi)
    inside = np.hypot((yy - cy) / radius, (xx - cx) / radius) + 0.5 * noise / noise.std() < 1
    labels, count = ndimage.label(inside)
    if count:
      inside = labels == np.bincount(labels.ravel())[1:].argmax() + 1
      if 0.5 * area < inside.mean() < 2 * area:
        return inside
  return np.hypot((yy - h / 2) / radius, (xx - w / 2) / radius) < 1  # the plain disc


def splice(rng, image: np.ndarray, donor: np.ndarray) -> np.ndarray:
  h, w = image.shape[:2]
  region = blob(rng, (h, w), rng.uniform(0.03, 0.15))
  f = rng.uniform(0.6, 1.4)
  size = (max(w, round(donor.shape[1] * f)), max(h, round(donor.shape[0] * f)))
  donor = np.asarray(Image.fromarray(donor).resize(size, Image.Resampling.BILINEAR))
  top, left = rng.integers(donor.shape[0] - h + 1), rng.integers(donor.shape[1] - w + 1)
  return np.where(region[..., None], donor[top : top + h, left : left + w], image)


def exemplar_fill(rng, image: np.ndarray, region: np.ndarray, tries: int = 200) -> np.ndarray:
  """The region copied from the shift (of 200 drawn) whose ring around it matches best."""
  h, w = region.shape
  ring = ndimage.binary_dilation(region, iterations=6) & ~region
  ys, xs = np.nonzero(region | ring)
  best, cost = (h // 2, w // 2), np.inf
  for _ in range(tries):
    dy = int(rng.integers(-ys.min(), h - ys.max()))
    dx = int(rng.integers(-xs.min(), w - xs.max()))
    if abs(dy) + abs(dx) < 10:
      continue
    shifted = np.roll(image, (dy, dx), axis=(0, 1))
    c = np.mean((shifted[ring].astype(np.float64) - image[ring]) ** 2)
    if c < cost:
      best, cost = (dy, dx), c
  return np.where(region[..., None], np.roll(image, best, axis=(0, 1)), image)


def removal(rng, image: np.ndarray, biharmonic: bool) -> np.ndarray:
  region = blob(rng, image.shape[:2], rng.uniform(0.02, 0.06))
  if biharmonic:
    filled = inpaint_biharmonic(image, region, channel_axis=-1)
    return np.clip(np.rint(filled * 255), 0, 255).astype(np.uint8)
  return exemplar_fill(rng, image, region)


def make(photos: Path, out: Path, *, max_side: int = 512, seed: int = 123) -> list[tuple]:
  """Writes OUT/real, OUT/fake, OUT/masks; returns (stem, kind, forged fraction) per forgery."""
  rng = np.random.default_rng(seed)
  images = []
  for path in list_images(photos):
    try:
      image = load(path, max_side)
    except ImageError as e:  # one line naming the file; the other photographs go on
      print(f"make_forgery_folder: skipped {e}", file=sys.stderr)
      continue
    grey = np.asarray(Image.fromarray(image).convert("L"), np.float32)
    if grey.std() >= FLAT and min(image.shape[:2]) >= MIN_SIDE:
      images.append((path.stem, image))
  if len(images) < 2:
    raise ValueError(f"{photos}: fewer than two usable photographs")
  for sub in ("real", "fake", "masks"):
    (out / sub).mkdir(parents=True, exist_ok=True)
  made = []
  for i, (stem, image) in enumerate(images):
    Image.fromarray(image).save(out / "real" / f"{stem}.jpg", quality=int(rng.integers(80, 96)))
    if i % 2 == 0:
      kind, donor = "splice", images[(i + 1 + rng.integers(len(images) - 1)) % len(images)][1]
      edited = splice(rng, image, donor)
    else:
      kind = "removal"
      edited = removal(rng, image, biharmonic=i % 4 == 1)
    mask = np.any(edited != image, axis=-1)
    Image.fromarray(edited).save(out / "fake" / f"{stem}.jpg", quality=int(rng.integers(80, 96)))
    Image.fromarray(mask.astype(np.uint8) * 255).save(out / "masks" / f"{stem}.png")
    made.append((stem, kind, float(mask.mean())))
  return made


def main(argv=None) -> None:
  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("photos", type=Path, help="a folder of photographs no model was trained on")
  p.add_argument("out", type=Path, help="where real/, fake/ and masks/ are written")
  p.add_argument("--max-side", type=int, default=512, help="longer sides are downscaled to this")
  p.add_argument("--seed", type=int, default=123)
  args = p.parse_args(argv)
  made = make(args.photos, args.out, max_side=args.max_side, seed=args.seed)
  kinds = [k for _, k, _ in made]
  print(
      f"{args.out}: {len(made)} authentic, {kinds.count('splice')} splices, "
      f"{kinds.count('removal')} removals"
  )


if __name__ == "__main__":
  main()
