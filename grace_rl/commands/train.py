"""`grace-rl train --config RECIPE.yaml [--key value ...]`: the training entry point (TrlParser behind it, like
`trl grpo`). `scripts/train_grace.py` calls the same function for the `deepspeed` / `accelerate launch` launchers.

torch, transformers and TRL are imported only when the command runs, so `grace-rl --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def run_training(argv: list[str]) -> dict[str, Any]:
    """Parse a recipe plus overrides with `trl.TrlParser` and train; prints the summary and where to look next."""
    from grace_rl.train import main, parse_args

    summary = main(*parse_args(argv))
    from accelerate import PartialState

    if not PartialState().is_main_process:  # every rank returns the same summary; one prints it
        return summary
    print(json.dumps(summary, indent=2))
    out = summary.get("output_dir")
    if out:
        if summary.get("before") and summary.get("after"):
            before, after = summary["before"]["spearman"], summary["after"]["spearman"]
            print(f"\nSTS Spearman x100 (greedy rationale): before {before} -> after {after}")
        print(f"Model (adapter or weights) + rationale log: {out}")
        print(f"  look at the rationales:  grace-rl inspect {out} --top 3 --by reward")
        print(f"  HTML report:             grace-rl report {out} -o {out}/report.html")
        print(f"  embed text:              grace-rl encode --model {out} --input texts.txt --output emb.npy")
    return summary


def cmd_train(args: argparse.Namespace) -> int:
    run_training(args.trl_args)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        add_help=False,  # `grace-rl train --help` lists every recipe key (TrlParser's help)
        help="Train GRACE: --config RECIPE.yaml plus any recipe key as --key value (see `grace-rl train --help`).",
    )
    train.set_defaults(func=cmd_train, passthrough=True)
