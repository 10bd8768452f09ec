"""Files written and read safely: the atomic write, the JSONL reader (a key given twice refused) and the check that
an input is a regular file (standard library only).

They live in `rollout` because the corpus reader and the corpus index need them and `rollout` imports nothing from
`grace_rl`; `grace_rl.run_files` re-exports them for the run's own files.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rollout.errors import UserError

logger = logging.getLogger(__name__)


class JsonlError(UserError):
    """A JSONL line is not UTF-8, not valid JSON, or holds a key twice; the message names the file and the 1-based
    line."""


class DuplicateKeyError(ValueError):
    """A JSON object holds `key` twice (raised by :func:`unique_keys`; readers re-raise it naming file and line)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} is given twice")
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads(..., object_pairs_hook=unique_keys)`: the object as a dict, refusing a key given twice."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return result


def check_regular_file(path: str | Path, what: str) -> None:
    """Refuse an input that is not a regular file (a named pipe, device or socket): readers open a file more than
    once (a digest, then the rows), and a pipe would block the second open forever."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing: the reader says so, naming the option
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return
    kind = "named pipe (FIFO)" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
    raise UserError(
        f"{what} {path}: is a {kind}, not a regular file; it would be read more than once (a pipe blocks or comes "
        "back empty) - save the data to a file and pass that."
    )


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
    except OSError as err:
        raise write_error(path, err) from err
    finally:
        tmp.unlink(missing_ok=True)


def write_error(path: str | Path, err: OSError) -> OSError:
    """`err` (raised while writing `path`, maybe through a temp file next to it) as an OSError naming `path`, what
    went wrong and what to do; nothing was written to `path`."""
    path = Path(path)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "the disk is full - free disk space and run the command again"
    elif err.errno == errno.ENOENT and not path.parent.is_dir():
        why = f"the folder {path.parent} does not exist - create it or choose another output path"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = f"the folder {path.parent} is not writable - choose another output path or fix its permissions"
    else:
        why = f"{err.strerror or err} - check the output path"
    return OSError(err.errno, f"cannot write {path}: {why}; nothing was written there")


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
            value = json.loads(raw.decode("utf-8-sig" if i == 0 else "utf-8"), object_pairs_hook=unique_keys)
        except DuplicateKeyError as err:
            raise JsonlError(
                f"{path}:{i + 1}: field {err.key!r} is given twice in one object (JSON would keep the last value "
                "silently) - keep one."
            ) from err
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
