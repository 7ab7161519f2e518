"""The `provjax` command. Parses flags and calls library code; no logic here.

Exit codes: 0 success, 2 bad arguments, 1 when an input could not be
processed (the rest of a batch still runs).
"""

from __future__ import annotations

import argparse
import json
import sys

from provjax import systems


def planned_epilog() -> str:
  """The commands of systems whose package has not arrived yet (empty once all have)."""
  lines = [f"  {commands:<11} {summary}" for commands, summary in systems.planned().values()]
  if not lines:
    return ""
  return "planned (arrive with their systems; not available yet):\n" + "\n".join(lines) + "\n"


def _cmd_models(args) -> int:
  import provjax

  for name in provjax.list_models(pretrained=args.pretrained):
    print(name)
  return 0


def _cmd_train(args) -> int:
  from provjax.config import load_config
  from provjax.train.trainer import train

  config = load_config(args.config, args.overrides)
  result = train(config, args.workdir, progress=not args.no_progress)
  print(json.dumps({"step": result.step, "stopped_early": result.stopped_early, **result.metrics}))
  return 0


def _checkpoint_label(config, checkpoint: str, step) -> str:
  """`arch.tag` of released weights; `arch.<workdir name>@<step>` of a training work dir."""
  from pathlib import Path

  if not Path(checkpoint).is_dir():
    return checkpoint
  arch = config.model.name.partition(".")[0] if "model" in config else config.task
  return f"{arch}.{Path(checkpoint).resolve().name}@{step}"


def _cmd_eval(args) -> int:
  from provjax import results

  if args.benchmark in args.system_evals:
    return args.system_evals[args.benchmark](args)
  if args.benchmark == "isc":
    from pathlib import Path

    from provjax.copydetect.isc_io import evaluate_files

    if not (args.gt and args.preds):
      raise ValueError("eval isc needs --gt GT.csv and --preds PREDS.csv")
    out = evaluate_files(args.gt, args.preds, max_results=args.max_results)
    print(json.dumps(out))
    label = args.label or f"preds.{Path(args.preds).stem}"
    results.record(args, "isc", results.rows_from_metrics(label, Path(args.gt).stem, out))
    return 0
  if not (args.config and args.checkpoint):
    raise ValueError("eval needs --config and --checkpoint (or: eval isc --gt ... --preds ...)")
  from provjax.config import load_config
  from provjax.train.evaluate import evaluate_checkpoint

  config = load_config(args.config, args.overrides)
  out = evaluate_checkpoint(config, args.checkpoint)
  print(json.dumps(out))
  # The benchmark a config scores: its eval.benchmark when set (a public one), else the task's own.
  evaluation = config.get("eval", {})
  benchmark = evaluation.get("benchmark") or config.task
  split = evaluation.get("split") or "test"
  label = args.label or _checkpoint_label(config, args.checkpoint, out["step"])
  metrics = {k: v for k, v in out.items() if k not in ("checkpoint", "step")}
  results.record(args, benchmark, results.rows_from_metrics(label, split, metrics))
  return 0


def _cmd_bench(args) -> int:
  from provjax import bench

  bench.run(args.only, quick=args.quick)
  return 0


def _split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
  """Pull `--config.a.b=value` items out before argparse sees them."""
  rest, overrides = [], []
  for item in argv:
    if item.startswith("--config.") and "=" in item:
      overrides.append(item[len("--config.") :])
    else:
      rest.append(item)
  return rest, overrides


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="provjax",
      description="JAX/Flax model zoo for image provenance and forensics.",
      epilog=planned_epilog(),
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  from provjax import __version__

  parser.add_argument("--version", action="version", version=f"provjax {__version__}")
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  plugins = systems.plugins("cli")

  p = sub.add_parser("models", help="list the zoo (architectures, or released weights)")
  p.add_argument("--pretrained", action="store_true", help="list released weights (arch.tag)")
  p.set_defaults(fn=_cmd_models)

  p = sub.add_parser(
      "train",
      help="train a config; resumes from --workdir automatically",
      epilog="override any config value with --config.a.b=value",
  )
  p.add_argument("--config", required=True, help="configs/<system>/<exp>.py[:variant]")
  p.add_argument("--workdir", required=True)
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(fn=_cmd_train)

  p = sub.add_parser(
      "eval",
      help="evaluate a training work dir or released weights, or score ISC predictions",
      epilog="eval isc --gt GT.csv --preds PREDS.csv prints the official ISC2021 metrics as JSON",
  )
  # Benchmarks a system scores itself: its cli module's `add_evals(parser)` adds their flags
  # and returns {name: (fn(args), summary)}.
  system_evals = {}
  for module in plugins:
    if hasattr(module, "add_evals"):
      system_evals.update(module.add_evals(p))
  summaries = {"isc": "score an ISC prediction CSV"}
  summaries.update({name: summary for name, (_, summary) in system_evals.items()})
  p.add_argument(
      "benchmark",
      nargs="?",
      choices=list(summaries),
      help="; ".join(f"{name}: {summary}" for name, summary in summaries.items()),
  )
  p.add_argument("--config", help="configs/<system>/<exp>.py[:variant]")
  p.add_argument("--checkpoint", help="a --workdir of `provjax train`, or arch.tag")
  p.add_argument("--gt", help="ISC ground-truth CSV (query_id,reference_id)")
  p.add_argument("--preds", help="ISC prediction CSV (query_id,reference_id,score)")
  p.add_argument("--max-results", type=int, default=None, help="reject more predictions than this")
  p.add_argument(
      "--results",
      metavar="DIR",
      default=None,
      help="append the measured rows to DIR/<benchmark>.csv (default $PROVJAX_RESULTS or results/)",
  )
  p.add_argument("--no-results", action="store_true", help="print only; append no rows")
  p.add_argument(
      "--label", metavar="ARCH.TAG", help="the model the rows name (default: from --checkpoint)"
  )
  p.set_defaults(fn=_cmd_eval, system_evals={k: fn for k, (fn, _) in system_evals.items()})

  p = sub.add_parser("bench", help="speed and throughput figures (printed, not asserted)")
  p.add_argument("--only", nargs="*", default=None, help="subset of benchmarks to run")
  p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
  p.set_defaults(fn=_cmd_bench)

  from provjax import analyze, export, leaderboard

  analyze.add_command(sub)
  leaderboard.add_command(sub)
  export.add_command(sub)

  p = sub.add_parser("convert", help="official PyTorch weights -> a released-weights folder")
  convert = p.add_subparsers(dest="system", required=True, metavar="SYSTEM")
  for module in plugins:  # each system package registers its own commands
    module.add_commands(sub)
    if hasattr(module, "add_converters"):  # and its converters under `convert`
      module.add_converters(convert)
  return parser


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  argv, overrides = _split_overrides(argv)
  args = build_parser().parse_args(argv)
  args.overrides = overrides
  from provjax.train.trainer import NonFiniteError
  from provjax.weights import CorruptWeightsError

  try:
    return args.fn(args)
  except (NonFiniteError, CorruptWeightsError) as e:
    # Not a bad argument: the run or the installed weights failed.
    print(f"provjax {args.command}: error: {e}", file=sys.stderr)
    return 1
  except (FileNotFoundError, KeyError, ValueError) as e:
    print(f"provjax {args.command}: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
