"""Shared helpers of the benchmark scripts: recipe loading, trainer construction, step and profiling timers, tables.

The scripts are measurements, not tests: each prints a table and writes JSON under `bench/results/`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from grace_rl.known_warnings import silence_known_warnings

silence_known_warnings()  # every bench script imports this module: the same known third-party notices as a run hide

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
RECIPE = REPO / "configs" / "grace_smollm2_cpu.yaml"


def add_threads_option(parser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's). On a busy shared machine 1 is much faster than 2.",
    )


def set_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)


def machine() -> dict[str, Any]:
    """What the figures were measured on (the load average says how busy the shared machine was)."""
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "cuda": torch.cuda.is_available(),
    }


def recipe_args(overrides: Sequence[str]):
    """`(script_args, grace_config, model_args)` from the CPU recipe plus command-line style overrides."""
    from grace_rl.train import parse_args

    out = tempfile.mkdtemp(prefix="grace-bench-")
    base = ["--config", str(RECIPE), "--output_dir", out, "--rationale_log", "false", "--eval_sts_path", "null"]
    return parse_args([*base, *overrides])


def build_trainer(kind: str, script_args, args, model_args, callbacks: Sequence[TrainerCallback] = ()):
    """A `GraceTrainer` (`kind="grace"`) or a plain `GRPOTrainer` with a trivial length reward (`"plain"`),
    on the same model, rows, prompts and GRPO settings."""
    from trl import GRPOTrainer, get_peft_config

    from grace_rl.data import build_dataset, load_supervised
    from grace_rl.models import load_model, load_tokenizer, resolve_model_path
    from grace_rl.prompts import RationaleTemplate
    from grace_rl.trainer import GraceTrainer, build_reward

    rows = load_supervised(script_args.dataset_path, script_args.max_train_rows)
    path = resolve_model_path(model_args.model_name_or_path)
    tokenizer = load_tokenizer(path)
    model = load_model(path, dtype=torch.float32)
    dataset = build_dataset(rows, RationaleTemplate(args.instruction))
    common = {
        "model": model,
        "args": args,
        "processing_class": tokenizer,
        "train_dataset": dataset,
        "peft_config": get_peft_config(model_args),
        "callbacks": list(callbacks),
    }
    if kind == "grace":
        return GraceTrainer(grace_reward=build_reward(args, tokenizer), **common)
    if kind == "plain":
        return GRPOTrainer(reward_funcs=[length_reward], **common)
    raise ValueError(f"kind must be 'grace' or 'plain', got {kind!r}.")


def length_reward(completions, **_: Any) -> list[float]:
    """The trivial reward of the baseline: minus the completion's length in characters / 100 (costs ~nothing)."""
    texts = [c if isinstance(c, str) else "".join(m.get("content", "") for m in c) for c in completions]
    return [-len(t) / 100 for t in texts]


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (generation, reward, forward/backward, optimizer, step-end callbacks)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)


@contextlib.contextmanager
def trl_profiling() -> Iterator[dict[int, dict[str, float]]]:
    """Collect TRL's `profiling_context` timings (normally only sent to wandb/mlflow/trackio) per step:
    `{step: {"GraceTrainer.transformers.generate": seconds, ...}}` (summed within a step)."""
    from trl.extras import profiling

    collected: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    original = profiling.ProfilingContext._log_metrics

    def record(self, duration: float) -> None:
        collected[int(self.step or 0)][self.name] += duration

    profiling.ProfilingContext._log_metrics = record
    try:
        yield collected
    finally:
        profiling.ProfilingContext._log_metrics = original


def logged(trainer, key: str) -> list[float]:
    """Per-step values of a logged metric (`logging_steps=1`), in step order; missing steps give 0."""
    return [float(entry.get(key, 0.0)) for entry in trainer.state.log_history if "loss" in entry]


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    cells = [[str(c) for c in headers], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n", encoding="utf-8")
    return path
