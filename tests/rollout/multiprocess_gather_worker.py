"""Worker for tests/rollout/test_multiprocess_gather.py (not a test itself):

    torchrun --standalone --nproc_per_node 2 multiprocess_gather_worker.py MODEL_DIR OUT_JSON

Each rank scores its half of one generation batch (the middle row's group is split across the two ranks) with the
GRACE reward, once through a ShardedPool (local backend), once through a MainProcessPool (rank 0 owns the pool, as
with the ray backend) and once through a collective CapturingPool offered each rank's own rollouts (capture across
ranks); rank 0 writes every rank's rewards and records to OUT_JSON.
"""

from __future__ import annotations

import json
import sys

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from transformers import AutoModelForCausalLM, AutoTokenizer

from grace_rl.prompts import RationaleTemplate
from reward.grace_reward import GraceReward
from rollout.captured_pool import CapturingPool
from rollout.distributed import MainProcessPool, ShardedPool
from rollout.embedder import Embedder, EmbedRequest
from rollout.pool import LocalEmbeddingPool

TERMS = ["contrastive", "in_batch", "margin", "consistency", "truncation"]
WEIGHTS = [1.0, 0.5, 0.5, 0.1, 0.1]


def full_batch(eos: int) -> dict[str, list]:
    """3 rows x 2 rollouts; rows carry a positive and (rows 0, 2) a hard negative."""
    rows = [("A man plays a guitar.", "Someone plays music.", ["Nobody plays."]),
            ("Two dogs run in a field.", "Dogs are running.", []),
            ("The market fell on Monday.", "Stocks dropped.", ["Stocks rose."])]  # fmt: skip
    batch: dict[str, list] = {k: [] for k in ("prompts", "completions", "completion_ids", "query", "positive")}
    batch.update(negatives=[], prompt_id=[])
    for r, (query, positive, negatives) in enumerate(rows):
        for g in range(2):
            ids = [400 + 10 * r + g, 500 + g] + ([eos] if g == 0 else [])
            batch["prompts"].append(query)
            batch["completions"].append(f"rationale {r}.{g}")
            batch["completion_ids"].append(ids)
            batch["query"].append(query)
            batch["positive"].append(positive)
            batch["negatives"].append(negatives)
            batch["prompt_id"].append(f"row{r}")
    return batch


def make_reward(pool) -> GraceReward:
    return GraceReward(
        TERMS, WEIGHTS, anchor_mode="rationale", anchor_rationale_tokens=3, end_token_ids=[2], pool=pool
    )


def main(model_dir: str, out_path: str) -> None:
    state = PartialState(cpu=True)  # gloo
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    local_pool = LocalEmbeddingPool(Embedder(model, tokenizer, RationaleTemplate("Explain the text.")), batch_size=4)
    batch = full_batch(tokenizer.eos_token_id)
    half = len(batch["query"]) // state.num_processes
    mine = {k: v[state.process_index * half : (state.process_index + 1) * half] for k, v in batch.items()}
    sharded = make_reward(ShardedPool(local_pool))
    sharded_scored = sharded.score_batch(**mine)
    sharded_out = sharded_scored.rewards
    main_pool = MainProcessPool(local_pool if state.is_main_process else None, tokenizer)
    main_out = make_reward(main_pool)(**mine)
    # Capture across ranks: each rank offers only its own rollouts (as generation capture does); the collective
    # CapturingPool gathers the offers, so the reward's global batch is served whole and only anchors are computed.
    capturing = CapturingPool(ShardedPool(local_pool), collective=True)
    own = [EmbedRequest(q, tuple(ids)) for q, ids in zip(mine["query"], mine["completion_ids"], strict=True)]
    capturing.offer(own, local_pool.embed(own))
    captured_out = make_reward(capturing)(**mine)
    result = {
        "world": state.num_processes,
        "sharded": gather_object(sharded_out),
        "main": gather_object(main_out),
        "captured": gather_object(captured_out),
        "served": gather_object([capturing.last_served]),
        "record_ids": gather_object([r["prompt_id"] for r in sharded_scored.records]),
        "local_lengths": gather_object([len(sharded_out)]),
    }
    if state.is_main_process:
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump(result, f)
    state.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
