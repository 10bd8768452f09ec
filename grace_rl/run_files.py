"""What a run writes to its `output_dir`: the file names, the atomic write, and the JSONL reader.

Standard library only, so the inspector (`grace_rl.inspection`), the trainer and `rollout.corpus_index` can all use it.

Layout of an output directory:

    grace_run.json          run fingerprint (`grace_rl.resume`)
    rationales.jsonl        one record per rollout per step (`grace_rl.rationale_log.RationaleLog`)
    metrics.jsonl           one trainer log per line (`grace_rl.rationale_log.MetricsLogCallback`)
    grace_summary.json      STS before/after, seconds per step, paths (`grace_rl.train.main`)
    corpus_index/           the FAISS corpus index (`rollout.corpus_index.CorpusIndex.save`)
    checkpoint-N/           HF Trainer's checkpoint + corpus_index/ + grace_checkpoint.json (written last)
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

RUN_FILE = "grace_run.json"
RATIONALE_LOG = "rationales.jsonl"
METRICS_LOG = "metrics.jsonl"
SUMMARY_FILE = "grace_summary.json"
CORPUS_INDEX_DIR = "corpus_index"
CHECKPOINT_MARKER = "grace_checkpoint.json"
RUN_FILES = (RUN_FILE, RATIONALE_LOG, METRICS_LOG, SUMMARY_FILE)  # plus checkpoint-*/ and corpus_index/


class JsonlError(ValueError):
    """A JSONL line is not valid JSON; the message names the file and the 1-based line."""


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
    U+2028, U+0085, a form feed, ...). An unparsable line raises :class:`JsonlError` naming `path:line`; with
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
    lines = path.read_text(encoding="utf-8").split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            if skip_torn_tail and i == last:
                logger.warning(
                    "%s: skipping a torn last line (%d bytes; the run may still be writing).", path, len(line)
                )
                return
            raise JsonlError(f"{path}:{i + 1}: line {i + 1} is not valid JSON ({err.msg}); fix or remove it.") from err
        yield i + 1, value


def read_jsonl(path: str | Path, skip_torn_tail: bool = False) -> list[Any]:
    """Every value of a JSONL file (see :func:`iter_jsonl`)."""
    return [value for _, value in iter_jsonl(path, skip_torn_tail)]
