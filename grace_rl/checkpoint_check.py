"""Checks of a checkpoint before resuming from it (called by :func:`grace_rl.resume.resolve_checkpoint`, so in the
preflight, before any log is cut): its commit marker `grace_checkpoint.json` is well formed and agrees with the logs
and `trainer_state.json`, and its weights / optimizer / scheduler / RNG files are readable.

The marker records the byte size of each log at save time; resuming cuts the log back to it. A record's `step` is the
optimizer step it trains, so at checkpoint N every record before the cut has `step <= N` and every record after it
`step > N`. A tampered or mismatched size breaks that, and is refused instead of silently cutting the log.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

from grace_rl.errors import UserError
from grace_rl.run_files import CHECKPOINT_MARKER, FORMAT_VERSION, METRICS_LOG, RATIONALE_LOG

TRAINER_STATE = "trainer_state.json"
PICKLED_STATE = ("optimizer.pt", "scheduler.pt", "rng_state.pth")  # torch.save zip archives written by this run
WEIGHTS = ("adapter_model.safetensors", "model.safetensors")
_STEP_RE = re.compile(r"^checkpoint-(\d+)$")
_WINDOW = 1 << 20  # bytes read around a cut to find the records next to it


class CheckpointError(UserError):
    """A checkpoint cannot be resumed from; the message names the file and what to do."""


def _fail(path: Path, what: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: {what} - resume from an earlier checkpoint-N (pass its path to --resume_from_checkpoint), or start "
        "over with --overwrite_output_dir true."
    )


def check_marker(checkpoint: Path, output_dir: Path) -> dict[str, Any]:
    """The marker of `checkpoint`, checked: format, `global_step` (= N of `checkpoint-N` and of
    `trainer_state.json`), and `log_bytes` (known logs, sizes at a line boundary that split the log at step N)."""
    path = checkpoint / CHECKPOINT_MARKER
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(path, f"unreadable commit marker ({err})") from err
    if not isinstance(marker, dict) or marker.get("format") != FORMAT_VERSION:
        raise _fail(path, f"not a grace-rl checkpoint marker of format {FORMAT_VERSION}")
    step, logs = marker.get("global_step"), marker.get("log_bytes", {})
    match = _STEP_RE.match(checkpoint.name)
    if isinstance(step, bool) or not isinstance(step, int) or (match and int(match.group(1)) != step):
        raise _fail(path, f"global_step {step!r} does not match the folder name {checkpoint.name}")
    if _trainer_step(checkpoint) not in (None, step):
        raise _fail(path, f"global_step {step} differs from {TRAINER_STATE}'s {_trainer_step(checkpoint)}")
    if not isinstance(logs, dict) or not set(logs) <= {RATIONALE_LOG, METRICS_LOG}:
        raise _fail(path, f"log_bytes must map {RATIONALE_LOG}/{METRICS_LOG} to sizes, got {logs!r}")
    for name, size in logs.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _fail(path, f"log_bytes[{name!r}] = {size!r} is not a byte size")
        _check_cut(path, output_dir / name, size, step, strict_after=name == RATIONALE_LOG)
    return marker


def _trainer_step(checkpoint: Path) -> int | None:
    try:
        return json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8")).get("global_step")
    except (OSError, ValueError, AttributeError):
        return None


def _check_cut(marker: Path, log: Path, size: int, step: int, strict_after: bool) -> None:
    """`size` splits `log` at a line boundary, after the records of step <= `step` and before later ones."""
    if not log.is_file():
        return  # truncate_log warns: the records before the checkpoint are gone
    current = log.stat().st_size
    if size > current:
        return  # the log lost bytes since (truncate_log warns and appends)
    with log.open("rb") as f:
        f.seek(max(0, size - _WINDOW))
        before = f.read(size - max(0, size - _WINDOW))
        after = f.read(_WINDOW)
    if size and not before.endswith(b"\n"):
        raise _fail(marker, f"log_bytes[{log.name!r}] = {size} cuts {log} in the middle of a line")
    last = _step_of(before.rstrip(b"\n").rsplit(b"\n", 1)[-1]) if size else None
    first = _step_of(after.split(b"\n", 1)[0]) if after else None
    if last is not None and last > step:
        raise _fail(marker, f"log_bytes[{log.name!r}] = {size} keeps records of step {last} > {step} in {log}")
    if strict_after and first is not None and first <= step:
        raise _fail(
            marker, f"log_bytes[{log.name!r}] = {size} would drop records of step {first} <= {step} from {log}"
        )


def _step_of(line: bytes) -> int | None:
    try:
        step = json.loads(line.decode("utf-8")).get("step")
    except (ValueError, AttributeError):
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def check_checkpoint(checkpoint: Path) -> None:
    """The marker (:func:`check_marker`) and the files HF loads at resume: safetensors weights whose header and size
    agree, and `torch.save` archives whose zip directory is intact (a truncated file has none)."""
    from grace_rl.models import _check_safetensors

    check_marker(checkpoint, checkpoint.parent)
    weights = [checkpoint / name for name in WEIGHTS if (checkpoint / name).is_file()]
    try:
        _check_safetensors(weights)
    except ValueError as err:
        raise _fail(checkpoint, str(err).rstrip(".")) from err
    for name in PICKLED_STATE:
        path = checkpoint / name
        if path.is_file() and not _intact_zip(path):
            raise _fail(path, "truncated or corrupt (not a complete torch.save archive)")
        if path.is_file():
            _check_safe_pickle(path)


SAFE_GLOBAL_PREFIXES = ("torch.", "collections.OrderedDict", "numpy.", "builtins.set", "_codecs.encode")


def _check_safe_pickle(path: Path) -> None:
    """Refuse a `torch.save` archive whose pickle names a global outside what a weights-only load of this run's
    own files needs (tensors, numpy RNG state): such a file was not written by grace-rl and may run code."""
    from torch.serialization import get_unsafe_globals_in_checkpoint

    try:
        unsafe = get_unsafe_globals_in_checkpoint(str(path))
    except Exception as err:  # noqa: BLE001 - an unreadable pickle: torch's text would advise weights_only=False
        unsafe = [f"an unreadable pickle ({type(err).__name__})"]
    bad = [g for g in unsafe if not g.startswith(SAFE_GLOBAL_PREFIXES)]
    if bad:
        raise CheckpointError(
            f"{path}: not a safe checkpoint file: its pickle calls {', '.join(bad[:3])}, which this run never "
            "writes - do not load it (loading could run code); delete this checkpoint-N and resume from an "
            "earlier one, or start over with --overwrite_output_dir true."
        )


def _intact_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
