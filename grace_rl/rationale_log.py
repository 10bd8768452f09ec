"""Durable rationale log: one JSON line per rollout, flushed and fsynced every step; readers skip a torn last line."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

LOG_NAME = "rationales.jsonl"
METRICS_NAME = "metrics.jsonl"


class RationaleLog:
    """Append-only JSONL writer of rollout records.

    Fields: ``step, prompt_id, prompt, rationale, rewards, reward, advantage``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        lines = [json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records]
        if not lines:
            return 0
        with self.path.open("a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
        return len(lines)


def read_rationales(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield records; a torn (unparsable) last line is skipped with a warning, a torn middle line is an error."""
    path = Path(path)
    if path.is_dir():
        path = path / LOG_NAME
    lines = path.read_text(encoding="utf-8").split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as err:
            if i == last:
                logger.warning(
                    "%s: skipping a torn last line (%d bytes; the run may still be writing).", path, len(line)
                )
                return
            raise ValueError(f"{path}: line {i + 1} is not valid JSON ({err.msg}).") from err


class MetricsLogCallback(TrainerCallback):
    """Appends every trainer log (loss, reward, ``grace/<term>`` metrics, ...) with its step to ``metrics.jsonl``."""

    def __init__(self, output_dir: str | Path) -> None:
        self.log = RationaleLog(Path(output_dir) / METRICS_NAME)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102 - TrainerCallback hook
        if state.is_world_process_zero and logs:
            clean = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)}
            self.log.append([{"step": state.global_step, **clean}])
