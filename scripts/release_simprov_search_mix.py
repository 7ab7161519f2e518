"""Release SImProv descriptor weights again with a thumbnail share of search similarity.

    python scripts/release_simprov_search_mix.py simprov.synth-v3 --tag synth-v3-mix \
        --comparator simprov_comparator.synth-v2 --photo-dir ~/provjax-photos

The share is chosen on the validation split (with the folder's test-split
photographs); see provjax.provenance.release.release_search_mix.
"""

import argparse
import json

from provjax.provenance.release import release_search_mix


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("descriptor", help="released descriptor weights (arch.tag)")
  p.add_argument("--tag", required=True, help="the new release is simprov.<tag>")
  p.add_argument("--comparator", required=True, help="released comparator for the benchmark")
  p.add_argument("--photo-dir", default=None, help="the training photo folder (its test split)")
  args = p.parse_args()
  out = release_search_mix(args.descriptor, args.comparator, args.tag, args.photo_dir)
  print(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
  main()
