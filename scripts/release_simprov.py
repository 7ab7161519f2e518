"""Export trained SImProv descriptor + comparator to checkpoints/ with model cards.

    python scripts/release_simprov.py --descriptor-workdir runs/desc-tiny \
        --comparator-workdir runs/cmp-tiny --tag synth-v2

A comparator alone, for a released descriptor (its operating point chosen on
the validation split with the descriptor's thumbnail share):

    python scripts/release_simprov.py --descriptor simprov.synth-v3-mix \
        --comparator-workdir runs/cmp-hard --tag synth-v4 --photo-dir ~/provjax-photos \
        --baseline simprov.synth-v3-mix simprov_comparator.synth-v2-mix
"""

from provjax.provenance.release import main

if __name__ == "__main__":
  main()
