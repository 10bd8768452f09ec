"""Rationale generation throughput inside GRACE training vs a raw `model.generate` on the same batch.

During `--warmup` + `--steps` GRACE steps (CPU recipe shapes, LoRA), each rollout `generate` call TRL makes
after the warm-up is run twice from the same torch RNG state, with the same inputs and weights, in alternating
order: once as TRL makes it (inside its generation block; GraceTrainer runs that call in eval mode since the capture
fix) and once as a bare eval-mode `model.generate`. Both sample exactly the same tokens (checked), so
`ratio = training tokens/s / raw tokens/s = raw seconds / training seconds` (goal >= 0.9); pairing the two runs
of each batch keeps the load of a shared machine from favouring either. The cost of TRL's block around the call
(unwrapping, generation-config override) is measured on the warm-up step and added to the training side. Anchors are
plain text here: anchor rationales are written by the embedding pool (timed by `step_overhead.py`), not by TRL's
rollout generation.

    nice -n 10 python bench/generation.py [--steps 3] [-- recipe overrides]
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import torch
from _common import (
    add_threads_option,
    build_trainer,
    mean,
    recipe_args,
    set_threads,
    table,
    trl_profiling,
    write_result,
)

GOAL_RATIO = 0.9


class GenerateRecorder:
    """Wraps `model.generate` (instance attribute). After `warmup` calls, each call TRL makes is timed twice with
    the same RNG state, in alternating order: as TRL calls it (model in train mode) and as a bare eval-mode call."""

    def __init__(self, model: torch.nn.Module, warmup: int) -> None:
        self.model = model
        self.warmup = warmup
        self.original = model.generate
        self.calls: list[dict[str, Any]] = []
        model.generate = self

    def _timed(self, raw: bool, kwargs: dict[str, Any]) -> tuple[float, torch.Tensor]:
        was_training = self.model.training
        if raw:
            self.model.eval()
        try:
            start = time.perf_counter()
            out = self.original(**kwargs)
            return time.perf_counter() - start, out
        finally:
            self.model.train(was_training)

    def __call__(self, **kwargs: Any) -> torch.Tensor:
        record: dict[str, Any] = {"prompt_width": kwargs["input_ids"].shape[1], "train_mode": self.model.training}
        if len(self.calls) < self.warmup:
            record["train_seconds"], out = self._timed(False, kwargs)
            self.calls.append(record)
            return out
        rng = torch.get_rng_state()
        order = (False, True) if len(self.calls) % 2 else (True, False)  # alternate who goes first
        outputs = {}
        for raw in order:
            torch.set_rng_state(rng)
            seconds, outputs[raw] = self._timed(raw, kwargs)
            record["raw_seconds" if raw else "train_seconds"] = seconds
        record["raw_first"] = order[0]
        record["same_tokens"] = bool(torch.equal(outputs[True], outputs[False]))
        record["output"] = outputs[False]
        self.calls.append(record)
        return outputs[False]

    def restore(self) -> None:
        self.model.generate = self.original


def generated_tokens(output: torch.Tensor, prompt_width: int, eos_ids: set[int]) -> tuple[int, int]:
    """`(tokens up to and including each row's first EOS, decode positions = rows x new columns)`."""
    completions = output[:, prompt_width:]  # (B, new)
    useful = 0
    for row in completions.tolist():
        ends = [i for i, t in enumerate(row) if t in eos_ids]
        useful += ends[0] + 1 if ends else len(row)
    return useful, completions.numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="Recipe overrides (after --).")
    add_threads_option(parser)
    cli = parser.parse_args()
    set_threads(cli.threads)
    logging.basicConfig(level=logging.WARNING)
    total = cli.warmup + cli.steps
    script_args, args, model_args = recipe_args(
        ["--anchor_mode", "plain", *cli.overrides, "--max_steps", str(total), "--logging_steps", "1"]
    )
    with trl_profiling() as profile:
        trainer = build_trainer("grace", script_args, args, model_args)
        recorder = GenerateRecorder(trainer.model, cli.warmup)
        trainer.train()
        recorder.restore()
    if len(recorder.calls) != total:
        raise RuntimeError(f"Expected {total} rollout generate calls (one per step), recorded {len(recorder.calls)}.")
    eos = set(getattr(trainer, "eos_token_ids", None) or [trainer.processing_class.eos_token_id])
    block_key = f"{type(trainer).__name__}.transformers.generate"
    warm = recorder.calls[0]
    block_overhead = profile[0].get(block_key, warm["train_seconds"]) - warm["train_seconds"]
    rows, measured = [], []
    for step in range(cli.warmup, total):
        call = recorder.calls[step]
        useful, positions = generated_tokens(call["output"], call["prompt_width"], eos)
        train_s = call["train_seconds"] + block_overhead
        m = {
            "step": step,
            "sequences": call["output"].shape[0],
            "new_columns": call["output"].shape[1] - call["prompt_width"],
            "tokens": useful,
            "decode_positions": positions,
            "train_seconds": round(train_s, 3),
            "raw_seconds": round(call["raw_seconds"], 3),
            "raw_first": call["raw_first"],
            "same_tokens": call["same_tokens"],
            "train_tokens_per_s": round(useful / train_s, 1),
            "raw_tokens_per_s": round(useful / call["raw_seconds"], 1),
            "ratio": round(call["raw_seconds"] / train_s, 3),  # same tokens: throughput ratio = inverse time ratio
        }
        measured.append(m)
        rows.append(
            [
                step,
                f"{m['sequences']} x {m['new_columns']}",
                useful,
                m["train_seconds"],
                m["raw_seconds"],
                m["train_tokens_per_s"],
                m["raw_tokens_per_s"],
                m["ratio"],
                "raw" if m["raw_first"] else "train",
                "yes" if m["same_tokens"] else "NO",
            ]
        )
    ratio = sum(m["raw_seconds"] for m in measured) / sum(m["train_seconds"] for m in measured)
    rows.append(
        [
            "all",
            "",
            sum(m["tokens"] for m in measured),
            round(sum(m["train_seconds"] for m in measured), 3),
            round(sum(m["raw_seconds"] for m in measured), 3),
            round(mean([m["train_tokens_per_s"] for m in measured]), 1),
            round(mean([m["raw_tokens_per_s"] for m in measured]), 1),
            round(ratio, 3),
            "",
            "",
        ]
    )
    headers = [
        "step",
        "batch x cols",
        "tokens",
        "train s",
        "raw s",
        "train tok/s",
        "raw tok/s",
        "ratio",
        "first",
        "same tokens",
    ]
    print(
        f"{cli.steps} measured steps after {cli.warmup} warm-up; {args.per_device_train_batch_size} rollouts of "
        f"<= {args.max_completion_length} tokens (T={args.temperature}); "
        f"{'LoRA' if model_args.use_peft else 'full fine-tuning'}; goal: ratio >= {GOAL_RATIO}"
    )
    print(table(headers, rows))
    print(f"TRL's profiling block around generate adds {block_overhead:.3f} s per call (warm-up step).")
    payload = {"warmup": cli.warmup, "steps": cli.steps, "ratio": ratio, "block_overhead_seconds": block_overhead}
    path = write_result("generation", {**payload, "per_step": measured})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
