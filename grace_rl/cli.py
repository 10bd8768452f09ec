"""`grace-rl` command line: `train`, `eval`, `encode`, `inspect`, `report`. Each subcommand lives in its own module
exposing `add_parser(subparsers)`; heavy imports happen inside the command."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from grace_rl import errors

# Modules that contribute subcommands; each defines add_parser(subparsers) and sets a `func` default.
COMMAND_MODULES = [
    "grace_rl.commands.train",
    "grace_rl.commands.encode_eval",
    "grace_rl.commands.inspect_report",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grace-rl", description="GRACE: rationales that become embeddings.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    parser.add_argument(errors.DEBUG_FLAG, action="store_true", help="Show the traceback of an error (anywhere).")
    sub = parser.add_subparsers(dest="command", required=True)
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
