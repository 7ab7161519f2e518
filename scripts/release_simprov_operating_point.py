"""Release SImProv comparator weights again with an operating point chosen for a descriptor.

    python scripts/release_simprov_operating_point.py simprov_comparator.synth-v2 \
        --descriptor simprov.synth-v3-mix --tag synth-v2-mix --photo-dir ~/provjax-photos

The fusion weight and the near-duplicate threshold are chosen on the
validation split (with the folder's test-split photographs); see
provjax.provenance.release.release_operating_point.
"""

import argparse
import json

from provjax.provenance.release import release_operating_point


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("comparator", help="released comparator weights (arch.tag)")
  p.add_argument("--descriptor", required=True, help="the released descriptor it serves")
  p.add_argument("--tag", required=True, help="the new release is simprov_comparator.<tag>")
  p.add_argument("--photo-dir", default=None, help="the training photo folder (its test split)")
  args = p.parse_args()
  out = release_operating_point(
      args.descriptor, args.comparator, args.tag, photo_dir=args.photo_dir
  )
  print(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
  main()
