"""Export trained SImProv descriptor + comparator to checkpoints/ with model cards.

    python scripts/release_simprov.py --descriptor-workdir runs/desc-tiny \
        --comparator-workdir runs/cmp-tiny --tag synth-v2
"""

from provjax.provenance.release import main

if __name__ == "__main__":
  main()
