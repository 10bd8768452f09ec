"""The error layer of the entry points (`grace-rl ...` and `scripts/train_grace.py`): a known error (bad input, a
refused output directory, a full disk) prints ONE line and exits with status 2; the traceback is kept for `--debug`
or `GRACE_RL_DEBUG=1`.

Known errors are the ones grace-rl raises about the user's input, :class:`UserError` (config invariants,
:class:`grace_rl.data.DataValidationError`, :class:`grace_rl.run_files.JsonlError`,
:class:`grace_rl.resume.RunMismatchError`, ...), :class:`GraceError`, and `OSError`: the I/O errors of the files the
user named (missing files, a full disk, :class:`grace_rl.resume.CheckpointSaveError`, ...). Their messages name the
file (`<file>:<line>: ...` where there is a line) and say what to do.

Anything else, a plain `ValueError` from inside a library call included, is a bug (ours or a library's), not the
user's mistake: it prints `internal error: ...`, the traceback and where to report it, and exits with status 1.

Standard library only (plus `rollout.errors`, which defines :class:`UserError`): importing it costs nothing on the
CLI's fast path.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from rollout.errors import UserError  # defined in the lowest layer, so `rollout` can raise it too

DEBUG_FLAG = "--debug"
DEBUG_ENV = "GRACE_RL_DEBUG"
EXIT_BAD_INPUT = 2


class GraceError(Exception):
    """A known failure that is neither bad input nor an OS error (e.g. training ran zero steps)."""


class ZeroStepsError(GraceError):
    """Training finished without a single optimizer step: there is no result to save or report."""


KNOWN_ERRORS: tuple[type[BaseException], ...] = (UserError, OSError, GraceError)
EXIT_INTERNAL = 1
MAX_CHARS = 2000  # a message longer than this is cut (a pathological value quoted in it)
REPORT_TO = (
    "This is a bug in grace-rl or a library it calls, not a mistake in your input. Please report it to the grace-rl "
    "maintainers (the project's issue tracker) with the command line and the traceback above."
)


def pop_debug(argv: list[str]) -> tuple[list[str], bool]:
    """`argv` without `--debug`, and whether debugging is on (`--debug` anywhere, or `GRACE_RL_DEBUG=1`).

    `--debug` is taken out before any parser sees it, so it works after a subcommand too (`grace-rl train --debug`),
    where everything else goes to TRL's parser.
    """
    env = os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")
    return [a for a in argv if a != DEBUG_FLAG], env or DEBUG_FLAG in argv


def one_line(err: BaseException) -> str:
    """The error's message on one line: its lines joined with `; `, whitespace collapsed, at most `MAX_CHARS`."""
    text = str(err) if str(err) else type(err).__name__
    if isinstance(err, KeyError) and err.args:
        text = f"missing key {err.args[0]!r}"
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    parts = [" ".join(line.split()) for line in text.splitlines()]
    line = "; ".join(p for p in parts if p)
    return line if len(line) <= MAX_CHARS else line[: MAX_CHARS - 3] + "..."


def run_command(func: Callable[..., Any], *args: Any, debug: bool = False, stream: TextIO | None = None) -> int:
    """Call `func(*args)`; return its exit status, or `2` after printing `error: <message>` for a known error, or `1`
    after printing `internal error: ...`, the traceback and where to report it for any other exception.

    Args:
        func (`Callable`):
            The command; its return value (`None` = 0) is the exit status.
        *args:
            Passed to `func`.
        debug (`bool`, *optional*, defaults to `False`):
            Re-raise instead (the caller's traceback is printed as usual).
        stream (`TextIO`, *optional*):
            Where the line goes (default `sys.stderr`).

    Returns:
        `int`: the exit status.
    """
    try:
        return int(func(*args) or 0)
    except KNOWN_ERRORS as err:
        if debug:
            raise
        print(f"error: {one_line(err)}", file=stream or sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as err:  # noqa: BLE001 - the last net: a bug, shown as one (with its traceback)
        if debug:
            raise
        report_internal_error(err, stream or sys.stderr)
        return EXIT_INTERNAL


def report_internal_error(err: BaseException, stream: TextIO) -> None:
    """`internal error: <Type>: <message>`, the traceback, and where to report it."""
    import traceback

    print(f"internal error: {type(err).__name__}: {one_line(err)}", file=stream)
    traceback.print_exception(type(err), err, err.__traceback__, file=stream)
    print(REPORT_TO, file=stream)
