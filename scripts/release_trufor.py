"""Export a trained TruFor (phase-3 work dir) to checkpoints/ with a measured model card.

    python scripts/release_trufor.py --ph3-workdir runs/trufor_ph3_tiny \
        --ph2-workdir runs/trufor_ph2_tiny --np-workdir runs/trufor_np_tiny --tag synth-v1
"""

from provjax.forgery.release import main

if __name__ == "__main__":
  main()
