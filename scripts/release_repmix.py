"""Export a trained RepMix (configs/repmix/repmix.py) with a measured card.

    python scripts/release_repmix.py --workdir runs/repmix_tiny \
        --nomix-workdir runs/repmix_tiny_nomix --tag synth-v1
"""

from provjax.attribution.release import main

if __name__ == "__main__":
  main()
