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

import errno
import fnmatch
import json
import logging
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grace_rl.errors import UserError

logger = logging.getLogger(__name__)

RUN_FILE = "grace_run.json"
RATIONALE_LOG = "rationales.jsonl"
METRICS_LOG = "metrics.jsonl"
SUMMARY_FILE = "grace_summary.json"
CORPUS_INDEX_DIR = "corpus_index"
CHECKPOINT_MARKER = "grace_checkpoint.json"
RUN_FILES = (RUN_FILE, RATIONALE_LOG, METRICS_LOG, SUMMARY_FILE)  # plus checkpoint-*/ and corpus_index/


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


# What training writes into a run directory, besides RUN_FILES: weights, tokenizer, configs, the model card. An
# output path naming one of these inside a run directory (or any file under its checkpoint-N/ or corpus_index/)
# is refused: `report RUN -o RUN/adapter_model.safetensors` would leave the run unusable.
RUN_FILE_PATTERNS = (
    *RUN_FILES,
    "grace_config.json",
    "README.md",
    "config.json",
    "generation_config.json",
    "adapter_config.json",
    "training_args.bin",
    "chat_template.jinja",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "*.safetensors",
    "*.safetensors.index.json",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.faiss",
)
RUN_MARKERS = (RUN_FILE, "grace_config.json", CHECKPOINT_MARKER)  # a folder holding one of these is a run's


def run_file_owner(target: Path) -> Path | None:
    """The run directory whose file `target` (resolved, existing) is, or `None`.

    A run directory holds :data:`RUN_MARKERS` (a training `output_dir`, or one of its `checkpoint-N`). `target` is a
    run file when it lies under the run's `checkpoint-N/` or `corpus_index/`, or matches :data:`RUN_FILE_PATTERNS`.
    """
    for depth, folder in enumerate(target.parents):
        if depth > 3:
            return None
        if not any((folder / marker).is_file() for marker in RUN_MARKERS):
            continue
        inner = target.relative_to(folder).parts
        if len(inner) > 1 and (inner[0].startswith("checkpoint-") or inner[0] == CORPUS_INDEX_DIR):
            return folder
        if len(inner) == 1 and any(fnmatch.fnmatch(target.name, pattern) for pattern in RUN_FILE_PATTERNS):
            return folder
    return None


def refuse_overwriting(
    out: str | Path, inputs: list[str | Path], flag: str = "-o", folder_must_exist: bool = False
) -> Path:
    """`out`, resolved, unless it is one of `inputs` (after resolving links), a directory, or an existing file of a
    run directory (:func:`run_file_owner`: weights, tokenizer, configs, logs, checkpoints): writing there would
    destroy what is being read, or the run. Also checked here, before the work: `out`'s folder exists (or can be
    made) and is writable.

    Args:
        out (`str` or `Path`):
            The output file.
        inputs (`list[str | Path]`):
            The files the command reads.
        flag (`str`, *optional*, defaults to `"-o"`):
            The option that named `out` (for the message).
        folder_must_exist (`bool`, *optional*, defaults to `False`):
            Refuse a missing folder (the command does not create it) instead of checking that it can be made.

    Returns:
        `Path`: `out`, resolved.
    """
    target = Path(out).expanduser().resolve()
    if target.is_dir():
        raise IsADirectoryError(f"{flag} {out}: is a directory; give a file name, e.g. {Path(out) / 'report.html'}.")
    for path in inputs:
        if Path(path).expanduser().resolve() == target:
            raise UserError(f"{flag} {out}: is an input of this command ({path}); choose another output file.")
    if target.exists():
        owner = run_file_owner(target)
        if owner is not None:
            raise UserError(
                f"{flag} {out}: is a file of the run in {owner} (writing there would destroy the run); choose an "
                f"output file that is not one of the run's, e.g. {owner / 'report.html'}."
            )
    if folder_must_exist and not target.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT,
            f"{flag} {out}: the folder {target.parent} does not exist - create it (mkdir -p {target.parent}) or "
            "choose another output path",
        )
    check_writable_folder(target.parent, flag, out)
    return target


def refuse_outputs(
    given: str | Path, written: list[str | Path], inputs: list[str | Path], flag: str, folder_must_exist: bool = False
) -> list[Path]:
    """:func:`refuse_overwriting` for every file a command writes (`written`, e.g. `PREFIX.json` and `PREFIX.png`
    of `--out PREFIX`); `given`, the path as typed, is refused too when it names an existing run file."""
    given_path = Path(given).expanduser().resolve()
    if given_path.is_file() and (owner := run_file_owner(given_path)) is not None:
        raise UserError(
            f"{flag} {given}: is a file of the run in {owner} (the command writes next to it, under that name); "
            f"choose an output path that is not one of the run's files, e.g. {owner / 'eval'}."
        )
    return [refuse_overwriting(path, inputs, flag, folder_must_exist) for path in written]


def check_writable_folder(folder: Path, flag: str, out: str | Path) -> None:
    """The folder an output goes to: an existing writable directory, or one that can be made (its nearest existing
    ancestor is a writable directory)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} {out}: {existing} is not a directory; choose an output path in a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            errno.EACCES,
            f"{flag} {out}: the folder {existing} is not writable - choose an output path in a folder you can write "
            "to, or fix its permissions",
        )


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
