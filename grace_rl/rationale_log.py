"""Training-side log writers: the durable rationale log, the trainer-metrics log (`metrics.jsonl`, every key) and
the console's one line per training log (:func:`compact_log_line`, in place of the dict HF prints).

Reading them back is :mod:`grace_rl.inspection.log` (no transformers import); the file names are in
:mod:`grace_rl.run_files`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from transformers import PrinterCallback, ProgressCallback, TrainerCallback

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


def _number(value: Any, spec: str) -> str | None:
    return f"{value:{spec}}" if isinstance(value, (int, float)) and math.isfinite(value) else None


def compact_log_line(
    logs: dict[str, Any], step: int, max_steps: int, terms: Sequence[str] = (), seconds_per_step: float | None = None
) -> str:
    """One console line for a trainer log: `step S/N | loss | reward mean ± std | grace/<term> means | truncated
    share | seconds per step` for a training step (keys absent from `logs` are left out); the run's total for the
    final log (`train_runtime`); any other log as `key value` pairs. `metrics.jsonl` keeps every key."""
    if "train_runtime" in logs:
        parts = [f"trained {step} steps in {logs['train_runtime']:.1f} s"]
        if (loss := _number(logs.get("train_loss"), ".4g")) is not None:
            parts.append(f"mean loss {loss}")
        return " | ".join(parts)
    if "loss" not in logs and "reward" not in logs:
        shown = {k: v for k, v in logs.items() if k != "total_flos"}
        return " ".join(f"{k} {_number(v, '.4g') or v}" for k, v in shown.items())
    parts = [f"step {step}/{max_steps}" if max_steps else f"step {step}"]
    if (loss := _number(logs.get("loss"), ".4g")) is not None:
        parts.append(f"loss {loss}")
    if (reward := _number(logs.get("reward"), "+.4f")) is not None:
        std = _number(logs.get("reward_std"), ".4f")
        parts.append(f"reward {reward}" + (f" ± {std}" if std is not None else ""))
    values = [(t, _number(logs.get(f"grace/{t}"), "+.4f")) for t in terms]
    if any(v is not None for _, v in values):
        parts.append(" ".join(f"{t} {v}" for t, v in values if v is not None))
    if (frac := _number(logs.get("grace/truncated_frac"), ".0%")) is not None:
        parts.append(f"truncated {frac}")
    if seconds_per_step is not None:
        parts.append(f"{seconds_per_step:.1f} s/step")
    return " | ".join(parts)


class _StepClock:
    """Wall seconds per optimizer step since the previous log (the first: since training began)."""

    def __init__(self) -> None:
        self.time: float | None = None
        self.step = 0

    def start(self, step: int) -> None:
        self.time, self.step = time.perf_counter(), step

    def per_step(self, step: int) -> float | None:
        if self.time is None or step <= self.step:
            return None
        now = time.perf_counter()
        seconds = (now - self.time) / (step - self.step)
        self.time, self.step = now, step
        return seconds


class CompactProgressCallback(ProgressCallback):
    """HF's progress bar, writing each trainer log as one :func:`compact_log_line` instead of the whole dict."""

    def __init__(self, terms: Sequence[str] = ()) -> None:
        super().__init__()
        self.terms, self.clock = tuple(terms), _StepClock()

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102 - TrainerCallback hook
        super().on_train_begin(args, state, control, **kwargs)
        self.clock.start(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102 - TrainerCallback hook
        if state.is_world_process_zero and self.training_bar is not None and logs:
            seconds = self.clock.per_step(state.global_step)
            self.training_bar.write(compact_log_line(logs, state.global_step, state.max_steps, self.terms, seconds))


class CompactPrinterCallback(TrainerCallback):
    """What HF prints with `disable_tqdm` (no bar), as one :func:`compact_log_line` per trainer log."""

    def __init__(self, terms: Sequence[str] = ()) -> None:
        self.terms, self.clock = tuple(terms), _StepClock()

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102 - TrainerCallback hook
        self.clock.start(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102 - TrainerCallback hook
        if state.is_local_process_zero and logs:
            seconds = self.clock.per_step(state.global_step)
            print(compact_log_line(logs, state.global_step, state.max_steps, self.terms, seconds), flush=True)


def use_compact_console_log(trainer: Any, terms: Sequence[str] = ()) -> None:
    """Swap HF's log printers on `trainer` (the progress bar's dict, or with `disable_tqdm` the printed dict) for
    their one-line versions; a notebook's progress table and `metrics.jsonl` are left as they are."""
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(CompactProgressCallback(terms))
    if trainer.pop_callback(PrinterCallback) is not None:
        trainer.add_callback(CompactPrinterCallback(terms))
