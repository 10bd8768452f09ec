"""`grace-rl train --config RECIPE.yaml [--key value ...]`: the training entry point (TrlParser behind it, like
`trl grpo`). `scripts/train_grace.py` calls the same function for the `deepspeed` / `accelerate launch` launchers.

torch, transformers and TRL are imported only when the command runs, so `grace-rl --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

EXAMPLE_TEXT = "A man is playing a guitar."


def _shell_path(path: str | Path) -> str:
    """`path` relative to the working directory when it lies inside it (as a person would type it), else absolute."""
    path = Path(os.path.abspath(path))  # no symlink resolution: .venv/bin/python must stay the venv's python
    try:
        return shlex.quote(str(path.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(path))


def grace_rl_command() -> str:
    """How to run `grace-rl` from a new shell (where the venv is not active): the `grace-rl` script installed next to
    this interpreter (`.venv/bin/grace-rl`), else `python -m grace_rl.cli` with this interpreter."""
    script = Path(sys.executable).parent / "grace-rl"
    if script.is_file() and os.access(script, os.X_OK):
        return _shell_path(script)
    return f"{_shell_path(sys.executable)} -m grace_rl.cli"


def follow_up_commands(output_dir: str | Path) -> list[tuple[str, str]]:
    """(what, command line) pairs that work as printed in a new shell started in the current directory."""
    exe, out = grace_rl_command(), _shell_path(output_dir)
    embed = f"{out}/example_embedding.npy"
    return [
        ("look at the rationales", f"{exe} inspect {out} --top 3 --by reward"),
        ("HTML report", f"{exe} report {out} -o {out}/report.html"),
        ("embed text", f"echo {shlex.quote(EXAMPLE_TEXT)} | {exe} encode --model {out} --input - --output {embed}"),
    ]


def saved_model_kind(output_dir: str | Path) -> str:
    """What training saved in `output_dir`, in words: a LoRA adapter or the full weights."""
    if Path(output_dir, "adapter_config.json").is_file():
        return "LoRA adapter"
    return "full weights"


def print_next_steps(summary: dict[str, Any]) -> None:
    """Where the run is and the commands to look at it (copy-paste ready, from this directory)."""
    out = summary.get("output_dir")
    if not out:
        return
    print(f"Model ({saved_model_kind(out)}), model card (README.md) + rationale log: {out}")
    print(f"Next (in a new shell too, from {Path.cwd()}):")
    commands = follow_up_commands(out)
    width = max(len(what) for what, _ in commands) + 2
    for what, line in commands:
        print(f"  {what + ':':<{width}} {line}")
    activate = Path(sys.executable).parent / "activate"
    if activate.is_file():
        print(f"  (or run `. {_shell_path(activate)}` once in a shell, then plain `grace-rl ...`)")


def run_training(argv: list[str]) -> dict[str, Any]:
    """Parse a recipe plus overrides with `trl.TrlParser` and train; prints the summary and where to look next."""
    from grace_rl.known_warnings import silence_known_warnings

    silence_known_warnings()
    from grace_rl.model_card import bar_note
    from grace_rl.train import main, parse_args

    summary = main(*parse_args(argv))
    from accelerate import PartialState

    if not PartialState().is_main_process:  # every rank returns the same summary; one prints it
        return summary
    print(json.dumps(summary, indent=2))
    if summary.get("before") and summary.get("after"):
        before, after = summary["before"], summary["after"]
        budget = after["rationale_tokens"]
        print(f"\nSTS Spearman x100, {after['n']} held-out pairs, greedy rationales of up to {budget} tokens:")
        print(f"  base at each budget: {', '.join(f'{b}: {v}' for b, v in before['by_budget'].items())}")
        if before.get("by_budget_default_instruction"):
            default = before["by_budget_default_instruction"]
            print(f"  base, default instruction: {', '.join(f'{b}: {v}' for b, v in default.items())}")
        print(f"  before {before['spearman']} -> after {after['spearman']} (both at {budget} tokens)")
    if summary.get("headline"):
        h = summary["headline"]
        print(
            f"  headline (trained at {h['training_budget']} tokens minus base at its best budget, "
            f"{h['base_best_budget']} tokens{bar_note(h)}): {h['trained_spearman']} - {h['base_spearman']} = "
            f"{h['difference']:+.2f} [{h['ci_low']:+.2f}, {h['ci_high']:+.2f}] (paired 95% bootstrap)"
        )
    print_next_steps(summary)
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
