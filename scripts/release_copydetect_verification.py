"""Release copy-detection descriptor weights again with local-feature verification chosen.

    python scripts/make_isc_folder.py make ~/provjax-photos /tmp/isc-dev --seed 1 \
        --copies 3 --bundled --skip-test
    python scripts/release_copydetect_verification.py copynce.synth-v2 \
        --dev /tmp/isc-dev --tag synth-v4

The development folder is made from photographs no test data holds (here the training
photo folder and the bundled sample photographs, less those the zoo's splits give to `test`,
which the card's synthetic test split is made of; the held-out photographs stay for testing).
How many candidates per query are verified, the query's SIFT upsampling, the keypoints'
contrast threshold, the inliers that earn no bonus and the thumbnail cosine of a
near-duplicate are chosen there by µAP; see provjax.copydetect.release.release_verification.
"""

import argparse
import json

from provjax.copydetect.release import release_verification


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("descriptor", help="released descriptor weights (arch.tag)")
  p.add_argument("--dev", required=True, help="an ISC folder (scripts/make_isc_folder.py make)")
  p.add_argument("--tag", required=True, help="the new release is copynce.<tag>")
  args = p.parse_args()
  out = release_verification(args.descriptor, args.tag, args.dev)
  print(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
  main()
