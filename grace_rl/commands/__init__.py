"""Subcommands of the `grace-rl` CLI (`train`, `encode_eval`, `inspect_report`): argument parsing and printing only
(the only place that prints to stdout); each imports its heavy modules when it runs, so `--help` answers at once."""

from __future__ import annotations

import argparse

EXAMPLES = "examples:\n"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default (except `None` / `False`, whose meaning the help text states) and keeps the
    line breaks of the examples epilog (other text is wrapped as usual)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(EXAMPLES):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def examples(*lines: str) -> str:
    """An epilog listing example command lines (printed as written)."""
    return EXAMPLES + "\n".join(f"  {line}" if line else "" for line in lines)
