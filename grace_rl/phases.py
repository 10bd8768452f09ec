"""Phase messages of a training run: which phase is running (before-eval, training, after-eval), how long each took,
and an estimate of how long a long phase has left. One log line when a phase starts and one when it ends; training
adds an estimate after its first optimizer step and at each quarter of `max_steps`.
"""

from __future__ import annotations

import logging
import time

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

logger = logging.getLogger("grace_rl")


def duration(seconds: float) -> str:
    """`seconds` for a person: `42.0 s`, `12.3 min (738 s)`, `1.5 h (5400 s)`."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min ({seconds:.0f} s)"
    return f"{seconds / 3600:.1f} h ({seconds:.0f} s)"


class PhaseLog:
    """Logs the start and end of each phase with its duration; keeps the durations (seconds) in `seconds`.

    Args:
        enabled (`bool`, *optional*, defaults to `True`):
            Log at all (only the main process should, in a multi-process run).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.seconds: dict[str, float] = {}
        self._started: dict[str, float] = {}

    def start(self, name: str, what: str = "", estimate: float | None = None) -> None:
        """Log that phase `name` starts (doing `what`; expected to take about `estimate` seconds)."""
        self._started[name] = time.perf_counter()
        if self.enabled:
            guess = f"; about {duration(estimate)}" if estimate else ""
            logger.info("Phase %s: started%s%s", name, f" ({what})" if what else "", guess)

    def end(self, name: str) -> float | None:
        """Log that phase `name` ended and return its duration in seconds (`None`, silently, if it never started)."""
        if name not in self._started:
            return None
        seconds = time.perf_counter() - self._started.pop(name)
        self.seconds[name] = seconds
        if self.enabled:
            logger.info("Phase %s: done in %s", name, duration(seconds))
        return seconds


class StepEstimateCallback(TrainerCallback):
    """Logs the seconds per optimizer step and the time left: after the first step and at each quarter of the run.

    Args:
        enabled (`bool`, *optional*, defaults to `True`):
            Log at all (the main process only).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._start: float | None = None
        self._first_step = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> TrainerControl:
        self._start, self._first_step = time.perf_counter(), state.global_step  # global_step > 0 when resuming
        return control

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> TrainerControl:
        if not self.enabled or self._start is None or not state.max_steps:
            return control
        done, total = state.global_step - self._first_step, state.max_steps - self._first_step
        quarters = {max(1, round(total * q / 4)) for q in (1, 2, 3)}
        if done == 1 or (done in quarters and done < total):
            per_step = (time.perf_counter() - self._start) / done
            left = per_step * (state.max_steps - state.global_step)
            logger.info(
                "Training: step %d/%d, %.1f s per step so far; about %s left",
                state.global_step,
                state.max_steps,
                per_step,
                duration(left),
            )
        return control
