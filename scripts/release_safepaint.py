"""Export the trained SafePaint with a measured card (red-team and blue-team rounds included).

    python scripts/release_safepaint.py --run runs/safepaint_tiny \
        --redteam runs/safepaint_red --blueteam runs/trufor_blue --tag synth-v1

See provjax.inpainting.release for what is measured and chosen (on val only).
"""

from provjax.inpainting.release import main

if __name__ == "__main__":
  main()
