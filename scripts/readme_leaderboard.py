"""Regenerate README.md's results section from the zoo's results rows.

The block between the two `leaderboard` markers is `provjax leaderboard
--format md` over the released models' rows (results/), so the README never
states a figure the rows do not hold; tests/test_leaderboard.py fails when
the README is out of date:

    python scripts/readme_leaderboard.py
"""

from pathlib import Path
import sys

from provjax import leaderboard, results

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"


def section() -> str:
  """What belongs between the markers."""
  body = leaderboard.markdown(leaderboard.build(folders=[results.released_root()]))
  return f"{START}\n{body.rstrip()}\n{END}"


def main() -> int:
  text = README.read_text()
  head, _, rest = text.partition(START)
  _, _, tail = rest.partition(END)
  if not rest:
    raise SystemExit(f"{README}: no {START} marker")
  README.write_text(head + section() + tail)
  print(f"{README}: results section regenerated", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
