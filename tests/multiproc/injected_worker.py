"""Worker for tests/multiproc/test_training_2proc.py (not a test itself): the real training entry point with fixed
completions injected in place of sampling, so a 2-process run and a 1-process run score the same rollouts.

    torchrun --standalone --nproc_per_node 2 injected_worker.py OUT_DIR --config RECIPE.yaml [--key value ...]

How the completions are fixed: TRL's `GRPOTrainer._generate_single_turn` (what `GraceTrainer._generate_single_turn`
calls to sample) is replaced by :func:`fixed_completions`, which derives each rollout's token ids from its prompt
and its position in the *global* generation batch (this rank's offset + local index). Every rollout of one row
differs, and the same global batch gets the same completions whatever the number of processes. Nothing is captured
(generate never runs), so the embedding pool (`ShardedPool` on 2 ranks) embeds every rollout.

Each rank writes OUT_DIR/rank{R}.json: the rows it generated for (local prompt ids) and, per reward call, what the
reward scored: the global queries, the rollouts per row (group sizes), and the rows' in-batch negatives.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path
from typing import Any

import torch
from trl import GRPOTrainer

from reward.grace_reward import GraceReward

FIXED_EOS = 2  # the tiny model's eos/pad id (tests/conftest.py)


def completion_for(prompt_ids: list[int], position: int) -> list[int]:
    """Token ids of the rollout at `position` of the global generation batch (ends with EOS for even positions)."""
    seed = zlib.crc32(bytes(str(prompt_ids), "utf-8"))
    ids = [100 + (seed + 37 * position + 11 * k) % 900 for k in range(2 + position % 3)]
    return ids + [FIXED_EOS] if position % 2 == 0 else ids


def fixed_completions(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
    """Stands in for `GRPOTrainer._generate_single_turn`: `(completion_ids, logprobs)` like the HF generate path."""
    offset = self.accelerator.process_index * len(prompt_ids)  # TRL gives every rank an equal slice, in rank order
    return [completion_for(list(p), offset + i) for i, p in enumerate(prompt_ids)], None


def install(record: dict[str, Any]) -> None:
    """Patch generation and record what each reward call scores into `record` (this process)."""
    GRPOTrainer._generate_single_turn = fixed_completions
    original_call, original_context = GraceReward.score_batch, GraceReward.build_context  # the trainer: score_batch

    def call(self, *args, **kwargs):
        record["local_prompt_ids"].append(list(kwargs["prompt_id"]))
        return original_call(self, *args, **kwargs)

    def build_context(self, queries, completion_ids, positives, negatives, row_keys):
        ctx, timing = original_context(self, queries, completion_ids, positives, negatives, row_keys)
        record["scored"].append(
            {
                "row_keys": list(row_keys),
                "group_sizes": torch.bincount(ctx.group).tolist(),
                "in_batch_negatives": ctx.in_batch_mask.sum(dim=1).tolist(),  # (B,) other rows' positives
                "anchors": int(ctx.anchors.shape[0]),
            }
        )
        return ctx, timing

    GraceReward.score_batch = call
    GraceReward.build_context = build_context


def new_record() -> dict[str, Any]:
    return {"local_prompt_ids": [], "scored": []}


def main(out_dir: str, argv: list[str]) -> None:
    from accelerate import PartialState

    from grace_rl.train import main as train_main
    from grace_rl.train import parse_args

    torch.set_num_threads(1)
    record = new_record()
    install(record)
    train_main(*parse_args(argv))
    rank = PartialState().process_index
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
