"""Files written and read safely: the atomic write and the JSONL reader (standard library only).

They live in `rollout` because the corpus reader and the corpus index need them and `rollout` imports nothing from
`grace_rl`; `grace_rl.run_files` re-exports them for the run's own files.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class JsonlError(ValueError):
    """A JSONL line is not UTF-8 or not valid JSON; the message names the file and the 1-based line."""


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write `data` to a temp file next to `path`, fsync it, then `os.replace` it onto `path`.

    A reader sees either the old file or the new one, never a partial write; the temp file is removed on failure.

    Args:
        path (`str` or `Path`):
            Destination file; its directory must exist.
        data (`bytes` or `str`):
            Contents (a `str` is written as UTF-8).
    """
    path = Path(path)
    blob = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with tmp.open("wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def iter_jsonl(path: str | Path, skip_torn_tail: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield `(line_number, value)` for every non-blank line of a JSONL file.

    Lines are split on `"\\n"` only (not `str.splitlines`, which would also split inside a JSON string holding
    U+2028, U+0085, a form feed, ...) and decoded as UTF-8 one by one (a leading BOM is allowed). A line that is not
    UTF-8 or not JSON raises :class:`JsonlError` naming `path:line`; with
    `skip_torn_tail` an unparsable *last* line (a writer still appending, or killed mid-line) is skipped with a
    warning instead.

    Args:
        path (`str` or `Path`):
            The JSONL file.
        skip_torn_tail (`bool`, defaults to `False`):
            Skip (with a warning) an unparsable last line instead of raising.

    Returns:
        `Iterator[tuple[int, Any]]`: the 1-based line number and the parsed value of each non-blank line.

    Example:
        >>> list(iter_jsonl("rows.jsonl"))  # doctest: +SKIP
        [(1, {'query': 'a', 'positive': 'b'}), (3, {'query': 'c', 'positive': 'd'})]
    """
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw.decode("utf-8-sig" if i == 0 else "utf-8"))
        except UnicodeDecodeError as err:
            if skip_torn_tail and i == last:
                logger.warning("%s: skipping a torn last line (%d bytes; not UTF-8).", path, len(raw))
                return
            raise JsonlError(
                f"{path}:{i + 1}: byte {err.start + 1} of the line is not UTF-8 ({err.reason}); save the file as "
                "UTF-8 text (is it a binary file?)."
            ) from err
        except json.JSONDecodeError as err:
            if skip_torn_tail and i == last:
                logger.warning(
                    "%s: skipping a torn last line (%d bytes; the run may still be writing).", path, len(raw)
                )
                return
            raise JsonlError(
                f"{path}:{i + 1}: line {i + 1} is not valid JSON ({err.msg} at column {err.colno}) - fix or remove it."
            ) from err
        yield i + 1, value


def read_jsonl(path: str | Path, skip_torn_tail: bool = False) -> list[Any]:
    """Every value of a JSONL file (see :func:`iter_jsonl`)."""
    return [value for _, value in iter_jsonl(path, skip_torn_tail)]
