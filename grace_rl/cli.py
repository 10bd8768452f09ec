"""`grace-rl` command line: `train`, `eval`, `encode`, `inspect`, `report`. Each subcommand lives in its own module
exposing `add_parser(subparsers)`; heavy imports happen inside the command."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from grace_rl import errors
from grace_rl.commands import HelpFormatter, examples

# Modules that contribute subcommands; each defines add_parser(subparsers) and sets a `func` default.
COMMAND_MODULES = [
    "grace_rl.commands.train",
    "grace_rl.commands.encode_eval",
    "grace_rl.commands.inspect_report",
    "grace_rl.commands.baseline",
]


EPILOG = examples(
    "grace-rl train --config configs/grace_smollm2_cpu.yaml --max_steps 2   # any recipe key as --key value",
    "grace-rl inspect runs/grace_smollm2_cpu --top 3 --by reward",
    "grace-rl report runs/grace_smollm2_cpu -o runs/grace_smollm2_cpu/report.html",
    "grace-rl encode --model runs/grace_smollm2_cpu --input texts.txt --output emb.npy",
    "grace-rl eval sts --data data/stsb_dev_sample.tsv --model runs/grace_smollm2_cpu --limit 100",
    "",
    "`grace-rl COMMAND --help` shows a command's options. Not on PATH? Use .venv/bin/grace-rl, or first run",
    "`. .venv/bin/activate` in the repository.",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grace-rl",
        description="GRACE: an LLM learns (GRPO) to write rationales that make its pooled hidden states a good "
        "text embedding. Train, inspect the rationales, evaluate, embed.",
        formatter_class=HelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    parser.add_argument(errors.DEBUG_FLAG, action="store_true", help="Show the traceback of an error (anywhere).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv, debug = errors.pop_debug(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "passthrough", False):  # `train`: everything after the verb goes to TrlParser
        args.trl_args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if not getattr(args, "passthrough", False):  # `train` configures logging itself (INFO), after its heavy imports
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
        )
    return errors.run_command(args.func, args, debug=debug)  # a known error: one line, exit 2


if __name__ == "__main__":
    sys.exit(main())
