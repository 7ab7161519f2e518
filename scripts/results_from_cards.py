"""Record released models' card figures as results rows (results/<benchmark>.csv).

Every figure of `checkpoints/<name>/model_card.md` becomes one row, with the
release's date, machine and commit; a model whose rows are already there is
left as it is, so the script is safe to rerun after each release:

    python scripts/results_from_cards.py                 # every released model
    python scripts/results_from_cards.py trufor.synth-v1
"""

import argparse
import sys

from provjax import results, weights

# The script each released family's card was measured by.
RELEASED_BY = {
    "simprov": "scripts/release_simprov.py",
    "simprov_comparator": "scripts/release_simprov.py",
    "trufor": "scripts/release_trufor.py",
    "repmix": "scripts/release_repmix.py",
    "genzoo": "scripts/release_genzoo.py",
    "copynce": "scripts/release_copydetect.py",
    "copynce_matcher": "scripts/release_copydetect.py",
    "sscd": "scripts/release_copydetect.py",
    "safepaint": "scripts/release_safepaint.py",
    "vgg": "scripts/release_safepaint.py",
}


def _released_by(name: str, arch: str) -> str:
  """The script that measured a card. Re-releases of other weights (`weights_of`) have their
  own: a new operating point for a descriptor (`calibrated_with`), a new search mix, or
  verification added to a copy-detection protocol."""
  stored = weights.read_config(name)
  if "weights_of" in stored and arch == "copynce":
    return "scripts/release_copydetect_verification.py"
  if "weights_of" in stored:
    if "calibrated_with" in stored:
      return "scripts/release_simprov_operating_point.py"
    return "scripts/release_simprov_search_mix.py"
  return RELEASED_BY[arch]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("names", nargs="*", help="arch.tag (default: every released model)")
  parser.add_argument("--results", default=str(results.released_root()), help="results folder")
  args = parser.parse_args(argv)
  have = {(r["model"], r["tag"]) for r in results.read(args.results)}
  for name in args.names or weights.released():
    arch, _, tag = name.partition(".")
    if (arch, tag) in have:
      print(f"{name}: already recorded", file=sys.stderr)
      continue
    script = _released_by(name, arch)
    command = f"python {script} (figures of checkpoints/{name}/model_card.md)"
    benchmark, rows, ctx = results.card_rows(name, command)
    path = results.append(benchmark, rows, folder=args.results, **ctx)
    print(f"{name}: {len(rows)} rows -> {path}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
