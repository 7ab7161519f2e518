"""Image edits that keep track of where every pixel came from (PixTrace).

    rng = np.random.default_rng(0)
    e = apply(image, [benign_family("rotate"), lambda e, r: to_size(e, 224)],
              rng)
    e.image, e.coords, e.mask              # edited image, source table, mask
    heatmap_target(e, image.shape[:2])     # 7x7 SImProv ground truth

Every op is `op(e: Edited, rng, **params) -> Edited`; parameters left as
None are drawn from rng. Geometric ops map the coordinate table, photometric
ops keep it, overlays set it to -1 under the overlay, and malicious ops set
the mask (their pixels get coords -1, their geometric position stays in geo).
A record made by `untracked(image)` carries no tables, for views nothing
traces back: the same images, in about a third less time.
"""

from provjax.transforms.core import (
    Edited,
    Op,
    apply,
    compose,
    identity,
    pixel_grid,
    untracked,
    valid,
)
from provjax.transforms.families import (
    ALL_FAMILIES,
    BENIGN_FAMILIES,
    EXTRA_FAMILIES,
    benign_family,
    random_benign,
)
from provjax.transforms.geometric import (
    affine,
    aspect,
    crop,
    flip,
    hflip,
    pad,
    perspective,
    resize,
    rotate,
    scale,
    to_size,
    vflip,
    warp_matrix,
)
from provjax.transforms.malicious import (
    copy_move,
    random_manipulation,
    region_mask,
    remove,
    splice,
)
from provjax.transforms.overlays import (overlay_emoji, overlay_image, overlay_text)
from provjax.transforms.photometric import (
    blur,
    color_jitter,
    grayscale,
    jpeg,
    noise,
    pixelize,
    sharpen,
    stripes,
)
from provjax.transforms.targets import heatmap_target, source_mask

__all__ = [
    "ALL_FAMILIES",
    "BENIGN_FAMILIES",
    "EXTRA_FAMILIES",
    "Edited",
    "Op",
    "affine",
    "apply",
    "aspect",
    "benign_family",
    "blur",
    "color_jitter",
    "compose",
    "copy_move",
    "crop",
    "flip",
    "grayscale",
    "heatmap_target",
    "hflip",
    "identity",
    "jpeg",
    "noise",
    "overlay_emoji",
    "overlay_image",
    "overlay_text",
    "pad",
    "perspective",
    "pixel_grid",
    "pixelize",
    "random_benign",
    "random_manipulation",
    "region_mask",
    "remove",
    "resize",
    "rotate",
    "scale",
    "sharpen",
    "source_mask",
    "splice",
    "stripes",
    "to_size",
    "untracked",
    "valid",
    "vflip",
    "warp_matrix",
]
