"""Export trained zoo generators (configs/repmix/generator.py) with measured cards.

python scripts/release_genzoo.py --workdirs runs/gen_tconv_s0 runs/gen_nearest_s0 ...
"""

from provjax.attribution.release_genzoo import main

if __name__ == "__main__":
  main()
