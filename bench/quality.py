"""Embedding quality under the evaluation protocol (`grace-rl eval protocol`, :mod:`grace_rl.eval.protocol`):
base vs trained models at matched greedy rationale budgets on STS-B dev and SICK trial, deduplicated against every
training text, with 95% bootstrap intervals and the headline (trained at its training budget minus base at its best
budget, paired interval). A thin wrapper that adds `--threads` and writes `bench/results/quality.{json,png}`.

    nice -n 10 python bench/quality.py --threads 1 --limit 100 --budgets 0,8         # base only, a small slice
    nice -n 10 python bench/quality.py --threads 1 --trained runs/seed1 runs/seed2    # the full protocol
"""

from __future__ import annotations

import argparse
import json
import logging

from _common import RESULTS, add_threads_option, machine, set_threads

from grace_rl.commands.eval_protocol import add_protocol_options, run_protocol_command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_protocol_options(parser, out_default=str(RESULTS / "quality"))
    add_threads_option(parser)
    cli = parser.parse_args()
    set_threads(cli.threads)
    logging.basicConfig(level=logging.WARNING)
    print(f"machine: {json.dumps(machine())}")
    run_protocol_command(cli)


if __name__ == "__main__":
    main()
