"""Tests for provjax.transforms: coordinate tables against analytic maps.

Expected maps are built here independently as 3x3 forward matrices on
homogeneous pixel-centre (x, y, 1) positions and composed by matrix product;
image content is checked with scipy's own bilinear sampler.
"""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import provjax.transforms as T

H, W = 48, 64


# ------------------------------------------------------------------ helpers


def smooth_image(seed=0, h=H, w=W):
  """A smooth random colour image (slow gradients, no saturation)."""
  rng = np.random.default_rng(seed)
  small = rng.integers(30, 226, size=(4, 5, 3), dtype=np.uint8)
  return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))


def shift(tx, ty):
  return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], float)


def scaling(sx, sy):
  return np.diag([sx, sy, 1.0])


def rot_ccw(deg, cin, cout):
  """Screen-counter-clockwise rotation taking centre cin=(x,y) to cout."""
  a = np.deg2rad(deg)
  r = np.array([[np.cos(a), np.sin(a), 0], [-np.sin(a), np.cos(a), 0], [0, 0, 1]])
  return shift(*cout) @ r @ shift(-cin[0], -cin[1])


def resize_matrix(shape_in, shape_out):
  """Pixel-centre resize: out = (in + 0.5) * out_n / in_n - 0.5."""
  sy, sx = shape_out[0] / shape_in[0], shape_out[1] / shape_in[1]
  return shift(-0.5, -0.5) @ scaling(sx, sy) @ shift(0.5, 0.5)


def stage_positions(mats, out_shape):
  """Input (y, x) position of every output pixel at each stage, last first."""
  ys, xs = np.mgrid[0 : out_shape[0], 0 : out_shape[1]].astype(float)
  p = np.stack([xs, ys, np.ones_like(xs)], -1)
  out = []
  for m in reversed(mats):
    p = p @ np.linalg.inv(m).T
    p = p / p[..., 2:3]
    out.append(np.stack([p[..., 1], p[..., 0]], -1))
  return out  # out[-1] is the position in the original


def check_coords(e, mats, shapes, tol=0.05):
  """coords == analytic inverse map where valid, -1 exactly where no source.

  Args:
    e: result of the chain.
    mats: forward matrix of each stage.
    shapes: input shape of each stage (same order as mats).
    tol: max error in pixels of valid coords.
  """
  pos = stage_positions(mats, e.shape)
  stage_in = list(reversed(shapes))
  sure_in = np.ones(e.shape, bool)
  sure_out = np.zeros(e.shape, bool)
  for p, (h, w) in zip(pos, stage_in):
    y, x = p[..., 0], p[..., 1]
    sure_in &= (y >= 3) & (y <= h - 4) & (x >= 3) & (x <= w - 4)
    sure_out |= (y < -3.5) | (y > h + 2.5) | (x < -3.5) | (x > w + 2.5)
  ok = T.valid(e.coords)
  assert ok[sure_in].all()
  assert not ok[sure_out].any()
  assert (e.coords[~ok] == -1).all()
  err = np.abs(e.coords[ok] - pos[-1][ok].astype(np.float32))
  assert err.max() < tol, err.max()
  return ok


def check_content(e, original, ok, tol=4.0):
  """Output pixel ~ original bilinearly sampled at coords (interior only)."""
  interior = ndimage.binary_erosion(ok, np.ones((5, 5)))
  if not interior.any():
    return
  yx = e.coords[interior].T
  ref = np.stack(
      [
          ndimage.map_coordinates(original[..., c].astype(float), yx, order=1, mode="nearest")
          for c in range(3)
      ],
      -1,
  )
  diff = np.abs(ref - e.image[interior].astype(float))
  assert diff.mean() < tol, diff.mean()


# ------------------------------------------------------- single geometric ops


def _centre(shape):
  return ((shape[1] - 1) / 2, (shape[0] - 1) / 2)


GEOMETRIC = {
    # name: (op, forward matrix given input and output shapes)
    "resize": (lambda e, r: T.resize(e, r, size=(30, 90)), lambda si, so: resize_matrix(si, so)),
    "upsize": (lambda e, r: T.resize(e, r, size=(77, 101)), lambda si, so: resize_matrix(si, so)),
    "aspect": (lambda e, r: T.aspect(e, r, ratio=1.7), lambda si, so: resize_matrix(si, so)),
    "scale": (lambda e, r: T.scale(e, r, factor=0.7), lambda si, so: resize_matrix(si, so)),
    "pad": (lambda e, r: T.pad(e, r, widths=(3, 5, 7, 2), fill=9), lambda si, so: shift(7, 3)),
    "crop": (lambda e, r: T.crop(e, r, box=(5, 9, 30, 40)), lambda si, so: shift(-9, -5)),
    "rotate": (
        lambda e, r: T.rotate(e, r, angle=23.0, expand=False),
        lambda si, so: rot_ccw(23.0, _centre(si), _centre(so)),
    ),
    "rotate_expand": (
        lambda e, r: T.rotate(e, r, angle=-67.0, expand=True),
        lambda si, so: rot_ccw(-67.0, _centre(si), _centre(so)),
    ),
    "affine": (
        lambda e, r: T.affine(e, r, matrix=[[0.9, 0.2, 4], [-0.1, 1.1, -3]]),
        lambda si, so: np.array([[0.9, 0.2, 4], [-0.1, 1.1, -3], [0, 0, 1]]),
    ),
    "perspective": (
        lambda e, r: T.perspective(e, r, matrix=PERSPECTIVE),
        lambda si, so: PERSPECTIVE,
    ),
    "hflip": (lambda e, r: T.hflip(e), lambda si, so: shift(si[1] - 1, 0) @ scaling(-1, 1)),
    "vflip": (lambda e, r: T.vflip(e), lambda si, so: shift(0, si[0] - 1) @ scaling(1, -1)),
}
PERSPECTIVE = np.array([[1.05, 0.1, -2.0], [0.05, 0.95, 3.0], [0.002, -0.001, 1.0]])


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
def test_geometric_op_matches_analytic_map(name):
  op, matrix = GEOMETRIC[name]
  image = smooth_image()
  e = op(T.identity(image), np.random.default_rng(0))
  m = matrix((H, W), e.shape)
  tol = 0.3 if name == "perspective" else 0.02
  ok = check_coords(e, [m], [(H, W)], tol)
  check_content(e, image, ok)
  assert e.image.dtype == np.uint8 and e.coords.dtype == np.float32
  assert not e.mask.any()


def test_pad_minus_one_exactly_on_padding():
  e = T.pad(T.identity(smooth_image()), None, widths=(3, 5, 7, 2), fill=(1, 2, 3))
  assert e.shape == (H + 8, W + 9)
  inner = np.zeros(e.shape, bool)
  inner[3 : 3 + H, 7 : 7 + W] = True
  assert (e.coords[~inner] == -1).all()
  np.testing.assert_array_equal(e.coords[inner].reshape(H, W, 2), T.pixel_grid(H, W))
  assert (e.image[~inner] == (1, 2, 3)).all()


def test_rotation_direction_matches_pil():
  image = smooth_image(3)
  ours = T.rotate(T.identity(image), None, angle=30.0, expand=False).image
  pil = np.asarray(Image.fromarray(image).rotate(30.0, Image.Resampling.BILINEAR))
  inner = (slice(12, -12), slice(12, -12))
  assert np.abs(ours[inner].astype(int) - pil[inner]).mean() < 2.0


# ----------------------------------------------------------- compositions

CHAINS = [
    ("rotate", "crop"),
    ("pad", "affine"),
    ("resize", "rotate_expand"),
    ("perspective", "hflip"),
    ("crop", "rotate", "resize"),
    ("aspect", "pad", "perspective"),
    ("affine", "vflip", "upsize"),
]


@pytest.mark.parametrize("chain", CHAINS, ids="+".join)
def test_composition_matches_matrix_product(chain):
  image = smooth_image(1)
  e, mats, shapes = T.identity(image), [], []
  rng = np.random.default_rng(0)
  for name in chain:
    op, matrix = GEOMETRIC[name]
    shape_in = e.shape
    e = op(e, rng)
    mats.append(matrix(shape_in, e.shape))
    shapes.append(shape_in)
  tol = 0.3 if "perspective" in chain else 0.05
  ok = check_coords(e, mats, shapes, tol)
  check_content(e, image, ok, tol=5.0)


def test_random_geometric_ops_compose_with_table():
  # Random parameters: coords must still equal the table of the chain, so
  # sampling the original at coords reproduces the image.
  image = smooth_image(2)
  rng = np.random.default_rng(5)
  for name in ("rotate", "affine", "perspective", "crop", "aspect"):
    e = T.benign_family(name)(T.identity(image), rng)
    check_content(e, image, T.valid(e.coords))


# ----------------------------------------------------- masks follow the map


def test_mask_follows_rotation_after_splice():
  image, donor = smooth_image(0), smooth_image(9)
  region = np.zeros((H, W), bool)
  region[10:30, 20:45] = True
  rng = np.random.default_rng(0)
  spliced = T.splice(T.identity(image), rng, donor=donor, region=region)
  e = T.rotate(spliced, rng, angle=35.0, expand=True)
  (p,) = stage_positions([rot_ccw(35.0, _centre((H, W)), _centre(e.shape))], e.shape)
  iy, ix = np.floor(p[..., 0] + 0.5).astype(int), np.floor(p[..., 1] + 0.5)
  inside = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
  expected = np.zeros(e.shape, bool)
  expected[inside] = region[iy[inside], ix[inside].astype(int)]
  assert (e.mask != expected).mean() < 0.005
  assert (e.coords[e.mask] == -1).all()
  assert T.valid(e.geo[e.mask]).all()
  back = T.source_mask(e, (H, W))
  iou = (back & region).sum() / (back | region).sum()
  assert iou > 0.9, iou


def test_source_mask_after_downscale_has_no_holes():
  region = np.zeros((H, W), bool)
  region[8:40, 16:48] = True
  rng = np.random.default_rng(1)
  e = T.copy_move(T.identity(smooth_image()), rng, region=region)
  e = T.rotate(T.resize(e, rng, size=(20, 27)), rng, angle=20.0, expand=True)
  back = T.source_mask(e, (H, W))
  assert (back & region).sum() / (back | region).sum() > 0.8


# ------------------------------------------------------------ photometric

PHOTOMETRIC = {
    "jpeg": lambda e, r: T.jpeg(e, r, quality=30),
    "noise": lambda e, r: T.noise(e, r, std=10.0),
    "blur": lambda e, r: T.blur(e, r, radius=2.0),
    "color": lambda e, r: T.color_jitter(e, r),
    "grayscale": lambda e, r: T.grayscale(e, r),
    "sharpen": lambda e, r: T.sharpen(e, r, factor=3.0),
    "pixelize": lambda e, r: T.pixelize(e, r, ratio=0.25),
    "stripes": lambda e, r: T.stripes(e, r),
}


@pytest.mark.parametrize("name", sorted(PHOTOMETRIC))
def test_photometric_keeps_coords_changes_pixels(name):
  image = np.random.default_rng(4).integers(0, 256, (H, W, 3), np.uint8)
  e0 = T.rotate(T.identity(image), None, angle=10.0)  # a non-trivial table
  e = PHOTOMETRIC[name](e0, np.random.default_rng(0))
  np.testing.assert_array_equal(e.coords, e0.coords)
  np.testing.assert_array_equal(e.geo, e0.geo)
  assert not e.mask.any()
  assert e.image.shape == e0.image.shape and e.image.dtype == np.uint8
  assert np.abs(e.image.astype(int) - e0.image).mean() > 1.0


# --------------------------------------------------------------- overlays


@pytest.mark.parametrize("op", [T.overlay_text, T.overlay_emoji, T.overlay_image])
def test_overlay_pixels_lose_their_source(op):
  image = smooth_image()
  e = op(T.identity(image), np.random.default_rng(2), opacity=1.0)
  gone = ~T.valid(e.coords)
  assert 0 < gone.mean() < 0.6
  assert not e.mask.any()
  untouched = ~ndimage.binary_dilation(gone, np.ones((5, 5)))
  np.testing.assert_array_equal(e.image[untouched], image[untouched])


# -------------------------------------------------------------- malicious


@pytest.mark.parametrize("kind", ["splice", "copy_move", "remove"])
def test_malicious_changes_only_inside_mask(kind):
  rng = np.random.default_rng(7)
  image = rng.integers(0, 256, (H, W, 3), np.uint8)
  donor = rng.integers(0, 256, (70, 50, 3), np.uint8)
  e0 = T.identity(image)
  for seed in range(3):
    r = np.random.default_rng(seed)
    e = {
        "splice": lambda: T.splice(e0, r, donor=donor),
        "copy_move": lambda: T.copy_move(e0, r),
        "remove": lambda: T.remove(e0, r),
    }[kind]()
    assert 0.015 <= e.mask.mean() <= 0.3, e.mask.mean()
    np.testing.assert_array_equal(e.image[~e.mask], image[~e.mask])
    diff = np.abs(e.image.astype(int) - image)[e.mask]
    assert diff.mean() > 20
    assert (e.coords[e.mask] == -1).all()
    np.testing.assert_array_equal(e.coords[~e.mask], e0.coords[~e.mask])
    np.testing.assert_array_equal(e.geo, e0.geo)


def test_region_shapes_have_plausible_area():
  rng = np.random.default_rng(0)
  for kind in ("rectangle", "ellipse", "polygon"):
    areas = [T.region_mask(rng, (128, 128), kind=kind).mean() for _ in range(10)]
    assert 0.024 <= min(areas) and max(areas) <= 0.3, (kind, areas)


def test_random_manipulation_uses_donors():
  rng = np.random.default_rng(3)
  image = smooth_image()
  for _ in range(4):
    e = T.random_manipulation(T.identity(image), rng, donors=[smooth_image(8)])
    assert e.mask.any()


# ----------------------------------------------------------------- targets


def test_heatmap_target_known_rectangle():
  image = smooth_image(h=70, w=70)
  region = np.zeros((70, 70), bool)
  region[10:30, 20:40] = True  # exactly cells rows 1-2, cols 2-3
  e = T.splice(
      T.identity(image), np.random.default_rng(0), donor=smooth_image(5, 70, 70), region=region
  )
  hm = T.heatmap_target(e, (70, 70))
  expected = np.zeros((7, 7), np.float32)
  expected[1:3, 2:4] = 1
  assert hm.shape == (7, 7) and hm.dtype == np.float32
  np.testing.assert_allclose(hm, expected, atol=1e-6)


def test_heatmap_target_fractional_cells():
  region = np.zeros((64, 64), bool)
  region[:32, :32] = True  # 32 / (64/7) = 3.5 cells
  e = T.remove(T.identity(smooth_image(h=64, w=64)), np.random.default_rng(0), region=region)
  hm = T.heatmap_target(e, (64, 64))
  assert hm.sum() == pytest.approx(9 + 6 * 0.5 + 0.25, abs=1e-4)
  assert hm[3, 3] == pytest.approx(0.25, abs=1e-4)


def test_heatmap_target_zero_when_benign():
  e = T.rotate(T.identity(smooth_image()), None, angle=10.0)
  hm = T.heatmap_target(e, (H, W))
  assert hm.shape == (7, 7) and not hm.any()


def test_heatmap_target_through_resize():
  region = np.zeros((70, 70), bool)
  region[35:70, 0:35] = True
  e = T.copy_move(T.identity(smooth_image(h=70, w=70)), np.random.default_rng(1), region=region)
  e = T.to_size(e, 33)
  hm = T.heatmap_target(e, (70, 70))
  assert hm[4:, :3].min() > 0.95 and hm[:3].max() == 0 and hm[:, 4:].max() == 0


# --------------------------------------------- families, chains, determinism


@pytest.mark.parametrize("name", T.ALL_FAMILIES)
def test_each_family_returns_valid_record(name):
  image = np.random.default_rng(0).integers(0, 256, (H, W, 3), np.uint8)
  e = T.benign_family(name)(T.identity(image), np.random.default_rng(1))
  h, w = e.shape
  assert e.image.shape == (h, w, 3) and e.image.dtype == np.uint8
  assert e.coords.shape == (h, w, 2) and e.coords.dtype == np.float32
  assert e.mask.shape == (h, w) and e.mask.dtype == bool and not e.mask.any()
  assert T.valid(e.coords).mean() > 0.3


def test_benign_family_names():
  assert len(T.BENIGN_FAMILIES) == 15
  with pytest.raises(KeyError):
    T.benign_family("nope")


def test_random_benign_and_to_size():
  rng = np.random.default_rng(0)
  image = smooth_image()
  for _ in range(5):
    e = T.to_size(T.random_benign(T.identity(image), rng, n_max=3), 32)
    assert e.image.shape == (32, 32, 3) and not e.mask.any()


def test_determinism_for_same_seed():
  image = smooth_image()
  donors = [smooth_image(6)]

  def run(seed):
    rng = np.random.default_rng(seed)
    e = T.random_manipulation(T.identity(image), rng, donors=donors)
    return T.random_benign(e, rng, n_min=2, n_max=3)

  a, b, c = run(11), run(11), run(12)
  np.testing.assert_array_equal(a.image, b.image)
  np.testing.assert_array_equal(a.coords, b.coords)
  np.testing.assert_array_equal(a.mask, b.mask)
  assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)


def test_apply_and_identity():
  image = smooth_image()
  e = T.identity(image)
  np.testing.assert_array_equal(e.coords, T.pixel_grid(H, W))
  assert not e.mask.any()
  out = T.apply(image, [T.hflip, T.hflip], np.random.default_rng(0))
  np.testing.assert_array_equal(out.image, image)
  np.testing.assert_array_equal(out.coords, e.coords)


# ------------------------------------------------------------ untracked


@pytest.mark.parametrize("name", T.ALL_FAMILIES)
def test_untracked_views_have_the_tracked_pixels(name):
  image = smooth_image(3)
  for seed in range(3):
    op = T.benign_family(name)
    want = T.to_size(op(T.identity(image), np.random.default_rng(seed)), 40)
    got = T.to_size(op(T.untracked(image), np.random.default_rng(seed)), 40)
    np.testing.assert_array_equal(got.image, want.image)
    np.testing.assert_array_equal(got.mask, want.mask)
    assert not got.tracked and got.coords.shape == want.image.shape[:2] + (0,)


def test_untracked_manipulations_have_the_tracked_pixels_and_masks():
  image, donor = smooth_image(4), smooth_image(5)
  kinds = set()
  for seed in range(12):
    edit = lambda e: T.random_manipulation(e, np.random.default_rng(seed), donors=[donor])
    want, got = edit(T.identity(image)), edit(T.untracked(image))
    np.testing.assert_array_equal(got.image, want.image)
    np.testing.assert_array_equal(got.mask, want.mask)
    kinds.add(int(want.mask.sum()))
  assert len(kinds) > 3  # several different edits were drawn
  with pytest.raises(ValueError, match="untracked"):
    T.valid(got.coords)


def test_a_donor_function_is_called_only_for_a_splice():
  calls = []

  def donor():
    calls.append(1)
    return smooth_image(5)

  for seed in range(12):
    T.random_manipulation(T.identity(smooth_image(4)), np.random.default_rng(seed), donor)
  assert 0 < len(calls) < 12  # one call per splice drawn, none for copy-moves and removals
