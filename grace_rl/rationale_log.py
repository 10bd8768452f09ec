"""Training-side log writers: the durable rationale log and the trainer-metrics log (`metrics.jsonl`).

Reading them back is :mod:`grace_rl.inspection.log` (no transformers import); the file names are in
:mod:`grace_rl.run_files`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grace_rl.run_files import METRICS_LOG

logger = logging.getLogger(__name__)


class RationaleLog:
    """Append-only JSONL writer of rollout records, flushed and fsynced on every append.

    Fields: `step, prompt_id, prompt, direction, rationale, rationale_tokens, truncated, rewards, reward, advantage`
    (plus `gold_rank` with the `dcg` term).

    Args:
        path (`str` or `Path`):
            The JSONL file (its directory is created).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Append one JSON line per record; returns the number of lines written.

        A failed write (a full disk) cuts the file back to its size before the call (or removes a file it created),
        so no half-written line is left as if it were valid, and raises an `OSError` naming the file and the last
        complete checkpoint (:func:`log_write_error`).
        """
        lines = [json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records]
        if not lines:
            return 0
        existed = self.path.is_file()
        size = self.path.stat().st_size if existed else 0
        try:
            with self.path.open("a", encoding="utf-8") as f:
                f.write("".join(lines))
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            self._undo(existed, size)
            raise log_write_error(self.path, err) from err
        return len(lines)

    def _undo(self, existed: bool, size: int) -> None:
        try:
            if existed:
                os.truncate(self.path, size)
            else:
                self.path.unlink(missing_ok=True)
        except OSError as err:  # the cut itself failed: a resume cuts the log back to its checkpoint anyway
            logger.warning("Could not cut %s back to %d bytes after a failed write: %s", self.path, size, err)


def log_write_error(path: Path, err: OSError) -> OSError:
    """The error of a failed append to a run log: the file, the cause (the disk is full), and where the run can go
    on from (the last complete checkpoint, or none yet: start over)."""
    from grace_rl.resume import is_disk_full, restart_advice

    full = is_disk_full(err)
    why = "the disk is full" if full else f"{err.strerror or err}"
    advice = restart_advice(path.parent, "Free disk space" if full else "Fix the cause")
    return OSError(
        err.errno,
        f"cannot append to {path}: {why}; the unfinished lines were removed, the lines before them are intact. "
        + advice,
    )


class MetricsLogCallback(TrainerCallback):
    """Appends every trainer log (loss, reward, `grace/<term>` metrics, ...) with its step to `metrics.jsonl`."""

    def __init__(self, output_dir: str | Path) -> None:
        self.log = RationaleLog(Path(output_dir) / METRICS_LOG)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102 - TrainerCallback hook
        if state.is_world_process_zero and logs:
            clean = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)}
            self.log.append([{"step": state.global_step, **clean}])
