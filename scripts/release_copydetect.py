"""Export the trained CopyNCE descriptor, matcher and SSCD with measured cards.

    python scripts/release_copydetect.py --descriptor runs/copynce_tiny \
        --matcher runs/copynce_matcher_tiny --sscd runs/sscd_tiny --tag synth-v1

See provjax.copydetect.release for what is measured and chosen (on val only).
"""

from provjax.copydetect.release import main

if __name__ == "__main__":
  main()
